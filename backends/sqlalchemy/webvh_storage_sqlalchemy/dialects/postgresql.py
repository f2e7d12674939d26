"""PostgreSQL through psycopg2.

- Connect timeout from the connect_timeout option, so an unreachable server fails fast.
- No pool pre-ping (a round trip per checkout, as much as a read by key): instead a
  connection the server closed while it sat in the pool (restart, failover, idle kill)
  is noticed on checkout by a zero-timeout poll of its socket (`closed_by_server`), and
  one that dies later fails its statement, is invalidated, and a read runs once more.
- Fast paths run in autocommit: a read by key or a create is one round trip (BEGIN, the
  statement and COMMIT/ROLLBACK would be three); a bulk write sends BEGIN and COMMIT
  itself. The connection is back in transactional mode when it returns to the pool.
- psycopg2 decodes `json` columns itself (with the engine's orjson loads); streams fetch
  JSON as text and decode each row when it is yielded, not a whole batch up front.
  Streams read keyset pages (Dialect.stream), not a server-side cursor: no connection is
  held between pages, so a stream abandoned in a reference cycle pins nothing until the
  garbage collector runs, and there is no cursor left for it to close noisily.
"""

from __future__ import annotations

import functools
import select as select_module
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Engine,
    Table,
    Text,
    cast,
    create_engine,
    event,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import psycopg2 as sa_psycopg2

from storage_core.config import Settings
from storage_core.kinds import FieldType, KindSpec
from webvh_storage_sqlalchemy.dialects.base import Dialect, DriverConnection
from webvh_storage_sqlalchemy.rows import (
    BULK_CHUNK_ROWS,
    Converter,
    RowToRecord,
    chunks,
    in_utc,
    is_datetime,
    is_json,
    load_json,
    record_builder,
)

if TYPE_CHECKING:  # these modules import this one
    from sqlalchemy.engine import URL

    from webvh_storage_sqlalchemy.connections import Connections
    from webvh_storage_sqlalchemy.statements import KindStatements

#: psycopg2.extensions.TRANSACTION_STATUS_IDLE: connected, no transaction open.
_IDLE = 0


class PsycopgConnection:
    """Statements on a psycopg2 connection, one short-lived cursor each."""

    __slots__ = ("_conn",)

    def __init__(self, dbapi_connection: Any) -> None:
        self._conn = dbapi_connection

    def execute(self, sql: str, params: Sequence[Any]) -> None:
        with self._conn.cursor() as cursor:
            cursor.execute(sql, params)

    def fetch_one(self, sql: str, params: Sequence[Any]) -> Sequence[Any] | None:
        with self._conn.cursor() as cursor:
            cursor.execute(sql, params)
            row: Sequence[Any] | None = cursor.fetchone()
            return row

    def fetch_all(self, sql: str, params: Sequence[Any]) -> Sequence[Sequence[Any]]:
        with self._conn.cursor() as cursor:
            cursor.execute(sql, params)
            rows: Sequence[Sequence[Any]] = cursor.fetchall()
            return rows

    def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self._conn.cursor() as cursor:
            cursor.executemany(sql, rows)


def _from_psycopg2(name: str, ftype: FieldType | None) -> Converter | None:
    # psycopg2 returns timestamptz as aware datetimes in the session's zone; JSON decoded
    return in_utc if is_datetime(name, ftype) else None


