"""A process's collaborators, built from the configuration (webhook/services.py)."""

import pytest
import sqlalchemy as sa

from webhook.errors import EngineError
from webhook.events import PushEvent
from webhook.services import Services

from .helpers.configs import GITHUB_SECRET, repo_table

#: An engine nobody listens at.
AWAY = {"base_url": "unix:///nonexistent/docker.sock"}


def test_the_data_directory_and_the_schema_are_made(make_config):
    """A first start on an empty disk: the data directory, the database and its tables exist after."""
    config = make_config(repo_table("acme/app"), engine=AWAY)
    assert not config.server.data_dir.exists()
    services = Services(config)
    assert config.server.data_dir.is_dir()
    assert {"builds", "deliveries", "delivery_attempts"} <= set(sa.inspect(services.store.db).get_table_names())
    assert services.deliveries.db is services.store.db


def test_a_second_start_keeps_what_the_first_recorded(make_config):
    config = make_config(repo_table("acme/app"), engine=AWAY)
    [build], _ = Services(config).store.record([PushEvent(forge="github", repo="acme/app", ref="refs/heads/main", sha="a" * 40,
                                                          before="0" * 40, pusher="p", delivery_id=None)])
    assert Services(config).store.get(build.id) == build


def test_the_engine_is_connected_on_first_use_not_at_start(make_config):
    """The web process never needs the engine: it starts with the engine away, and only engine() reaches for it."""
    services = Services(make_config(repo_table("acme/app"), engine=AWAY))
    with pytest.raises(EngineError, match="cannot reach the Docker engine"):
        services.engine()


def test_the_redactor_knows_the_configurations_secrets(make_config):
    services = Services(make_config(repo_table("acme/app")))
    assert GITHUB_SECRET not in services.redact(f"secret was {GITHUB_SECRET}")


def test_the_notifier_is_made_once_and_shares_the_stores(make_config):
    services = Services(make_config(repo_table("acme/app")))
    assert services.notifier is services.notifier
    assert (services.notifier.builds, services.notifier.deliveries) == (services.store, services.deliveries)
