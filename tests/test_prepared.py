"""webhook.prepared: a statement run on the driver's cursor does what SQLAlchemy's execute does, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime

import pytest
import sqlalchemy as sa

from webhook.prepared import Prepared
from webhook.store import create_db_engine

from .helpers.support import can_write

metadata = sa.MetaData()
things = sa.Table(
    "prepared_things", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("seen_at", sa.DateTime),  # SQLAlchemy stores it as text of its own format on SQLite
    sa.Column("note", sa.String(64), default="none"),  # a default SQLAlchemy fills in, not the database
)
#: What the dialects' ON CONFLICT and RETURNING look like is the store's business; a plain insert here.
INSERT = Prepared(things.insert(), column_keys=["name", "kind", "seen_at", "note"])
#: The statement's own values (a kind, a limit) are bound by SQLAlchemy, not given at run time.
LATEST_TOOLS = Prepared(sa.select(things.c.id, things.c.name).where(things.c.kind == "tool")
                        .order_by(things.c.id.desc()).limit(2))
RENAME = Prepared(things.update().where(things.c.name == sa.bindparam("old")).values(name=sa.bindparam("new")))


@pytest.fixture
def engine(db_url):
    engine = create_db_engine(db_url)
    metadata.create_all(engine)
    yield engine
    engine.dispose()


def test_rows_come_back_as_sqlalchemys_own_execute_returns_them(engine):
    with engine.begin() as conn:
        for name, kind in [("hammer", "tool"), ("apple", "food"), ("saw", "tool"), ("drill", "tool")]:
            assert INSERT.count(conn, thing(name, kind)) == 1
        rows = LATEST_TOOLS.rows(conn, {})
        assert rows == [tuple(row) for row in conn.execute(LATEST_TOOLS.statement)]
        assert [(row.id, row.name) for row in rows] == [(4, "drill"), (3, "saw")]


def thing(name, kind="tool", seen_at=None):
    return {"name": name, "kind": kind, "seen_at": seen_at, "note": "none"}


def test_values_are_stored_as_sqlalchemy_stores_them(engine):
    """On SQLite a datetime becomes text in SQLAlchemy's format (the driver's own drops zero microseconds)."""
    seen = datetime.datetime(2026, 11, 28, 9, 30, 15)
    with engine.begin() as conn:
        conn.execute(things.insert(), thing("by sqlalchemy", seen_at=seen))
        INSERT.count(conn, thing("prepared", seen_at=seen))
        stored = conn.execute(sa.select(sa.cast(things.c.seen_at, sa.Text)).order_by(things.c.id)).scalars().all()
    assert stored[0] == stored[1]


def test_it_runs_in_the_connections_transaction(engine):
    with engine.begin() as conn:
        INSERT.count(conn, thing("hammer"))
    with engine.connect() as conn, conn.begin() as transaction:
        assert RENAME.count(conn, {"old": "hammer", "new": "mallet"}) == 1
        assert RENAME.count(conn, {"old": "nothing", "new": "anything"}) == 0
        transaction.rollback()
    with engine.begin() as conn:
        assert conn.execute(sa.select(things.c.name)).scalars().all() == ["hammer"]


def test_it_never_runs_in_autocommit(engine):
    with engine.connect() as conn, pytest.raises(ValueError, match="inside a transaction"):
        INSERT.count(conn, thing("hammer"))
    with engine.begin() as conn:
        assert conn.execute(sa.select(things.c.name)).all() == []


@pytest.mark.parametrize("params", [
    {"name": "hammer", "kind": "tool", "seen_at": None},  # note left out: not NULL, an error
    {**thing("hammer"), "colour": "red"},  # a key the statement does not name
])
def test_every_parameter_is_given_and_none_unknown(engine, params):
    with engine.begin() as conn, pytest.raises(ValueError, match="missing|unknown"):
        INSERT.count(conn, params)
    with engine.begin() as conn:
        assert conn.execute(sa.select(things.c.name)).all() == []


def test_a_default_sqlalchemy_would_fill_in_is_refused_at_compile_time(engine):
    without_note = Prepared(things.insert(), column_keys=["name", "kind", "seen_at"])
    with engine.begin() as conn, pytest.raises(ValueError, match="defaults"):
        without_note.count(conn, {"name": "hammer", "kind": "tool", "seen_at": None})


def test_a_driver_error_is_sqlalchemys_error(engine):
    with engine.begin() as conn:
        INSERT.count(conn, thing("hammer"))
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        INSERT.count(conn, thing("hammer"))


def test_a_connection_lost_mid_transaction_is_invalidated_and_the_next_transaction_works(engine, db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("a server's connection to end")
    with pytest.raises(sa.exc.DBAPIError) as raised, engine.begin() as conn:
        backend = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with create_db_engine(db_url).connect() as admin:
            admin.exec_driver_sql(f"SELECT pg_terminate_backend({backend})")
        LATEST_TOOLS.rows(conn, {})
    assert raised.value.connection_invalidated
    with engine.begin() as conn:
        assert LATEST_TOOLS.rows(conn, {}) == []


class Interrupted:
    """A value whose adaptation raises what no ``except Exception`` catches (a killed greenlet, Ctrl-C)."""

    def __conform__(self, protocol):
        raise KeyboardInterrupt


def test_an_interrupted_statement_leaves_its_connection_invalidated(engine, db_url):
    if not db_url.startswith("sqlite"):
        pytest.skip("sqlite3's adaptation protocol")
    with pytest.raises(KeyboardInterrupt), engine.connect() as conn, conn.begin():
        try:
            INSERT.count(conn, thing(Interrupted()))
        finally:
            assert conn.invalidated
    assert can_write(engine), "the write turn was given back"


def test_a_statement_with_a_list_parameter_is_refused(engine):
    names = Prepared(sa.select(things.c.id).where(things.c.name.in_(sa.bindparam("names", expanding=True))))
    with engine.begin() as conn, pytest.raises(ValueError, match="list"):
        names.rows(conn, {"names": ["hammer"]})