class PostgreSQLDialect(Dialect):
    name = "postgresql"
    code_point_collation = "C"  # the database's default may be a locale's (en_US)
    driver = "psycopg2"
    read_column = staticmethod(_from_psycopg2)
    timestamp_param = staticmethod(in_utc)
    placeholder = "%s"
    no_limit = None  # LIMIT NULL: no limit

    def __init__(self, url: URL, settings: Settings) -> None:
        super().__init__(url, settings)
        # the driver's own "format" style: positional %s, like psycopg2's cursor.execute
        self.compiler = sa_psycopg2.dialect(paramstyle="format")  # type: ignore[no-untyped-call]

    # --- the engine --------------------------------------------------------------------
    def create_engine(self) -> Engine:
        connect_timeout = max(1, round(self.settings.option("connect_timeout")))
        engine = create_engine(
            self.url,
            connect_args={"connect_timeout": connect_timeout},
            **self.pool_args(),
            **self.engine_args(),
        )
        closed_by_server = self.closed_by_server

        @event.listens_for(engine, "checkout")
        def _on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
            if closed_by_server(dbapi_connection):  # the pool replaces it
                raise sa_exc.DisconnectionError("the server closed the pooled connection")

        return engine

    @contextmanager
    def without_transaction(self, conn: Connection) -> Iterator[None]:
        # not isolation_level="AUTOCOMMIT": SQLAlchemy then resets the level by name on
        # every return to the pool, two SET round trips per Connection (see lend())
        dbapi_connection: Any = conn.connection.dbapi_connection
        self.lend(dbapi_connection)
        try:
            yield
        finally:
            if not dbapi_connection.closed:
                dbapi_connection.autocommit = False

    def insert(self, table: Table) -> postgresql.Insert:
        return postgresql.insert(table)

    # --- driver-level fast paths ---------------------------------------------------------
    def lend(self, dbapi_connection: Any) -> DriverConnection:
        if dbapi_connection.isolation_level is not None:
            # a level named by SQLAlchemy's reset (the server's default, named): with a
            # named level psycopg2 sends SET commands on every autocommit switch
            dbapi_connection.set_session(isolation_level="DEFAULT")
        dbapi_connection.autocommit = True  # local to psycopg2: no round trip
        return PsycopgConnection(dbapi_connection)

    def reusable(self, dbapi_connection: Any) -> bool:
        if dbapi_connection.closed or dbapi_connection.info.transaction_status != _IDLE:
            return False  # e.g. a failed ROLLBACK left a transaction open on the server
        dbapi_connection.autocommit = False
        return True

    def closed_by_server(self, dbapi_connection: Any) -> bool:
        """On an idle connection the only thing there can be to read is the server's
        termination notice or EOF: a zero-timeout poll of the socket finds it."""
        if dbapi_connection.closed:
            return True
        try:
            readable, _, _ = select_module.select([dbapi_connection.fileno()], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def bulk_upsert(
        self, conn: DriverConnection, statements: KindStatements, records: Sequence[Any]
    ) -> None:
        """Many rows per INSERT ... VALUES (...), (...) ON CONFLICT statement (what
        psycopg2's execute_values does): one round trip per chunk, not per row."""
        to_params = statements.to_params
        for chunk in chunks(records, BULK_CHUNK_ROWS):
            conn.execute(
                _multi_row(statements.bulk_upsert_sql, len(chunk)),
                [value for record in chunk for value in to_params(record)],
            )

    # --- streams -----------------------------------------------------------------------
    def stream_columns(
        self, spec: KindSpec[Any], columns: Sequence[Column[Any]]
    ) -> list[ColumnElement[Any]]:
        # JSON as its stored text (json::text), decoded per row when yielded
        return [
            cast(c, Text).label(c.name) if is_json(spec.field_types.get(c.name)) else c
            for c in columns
        ]

    def stream_converter(self, spec: KindSpec[Any], fields: Sequence[str]) -> RowToRecord:
        # every other column already has its Python value (SQLAlchemy's result types)
        return record_builder(spec, fields, _json_text)

    # --- maintenance -------------------------------------------------------------------
    def flush(self, connections: Connections) -> None:
        """Nothing to do: a commit is durable when it returns."""


@functools.lru_cache(maxsize=16)
def _multi_row(sql: str, rows: int) -> str:
    """INSERT ... VALUES (row) ON CONFLICT ... with `rows` copies of (row)."""
    head, found, rest = sql.partition(" VALUES (")
    row, found_end, tail = rest.partition(") ON CONFLICT ")
    if not (found and found_end):
        raise AssertionError(f"not an INSERT ... VALUES (...) ON CONFLICT statement: {sql}")
    return f"{head} VALUES {', '.join([f'({row})'] * rows)} ON CONFLICT {tail}"


def _json_text(name: str, ftype: FieldType | None) -> Converter | None:
    return load_json if is_json(ftype) else None
