"""Which push may move which tag: names, commit ids, releases and replays, on the real engine and registry.

Someone who may push any branch but ``main`` tries every name that used to land on another
ref's tag; afterwards each tag in the registry still holds its own content (read from the image
itself), and the production redeploy hook only ever hears of reviewed content.
"""

import json
import uuid

import pytest
from standardwebhooks.webhooks import Webhook

from webhook import create_app
from webhook.store import BuildState

from .helpers.configs import GITHUB_SECRET
from .helpers.gitrepo import git
from .helpers.support import fixture, github_headers, registry_digest, run_push, signed_in, wait_for

pytestmark = pytest.mark.e2e
HOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
RULES = [{"tag": "v*", "semver": True, "latest": True}, {"branch": "**"}]


@pytest.fixture
def tagged(pipeline, hook_receiver):
    """Services for one GitHub repository: releases move latest, every branch builds, main redeploys."""

    def make(**repo_settings):
        hooks = [{"name": "production", "url": hook_receiver.url, "secret_env": "HOOK_SECRET", "branches": ["main"]}]
        return pipeline(env={"HOOK_SECRET": HOOK_SECRET}, **{"rules": RULES, "hooks": hooks, **repo_settings})

    return make


def push(services, repo, sha, ref, *, before="0" * 40):
    """Record a push of ``sha`` to ``ref``, run its build to the end in this process, and check it succeeded."""
    finished = run_push(services, repo, sha, ref, before=before)
    assert finished.state is BuildState.SUCCEEDED, finished.error
    return finished


def content(docker_client, registry, repo, tag):
    """What the image the registry serves as ``tag`` says it is (its /who file)."""
    digest = registry_digest(registry, repo.name, tag)
    assert digest is not None, f"{tag} is not in the registry"
    return docker_client.containers.run(f"{registry}/{repo.name}@{digest}", remove=True, network_mode="none").decode()


def image_files(base_image, who):
    return {"Dockerfile": f"FROM {base_image}\nCOPY who /who\nCMD cat /who\n", "who": f"{who}\n"}


def hooked_digests(hook_receiver):
    """The digests the production hook was told of, in order, checking each signature."""
    return [Webhook(HOOK_SECRET).verify(r.body, r.headers)["data"]["digest"].rsplit("@", 1)[1] for r in hook_receiver.received]


def test_no_branch_name_lands_on_a_tag_another_ref_owns(tagged, repo, registry, base_image, docker_client, hook_receiver):
    """+main, ü/main, latest, +latest, 1.2.3 and a commit id as branch names leave main, latest, 1.2.3 and SHA tags alone."""
    services = tagged()
    main_sha = repo.commit(image_files(base_image, "main"))
    main = push(services, repo, main_sha, "refs/heads/main")
    release_sha = repo.commit(image_files(base_image, "release 1.2.3"), branch="release")
    repo.tag("v1.2.3", annotated=True)
    release = push(services, repo, release_sha, "refs/tags/v1.2.3")
    git(repo.work, "checkout", "-q", "main")
    reviewed = repo.commit(image_files(base_image, "reviewed"), branch="feature")  # in review, not merged
    wait_for(lambda: len(hook_receiver.received) == 1, what="main's redeploy hook")

    attacks = {name: repo.commit(image_files(base_image, f"evil from {name}"), branch=name)
               for name in ("+main", "ü/main", "latest", "+latest", "1.2.3", reviewed)}
    logs = {}
    for name, sha in attacks.items():
        build = push(services, repo, sha, f"refs/heads/{name}")
        assert build.tags[0] == f"{registry}/{repo.name}:{sha}"
        logs[name] = services.store.log(build.id)[0]
    assert "not tagging latest: `latest` is never given to a branch or tag name" in logs["latest"]
    assert f"not tagging {reviewed}: it looks like a commit id" in logs[reviewed]
    assert "not tagging 1.2.3: it is a release version tag" in logs["1.2.3"]

    assert registry_digest(registry, repo.name, "main") == main.digest
    assert content(docker_client, registry, repo, "main") == "main\n"
    assert content(docker_client, registry, repo, "latest") == content(docker_client, registry, repo, "1.2.3") == "release 1.2.3\n"
    assert registry_digest(registry, repo.name, "1.2.3") == release.digest
    assert registry_digest(registry, repo.name, reviewed) is None  # no build of that commit yet

    # The maintainer merges the reviewed commit: main and the hook get the reviewed content.
    git(repo.work, "push", "-q", "origin", "refs/heads/feature:refs/heads/main")
    merged = push(services, repo, reviewed, "refs/heads/main", before=main_sha)
    assert "adding tags only" not in services.store.log(merged.id)[0]
    assert content(docker_client, registry, repo, "main") == content(docker_client, registry, repo, reviewed) == "reviewed\n"
    assert registry_digest(registry, repo.name, "main") == merged.digest
    wait_for(lambda: len(hook_receiver.received) == 2, what="the merge's redeploy hook")
    assert hooked_digests(hook_receiver) == [main.digest, merged.digest]


