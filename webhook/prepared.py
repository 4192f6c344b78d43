"""SQL statements compiled once per database and run on the driver's own cursor, for the webhook's path.

SQLAlchemy spends 30–80 µs around each statement it executes (an execution context, parameter
processing, events, a result object), against about 10 µs for SQLite itself to run one of the
webhook's statements. A new delivery runs seven of them, in two transactions, while the web
process serves nothing else. :class:`Prepared` keeps SQLAlchemy for what it is good at, writing
the SQL for each database, and runs that SQL on the DBAPI connection of an SQLAlchemy
:class:`~sqlalchemy.engine.Connection`, inside its transaction.

Only for statements with no list (``expanding``) or other post-compiled parameters and no
Python-side column defaults to fill (refused when compiled). Every parameter is given, none
unknown (else an error, where a NULL would silently be stored or matched); values are converted
by the parameter types' dialect implementation as SQLAlchemy does; rows come back as named tuples
of what the driver returned (no result processing: text and numbers only). A driver error is
raised as SQLAlchemy's (``IntegrityError``, ``OperationalError``), and a lost connection is
invalidated, as ``Connection.execute`` does.
"""

from __future__ import annotations

import collections
import contextlib
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa


@dataclass(frozen=True)
class _Compiled:
    sql: str
    #: Parameter names in the order of a positional paramstyle's placeholders; ``None`` for a named one.
    order: tuple[str, ...] | None
    #: The parameters a run must give, no more and no fewer (a misspelt or missing one is an error, not a NULL).
    required: frozenset[str]
    #: Values the statement carries itself (a state it matches, a limit).
    fixed: Mapping[str, Any]
    convert: Mapping[str, Callable[[Any], Any]]


class Prepared:
    """One statement, compiled on first use for each database dialect and run on the DBAPI cursor."""

    def __init__(self, statement: sa.Executable, *, column_keys: Sequence[str] | None = None,
                 begins: bool = False) -> None:
        """``column_keys``: for an INSERT or UPDATE, the columns given a value (the others are left to the database).

        ``begins``: the statement starts the connection's transaction itself (``BEGIN IMMEDIATE``,
        from an engine's ``begin`` hook); any other runs only inside one, never in autocommit.
        """
        self.statement = statement
        self.column_keys = list(column_keys) if column_keys is not None else None
        self.begins = begins
        self._by_dialect: weakref.WeakKeyDictionary[sa.Dialect, _Compiled] = weakref.WeakKeyDictionary()
        self._row_types: dict[tuple[str, ...], type] = {}

    def rows(self, conn: sa.Connection, params: Mapping[str, Any]) -> list[Any]:
        """Run the statement in ``conn``'s transaction; return its rows (those of ``RETURNING`` too) as named tuples."""
        names, found = self._run(conn, params, lambda cursor: (
            tuple(column[0] for column in cursor.description or ()), cursor.fetchall()))
        if (row_type := self._row_types.get(names)) is None:
            row_type = self._row_types[names] = collections.namedtuple("Row", names)
        return [row_type._make(row) for row in found]

    def count(self, conn: sa.Connection, params: Mapping[str, Any]) -> int:
        """Run the statement (an INSERT, UPDATE or DELETE) in ``conn``'s transaction; return how many rows it changed."""
        return self._run(conn, params, lambda cursor: cursor.rowcount)

    def _run(self, conn: sa.Connection, params: Mapping[str, Any], result: Callable[[Any], Any]) -> Any:
        compiled = self._by_dialect.get(conn.dialect) or self._compile(conn.dialect)
        if params.keys() != compiled.required:
            raise ValueError(f"parameters of {compiled.sql!r}: missing {sorted(compiled.required - params.keys())}, "
                             f"unknown {sorted(params.keys() - compiled.required)}")
        if not self.begins and not conn.in_transaction():
            raise ValueError("a prepared statement runs inside a transaction (engine.begin()), never in autocommit")
        values = {**compiled.fixed, **params}
        for name, convert in compiled.convert.items():
            if values[name] is not None:
                values[name] = convert(values[name])
        arguments = values if compiled.order is None else tuple(values[name] for name in compiled.order)
        dbapi, dbapi_connection = conn.dialect.loaded_dbapi, conn.connection.dbapi_connection
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(compiled.sql, arguments)
            return result(cursor)
        except dbapi.Error as exc:
            lost = conn.dialect.is_disconnect(exc, dbapi_connection, cursor)
            if lost:
                conn.invalidate(exc)  # as SQLAlchemy's own execute does: the pool opens a new one
            raise sa.exc.DBAPIError.instance(compiled.sql, arguments, exc, dbapi.Error, dialect=conn.dialect,
                                             hide_parameters=conn.engine.hide_parameters,
                                             connection_invalidated=lost) from exc
        except Exception:
            raise
        except BaseException:  # a greenlet killed, an interrupt: what the connection was doing is unknown
            conn.invalidate()
            raise
        finally:
            with contextlib.suppress(Exception):  # a lost connection's cursor may not close; the error above says why
                cursor.close()

    def _compile(self, dialect: sa.Dialect) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect, column_keys=self.column_keys)
        names = compiled.bind_names  # each parameter, by the name the SQL gives it
        if (any(bind.expanding for bind in names) or compiled.escaped_bind_names or compiled.post_compile_params
                or compiled.literal_execute_params or compiled.insert_prefetch or compiled.update_prefetch):
            raise ValueError("not a statement to prepare (list or post-compiled parameters, or Python-side column "
                             f"defaults to fill): {compiled}")
        convert = {name: processor for bind, name in names.items()
                   if (processor := bind.type.dialect_impl(dialect).bind_processor(dialect))}
        made = self._by_dialect[dialect] = _Compiled(
            sql=compiled.string, order=tuple(compiled.positiontup) if compiled.positional else None,
            required=frozenset(name for bind, name in names.items() if bind.required),
            fixed={name: compiled.params[name] for bind, name in names.items() if not bind.required},
            convert=convert)
        return made
