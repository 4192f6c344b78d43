"""The SQL broker transport: the embedded SQLite broker is watched, not queried all day."""

import base64
import json
import sqlite3

import pytest
from kombu.transport.sqlalchemy import Channel

from webhook.broker import FALLBACK_S, WATCH_S, Watch, WatchingChannel, WatchingSQLTransport, sqlite_files
from webhook.events import PushEvent
from webhook.store import BuildStore, create_db_engine
from webhook.worker import TASK_NAME, Dispatcher, declare_queues, make_celery

from .helpers.configs import Clock


def embedded_dispatcher(config):
    """A dispatcher on the config's embedded SQLite broker, its queues declared as at start."""
    config.server.data_dir.mkdir(parents=True)
    celery = make_celery(config)
    declare_queues(celery)
    return Dispatcher(celery, BuildStore(create_db_engine(config.server.state_url)))


def queued_args(config) -> list[str]:
    """The arguments of each message on the embedded broker, as Celery shows them (argsrepr)."""
    with sqlite3.connect(config.server.data_dir / "broker.sqlite") as db:
        return [args for (args,) in db.execute("SELECT json_extract(payload, '$.headers.argsrepr') FROM kombu_message")]


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


def test_a_published_message_is_the_row_kombus_own_publishing_makes(make_config):
    """One INSERT … SELECT stores what kombu's ORM would (visible, version 1, the queue's id), and a worker gets it."""
    config = make_config()
    config.server.data_dir.mkdir(parents=True)
    celery = make_celery(config)
    celery.send_task(TASK_NAME, args=[1])  # the queue does not exist yet: kombu's own way creates it
    celery.send_task(TASK_NAME, args=[2])  # one statement
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(WatchingChannel, "_put", Channel._put)
        celery.send_task(TASK_NAME, args=[3])  # kombu's own, to compare with
    path = config.server.data_dir / "broker.sqlite"
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT visible, timestamp, version, queue_id, json_extract(payload, '$.headers.argsrepr') "
                          "FROM kombu_message ORDER BY id").fetchall()
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    assert rows == [(1, None, 1, 1, "[1]"), (1, None, 1, 1, "[2]"), (1, None, 1, 1, "[3]")]
    assert mode == "wal"  # a commit syncs one file, not a rollback journal and the database
    with celery.connection_for_write() as connection:
        got = [connection.default_channel._get("celery") for _ in range(3)]
    assert [message["headers"]["argsrepr"] for message in got] == ["[1]", "[2]", "[3]"]


