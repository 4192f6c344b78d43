"""SQL statements compiled once per database and run on the driver's own cursor, for the webhook's path.

SQLAlchemy spends 30–80 µs around each statement it executes (an execution context, parameter
processing, events, a result object), against about 10 µs for SQLite itself to run one of the
webhook's statements. A new delivery runs seven of them, in two transactions, while the web
process serves nothing else. :class:`Prepared` keeps SQLAlchemy for what it is good at, writing
the SQL for each database, and runs that SQL on the DBAPI connection of an SQLAlchemy
:class:`~sqlalchemy.engine.Connection`, inside its transaction.

Only for statements with no list (``expanding``) parameters; values are converted by the
parameter types' own ``bind_processor`` as SQLAlchemy would, and rows come back as named tuples
of what the driver returned (no result processing: text and numbers only). A driver error is
raised as SQLAlchemy's (``IntegrityError``, ``OperationalError``), as ``Connection.execute`` raises it.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa


@dataclass(frozen=True)
class _Compiled:
    sql: str
    #: Parameter names in the order of a positional paramstyle's placeholders; ``None`` for a named one.
    order: tuple[str, ...] | None
    #: Values the statement carries itself (a state it matches, a limit): given parameters come on top.
    fixed: Mapping[str, Any]
    convert: Mapping[str, Callable[[Any], Any]]


class Prepared:
    """One statement, compiled on first use for each database dialect and run on the DBAPI cursor."""

    def __init__(self, statement: sa.Executable, *, column_keys: Sequence[str] | None = None) -> None:
        """``column_keys``: for an INSERT or UPDATE, the columns given a value (the others are left to the database)."""
        self.statement = statement
        self.column_keys = list(column_keys) if column_keys is not None else None
        self._by_dialect: dict[sa.Dialect, _Compiled] = {}
        self._row_types: dict[tuple[str, ...], type] = {}

    def rows(self, conn: sa.Connection, params: Mapping[str, Any]) -> list[Any]:
        """Run the statement in ``conn``'s transaction; return its rows (those of ``RETURNING`` too) as named tuples."""
        cursor = self._run(conn, params)
        try:
            found = cursor.fetchall()
            names = tuple(column[0] for column in cursor.description or ())
        finally:
            cursor.close()
        if (row_type := self._row_types.get(names)) is None:
            row_type = self._row_types[names] = collections.namedtuple("Row", names, rename=True)
        return [row_type._make(row) for row in found]

    def count(self, conn: sa.Connection, params: Mapping[str, Any]) -> int:
        """Run the statement (an INSERT, UPDATE or DELETE) in ``conn``'s transaction; return how many rows it changed."""
        cursor = self._run(conn, params)
        try:
            return cursor.rowcount
        finally:
            cursor.close()

    def _run(self, conn: sa.Connection, params: Mapping[str, Any]) -> Any:
        compiled = self._by_dialect.get(conn.dialect) or self._compile(conn.dialect)
        values = {**compiled.fixed, **params}
        for name, convert in compiled.convert.items():
            if values[name] is not None:
                values[name] = convert(values[name])
        arguments = values if compiled.order is None else tuple(values[name] for name in compiled.order)
        dbapi = conn.dialect.loaded_dbapi
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            cursor.execute(compiled.sql, arguments)
        except dbapi.Error as exc:
            cursor.close()
            raise sa.exc.DBAPIError.instance(compiled.sql, arguments, exc, dbapi.Error,
                                             dialect=conn.dialect) from exc
        return cursor

    def _compile(self, dialect: sa.Dialect) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect, column_keys=self.column_keys)
        names = compiled.bind_names  # each parameter, by the name the SQL gives it
        if any(bind.expanding for bind in names) or compiled.escaped_bind_names:
            raise ValueError(f"not a statement to prepare (list or escaped parameters): {compiled}")
        convert = {name: processor for bind, name in names.items() if (processor := bind.type.bind_processor(dialect))}
        order = tuple(compiled.positiontup) if compiled.positional else None
        made = self._by_dialect[dialect] = _Compiled(sql=compiled.string, order=order, fixed=compiled.params,
                                                     convert=convert)
        return made
