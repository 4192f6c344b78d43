"""The SQL broker transport: the embedded SQLite broker is watched, not queried all day."""

import pytest

from webhook.broker import FALLBACK_S, WATCH_S, Watch, WatchingSQLTransport, sqlite_files
from webhook.worker import make_celery

from .helpers.configs import Clock


@pytest.mark.parametrize(("url", "files"), [
    ("sqlite:////srv/pb/broker.sqlite", ("/srv/pb/broker.sqlite", "/srv/pb/broker.sqlite-journal",
                                         "/srv/pb/broker.sqlite-wal")),
    ("sqlite://", None),
    ("sqlite:///:memory:", None),
    ("postgresql+psycopg://u@db/pb", None),
])
def test_only_a_sqlite_file_is_watched(url, files):
    assert sqlite_files(url) == files


def test_the_broker_is_asked_only_when_its_files_change_or_the_fallback_is_due(tmp_path):
    db = tmp_path / "broker.sqlite"
    db.write_bytes(b"one")
    clock = Clock()
    watch = Watch(sqlite_files(f"sqlite:///{db}"), clock=clock)
    assert watch.worth_asking("celery")  # nothing seen yet
    assert not watch.worth_asking("celery")
    (tmp_path / "broker.sqlite-journal").write_bytes(b"")  # a writer began a transaction
    assert watch.worth_asking("celery") and not watch.worth_asking("celery")
    db.write_bytes(b"one and two")
    assert watch.worth_asking("celery")
    clock.now += FALLBACK_S
    assert watch.worth_asking("celery")  # a change it could not see is found within the fallback


def test_a_message_goes_through_the_embedded_brokers_watching_transport(make_config):
    """The Celery app pushbuild makes: its SQLite broker is watched; a message put is got."""
    config = make_config()
    config.server.data_dir.mkdir(parents=True)
    celery = make_celery(config)
    with celery.connection_for_write() as connection:
        assert isinstance(connection.transport, WatchingSQLTransport)
        assert connection.transport.polling_interval == WATCH_S and connection.transport.watch is not None
        queue = connection.SimpleQueue("pushbuild-test")
        queue.put({"build": 7})
        message = queue.get(timeout=10)
        assert message.payload == {"build": 7}
        message.ack()
        queue.close()


def test_a_sql_broker_that_cannot_be_watched_is_polled_every_broker_poll_s(make_config):
    config = make_config(server={"broker_url": "sqla+postgresql+psycopg://u@db.example/pb", "broker_poll_s": 0.3})
    assert make_celery(config).conf.broker_transport.polling_interval == 0.3