def test_the_sqlite_broker_is_in_wal_mode_from_the_start(make_config):
    """declare_queues (worker and serve start) switches it, so no webhook's first publish waits on the switch."""
    config = make_config()
    config.server.data_dir.mkdir(parents=True)
    declare_queues(make_celery(config))
    with sqlite3.connect(config.server.data_dir / "broker.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_broker_commits_do_not_wait_for_the_disk_and_build_records_do(make_config):
    """A delivery's answer waits for one sync to disk, its build record's; a lost message is sent again (the reconciler)."""
    config = make_config()
    config.server.data_dir.mkdir(parents=True)
    celery = make_celery(config)
    declare_queues(celery)
    with celery.connection_for_write() as connection:
        engine, _ = connection.default_channel._open()
        with engine.connect() as conn:
            broker_sync = conn.exec_driver_sql("PRAGMA synchronous").scalar()
    with create_db_engine(config.server.state_url).connect() as conn:
        state_sync = conn.exec_driver_sql("PRAGMA synchronous").scalar()
    assert (broker_sync, state_sync) == (1, 2)  # NORMAL, FULL


def test_a_broker_not_in_wal_mode_waits_for_the_disk(make_config):
    """synchronous=NORMAL is safe in WAL mode only: in a rollback journal a power cut could corrupt the broker."""
    config = make_config()
    config.server.data_dir.mkdir(parents=True)
    with sqlite3.connect(config.server.data_dir / "broker.sqlite") as db:
        db.execute("PRAGMA journal_mode=DELETE")
    with make_celery(config).connection_for_write() as connection:
        engine, _ = connection.default_channel._open()
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2


#: What differs between any two messages: their ids, and the delivery tag kombu gives each.
_IDS = (("headers", "id"), ("headers", "root_id"), ("properties", "correlation_id"), ("properties", "delivery_tag"))


@pytest.mark.parametrize("countdown_s", [None, 30])
def test_a_dispatched_build_is_the_message_celerys_send_task_stores(make_config, countdown_s):
    """The dispatcher publishes to a SQL broker without kombu's producer, and stores exactly what send_task does."""
    config = make_config()
    dispatcher = embedded_dispatcher(config)
    with pytest.MonkeyPatch.context() as patch:  # the dispatcher's own publishing, not send_task's
        patch.setattr(dispatcher.celery, "send_task", lambda *args, **kwargs: pytest.fail("send_task was used"))
        assert dispatcher.dispatch(7, marked=True, countdown_s=countdown_s)
    dispatcher.celery.send_task(TASK_NAME, args=[7], countdown=countdown_s)
    with sqlite3.connect(config.server.data_dir / "broker.sqlite") as db:
        ours, theirs = (json.loads(payload) for (payload,) in db.execute("SELECT payload FROM kombu_message ORDER BY id"))
    assert ours["headers"]["root_id"] == ours["headers"]["id"]  # a task with no parent is its own root
    for section, key in _IDS:
        assert ours[section].pop(key) != theirs[section].pop(key)
    if countdown_s:  # each is due countdown_s after it was made
        ours["headers"].pop("eta"), theirs["headers"].pop("eta")
    assert ours == theirs, json.dumps([ours, theirs], indent=1)
    assert json.loads(base64.b64decode(ours["body"]))[0] == [7]


def test_a_build_the_broker_did_not_take_is_left_to_the_reconciler_and_the_next_one_gets_through(make_config):
    """A failed publish clears the record's dispatch mark (so the reconciler sends it) and drops the held channel."""
    config = make_config()
    config.server.data_dir.mkdir(parents=True)
    celery = make_celery(config)
    declare_queues(celery)
    store = BuildStore(create_db_engine(config.server.state_url))
    store.create_schema()
    dispatcher = Dispatcher(celery, store)
    [build] = store.accept([PushEvent(forge="github", repo="acme/app", ref="refs/heads/main", sha="a" * 40,
                                      before="0" * 40, pusher="p", delivery_id="d")], dispatching=True).builds
    broker_db = config.server.data_dir / "broker.sqlite"
    with sqlite3.connect(broker_db) as db:
        schema = db.execute("SELECT sql FROM sqlite_master WHERE name = 'kombu_message'").fetchone()[0]
        db.execute("DROP TABLE kombu_message")
    assert not dispatcher.dispatch(build.id, marked=True)
    assert store.lost(redispatch_after_s=3600) == [store.get(build.id)]  # not dispatched: the reconciler's to send
    with sqlite3.connect(broker_db) as db:
        db.execute(schema)
    assert dispatcher.dispatch(build.id)
    assert store.lost(redispatch_after_s=3600) == []
    with sqlite3.connect(broker_db) as db:
        assert db.execute("SELECT json_extract(payload, '$.headers.argsrepr') FROM kombu_message").fetchall() == [
            (f"[{build.id}]",)]


def test_when_publishing_directly_fails_celerys_send_task_has_a_go(make_config):
    """A broker busy past SQLite's busy timeout: send_task's retries may still get the message through."""
    config = make_config()
    dispatcher = embedded_dispatcher(config)

    def busy(*args, **kwargs):
        raise sqlite3.OperationalError("database is locked")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dispatcher._sql, "send", busy)
        assert dispatcher.dispatch(9, marked=True)
    assert queued_args(config) == ["[9]"]


def test_a_warmed_dispatcher_publishes_on_the_channel_it_opened(make_config):
    config = make_config()
    dispatcher = embedded_dispatcher(config)
    dispatcher.warm()
    assert dispatcher._sql.ready
    channel = dispatcher._sql._channel()
    assert dispatcher.dispatch(5, marked=True)
    assert dispatcher._sql._channel() is channel
    assert queued_args(config) == ["[5]"]


def test_a_broker_that_cannot_be_opened_at_start_is_opened_by_the_first_build(make_config, caplog):
    """Warming is best effort: a missing data directory is logged, and the first dispatch opens the broker."""
    config = make_config()
    dispatcher = Dispatcher(make_celery(config), BuildStore(create_db_engine("sqlite://")))
    with caplog.at_level("INFO", logger="webhook.worker"):
        dispatcher.warm()  # data_dir does not exist yet: SQLite cannot make the file
    assert "could not open the broker at start" in caplog.text
    assert not dispatcher._sql.ready and dispatcher._sql._connection is None  # nothing half-open is kept
    config.server.data_dir.mkdir(parents=True)
    assert dispatcher.dispatch(3, marked=True)
    assert dispatcher._sql.ready


def test_a_networked_sql_broker_is_not_opened_at_start(make_config, caplog):
    """A broker across the network could keep a starting web process waiting: it is opened by the first build."""
    config = make_config(server={"broker_url": "sqla+postgresql+psycopg://pb@127.0.0.1:1/pb"})
    dispatcher = Dispatcher(make_celery(config), BuildStore(create_db_engine("sqlite://")))
    with caplog.at_level("DEBUG"):
        dispatcher.warm()
    assert dispatcher._sql is not None and not dispatcher._sql.ready
    assert "could not open the broker" not in caplog.text
