"""The same repository name on two forges is two repositories: neither touches the other's builds or hooks."""

import json
import random

import pytest

from webhook import create_app
from webhook.events import PushEvent
from webhook.notify.deliveries import DeliveryStore
from webhook.notify.notifier import Notifier
from webhook.redact import Redactor
from webhook.store import BuildState, BuildStore, create_db_engine

from .helpers.configs import GITEA_SECRET, GITHUB_SECRET, repo_table
from .helpers.receivers import Receiver
from .helpers.support import gitea_headers, gitea_push, github_headers, github_push, signed_in

REPO = "acme/app"
HOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OLD, NEW = "a" * 40, "b" * 40


@pytest.fixture
def receivers():
    made = {"github": Receiver(answers=[200]), "gitea": Receiver(answers=[200])}
    yield made
    for receiver in made.values():
        receiver.stop()


@pytest.fixture
def config(make_config, receivers):
    """acme/app on GitHub and on Gitea, each with its own production hook."""
    return make_config(*(repo_table(REPO, forge=forge, image=f"127.0.0.1:5000/{forge}/app",
                                    hooks=[{"name": "production", "url": receivers[forge].url, "secret_env": "HOOK_SECRET"}])
                         for forge in ("github", "gitea")),
                       env={"HOOK_SECRET": HOOK_SECRET})


def event(forge, sha, *, before="0" * 40, ref="refs/heads/main"):
    return PushEvent(forge=forge, repo=REPO, ref=ref, sha=sha, before=before, pusher="p", delivery_id=None)


def test_a_push_on_one_forge_never_cancels_the_other_forges_queued_build(config):
    """A newer Gitea push of main leaves GitHub's queued build of main queued."""
    app = create_app(config)
    client = app.extensions["pushbuild"].store
    github_body = json.dumps(github_push(repo=REPO, sha=OLD)).encode()
    gitea_body = json.dumps(gitea_push(repo=REPO, sha=NEW) | {"before": OLD}).encode()
    http = signed_in(app)
    first = http.post("/hooks/github", data=github_body, headers=github_headers(github_body, GITHUB_SECRET))
    second = http.post("/hooks/gitea", data=gitea_body, headers=gitea_headers(gitea_body, GITEA_SECRET))
    assert (first.status_code, second.status_code) == (202, 202)
    assert client.get(first.json["build"]).state is BuildState.QUEUED


def test_store_queries_keep_the_forges_apart(config):
    """Builds of a ref, has_build and the per-repository limit count only the forge asked about."""
    store = BuildStore(create_db_engine(config.server.state_url))
    config.server.data_dir.mkdir(parents=True, exist_ok=True)
    store.create_schema()
    [github], _ = store.record([event("github", OLD)])
    [gitea], _ = store.record([event("gitea", NEW)])
    assert [b.id for b in store.of_ref("github", REPO, "refs/heads/main")] == [github.id]
    assert store.has_build("gitea", REPO, "refs/heads/main", NEW) and not store.has_build("github", REPO, "refs/heads/main", NEW)
    assert store.claim(gitea.id, owner="w", lease_s=60, max_running=1) is not None
    assert store.claim(github.id, owner="w", lease_s=60, max_running=1) is not None, "Gitea's running build took GitHub's place"


def test_a_build_on_one_forge_fires_only_that_forges_hooks(config, receivers):
    """A Gitea acme/app image reaches Gitea's production hook, never GitHub's."""
    db = create_db_engine(config.server.state_url)
    config.server.data_dir.mkdir(parents=True, exist_ok=True)
    builds, deliveries = BuildStore(db), DeliveryStore(db)
    builds.create_schema()
    notifier = Notifier(config=config, builds=builds, deliveries=deliveries, redact=Redactor([]), rng=random.Random(7))
    [build], _ = builds.record([event("gitea", NEW)])
    builds.claim(build.id, owner="w", lease_s=60)
    builds.finish(build.id, BuildState.SUCCEEDED, owner="w", tags=(f"127.0.0.1:5000/gitea/app:{NEW}",),
                  digest="sha256:" + "d" * 64)
    build = builds.get(build.id)
    notifier.build_finished(build, state=build.state, tags=build.tags, digest=build.digest, error=None)
    notifier.deliver_due()
    assert receivers["github"].received == []
    [hook] = receivers["gitea"].received
    assert json.loads(hook.body)["data"]["image"] == "127.0.0.1:5000/gitea/app"
