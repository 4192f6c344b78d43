"""webhook.prepared: a statement run on the driver's cursor does what SQLAlchemy's execute does, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime

import pytest
import sqlalchemy as sa

from webhook.prepared import Prepared
from webhook.store import create_db_engine

metadata = sa.MetaData()
things = sa.Table(
    "prepared_things", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("seen_at", sa.DateTime),  # a type whose values the driver cannot take as they are on SQLite
)
#: What the dialects' ON CONFLICT and RETURNING look like is the store's business; a plain insert here.
INSERT = Prepared(things.insert(), column_keys=["name", "kind", "seen_at"])
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
            assert INSERT.count(conn, {"name": name, "kind": kind, "seen_at": None}) == 1
        rows = LATEST_TOOLS.rows(conn, {})
        assert rows == [tuple(row) for row in conn.execute(LATEST_TOOLS.statement)]
        assert [(row.id, row.name) for row in rows] == [(4, "drill"), (3, "saw")]


def test_values_are_converted_as_sqlalchemy_converts_them(engine):
    seen = datetime.datetime(2026, 11, 28, 9, 30, 15, 250_000)
    with engine.begin() as conn:
        INSERT.count(conn, {"name": "clock", "kind": "tool", "seen_at": seen})
        assert conn.execute(sa.select(things.c.seen_at)).scalar() == seen


def test_it_runs_in_the_connections_transaction(engine):
    with engine.begin() as conn:
        INSERT.count(conn, {"name": "hammer", "kind": "tool", "seen_at": None})
    with engine.connect() as conn, conn.begin() as transaction:
        assert RENAME.count(conn, {"old": "hammer", "new": "mallet"}) == 1
        assert RENAME.count(conn, {"old": "nothing", "new": "anything"}) == 0
        transaction.rollback()
    with engine.begin() as conn:
        assert conn.execute(sa.select(things.c.name)).scalars().all() == ["hammer"]


def test_a_driver_error_is_sqlalchemys_error(engine):
    with engine.begin() as conn:
        INSERT.count(conn, {"name": "hammer", "kind": "tool", "seen_at": None})
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        INSERT.count(conn, {"name": "hammer", "kind": "tool", "seen_at": None})


def test_a_statement_with_a_list_parameter_is_refused(engine):
    names = Prepared(sa.select(things.c.id).where(things.c.name.in_(sa.bindparam("names", expanding=True))))
    with engine.begin() as conn, pytest.raises(ValueError, match="list"):
        names.rows(conn, {"names": ["hammer"]})