def test_an_image_on_the_engine_is_reused_only_if_it_was_built_from_that_commit(tagged, repo, registry, base_image, docker_client):
    """A SHA tag on the engine that names other content (with the same plan label) is rebuilt, not pushed as is."""
    services = tagged()
    evil_sha = repo.commit(image_files(base_image, "evil"), branch="evil")
    evil = push(services, repo, evil_sha, "refs/heads/evil")
    reviewed = repo.commit(image_files(base_image, "reviewed"), branch="main")
    docker_client.images.get(evil.tags[0]).tag(f"{registry}/{repo.name}", reviewed)  # a poisoned leftover
    build = push(services, repo, reviewed, "refs/heads/main")
    assert "adding tags only" not in services.store.log(build.id)[0]
    assert content(docker_client, registry, repo, reviewed) == content(docker_client, registry, repo, "main") == "reviewed\n"


def test_a_tag_made_from_a_name_belongs_to_the_first_ref_that_pushed_it(tagged, repo, registry, base_image, docker_client):
    """A git tag named like a branch (main) cannot move the branch's tag, and the log names the owner."""
    services = tagged(rules=[{"branch": "**"}, {"tag": "*"}])
    main = push(services, repo, repo.commit(image_files(base_image, "main")), "refs/heads/main")
    sha = repo.commit(image_files(base_image, "tagged main"), branch="other")
    repo.tag("main")
    tagged = push(services, repo, sha, "refs/tags/main")
    log = services.store.log(tagged.id)[0]
    assert "not tagging" in log and "it belongs to main (github:" in log
    assert registry_digest(registry, repo.name, "main") == main.digest
    # The commit's own tag is pushed first; which other tags it may have is decided after.
    assert log.index(f"pushing {registry}/{repo.name}:{sha}") < log.index("not tagging")


@pytest.fixture
def web(tagged):
    """The web app on the same state as an in-process worker."""
    app = create_app(tagged().config)
    return app, app.extensions["pushbuild"]


def deliver_tag(client, repo, name, sha, *, body=None, delivery=None):
    """Send GitHub's real tag-push example for ``name`` at ``sha``; return the body sent and the reply."""
    if body is None:
        payload = fixture("github/push_tag.json")
        payload.update(ref=f"refs/tags/{name}", after=sha, before="0" * 40)
        payload["repository"]["full_name"] = repo.name
        payload["head_commit"]["id"] = sha
        body = json.dumps(payload).encode()
    return body, client.post("/hooks/github", data=body, headers=github_headers(body, GITHUB_SECRET, delivery=delivery))


def run_queued(services, build_id):
    claimed = services.store.claim(build_id, owner="test", lease_s=60)
    services.pipeline().run(claimed, owner="test")
    return services.store.get(build_id)


def test_a_replayed_release_under_a_new_delivery_id_does_not_roll_latest_back(web, repo, registry, base_image):
    """v1.0.0, v2.0.0, then v1.0.0's bytes and signature again under a new X-GitHub-Delivery: nothing is built, latest stays."""
    app, services = web
    client = signed_in(app)
    digests = {}
    bodies = {}
    for version in ("v1.0.0", "v2.0.0"):
        sha = repo.commit(image_files(base_image, version), branch="main")
        repo.tag(version)
        bodies[version], reply = deliver_tag(client, repo, version, sha)
        assert reply.status_code == 202, reply.json
        digests[version] = run_queued(services, reply.json["build"]).digest
    before = services.store.list(limit=10)
    _, replay = deliver_tag(client, repo, "v1.0.0", None, body=bodies["v1.0.0"], delivery=str(uuid.uuid4()))
    assert replay.status_code == 200 and replay.json["duplicate"] == before[-1].id
    assert services.store.list(limit=10) == before
    assert registry_digest(registry, repo.name, "latest") == digests["v2.0.0"]


def test_an_old_release_delivered_late_keeps_its_own_tags_but_not_latest(web, repo, registry, base_image):
    """v2.0.0 is built first; v1.9.0 arriving after it gets 1.9.0, 1.9 and 1 but leaves latest on 2.0.0."""
    app, services = web
    client = signed_in(app)
    built = {}
    for version in ("v2.0.0", "v1.9.0"):
        sha = repo.commit(image_files(base_image, version), branch="main")
        repo.tag(version)
        _, reply = deliver_tag(client, repo, version, sha)
        built[version] = run_queued(services, reply.json["build"])
    assert registry_digest(registry, repo.name, "latest") == built["v2.0.0"].digest
    assert {registry_digest(registry, repo.name, t) for t in ("1.9.0", "1.9", "1")} == {built["v1.9.0"].digest}
    assert "not moving" in services.store.log(built["v1.9.0"].id)[0]


def test_a_cache_named_after_the_ref_is_used_only_if_the_ref_wrote_it(tagged, repo, registry, base_image):
    """cache_from {ref}: branch x reuses its own image x; a git tag named x never takes branch x's layers."""
    image = f"{registry}/{repo.name}"
    services = tagged(rules=[{"branch": "**"}, {"tag": "*"}], cache_from=[f"{image}:{{ref}}"])
    push(services, repo, repo.commit(image_files(base_image, "x one"), branch="x"), "refs/heads/x")
    again = push(services, repo, repo.commit(image_files(base_image, "x two"), branch="x"), "refs/heads/x")
    assert f"pulling cache image {image}:x" in services.store.log(again.id)[0]
    release = repo.commit(image_files(base_image, "tagged x"), branch="other")
    repo.tag("x")
    tagged = push(services, repo, release, "refs/tags/x")
    log = services.store.log(tagged.id)[0]
    assert f"not using cache image {image}:x: x never pushed it" in log and "pulling cache image" not in log
