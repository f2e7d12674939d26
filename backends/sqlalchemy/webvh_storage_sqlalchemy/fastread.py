"""Fast paths straight on the DBAPI connection (SQLite files and PostgreSQL).

SQLAlchemy's Connection/pool/Result layers cost ~100 us per call, several times the
query itself on SQLite and as much as a round trip on PostgreSQL. Reads by key are the
hottest call of a did:webvh server, so they run the statement SQLAlchemy compiled (same
SQL) on a connection the engine created (same pragmas / json typecasters), kept in a
small LIFO of idle connections (`ReadConnections`), and convert columns with plain
functions. The same connections serve creates (SQLite: BEGIN IMMEDIATE + INSERT +
COMMIT; PostgreSQL: one autocommit INSERT) and counts. On PostgreSQL they are autocommit,
at most pool_size + max_overflow are open, a connection the server closed while idle is
noticed without a round trip before use, and a read is retried once after a disconnect.
Bulk upserts run SQLAlchemy's compiled INSERT ... ON CONFLICT with sqlite3's executemany
or psycopg2's execute_values inside a SQLAlchemy transaction. Everything else goes
through SQLAlchemy.
"""

from __future__ import annotations

import select
import threading
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

from sqlalchemy import Engine
from sqlalchemy import exc as sa_exc

from storage_core.codec import dumps_str, loads
from storage_core.kinds import FieldType, KindSpec

_JSON_TYPES = (FieldType.LIST, FieldType.DICT, FieldType.JSON, FieldType.STR_DICT)
JSON_TYPES = _JSON_TYPES


class ReadConnections:
    """Idle autocommit DBAPI connections for reads; at most `max_idle` are kept.

    Connections come from the engine (so its connect hooks ran) and are detached from
    its pool, so they never count against pool_size and close() closes them.
    """

    def __init__(
        self,
        engine: Engine,
        max_idle: int,
        *,
        limit: int | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._engine = engine
        self._idle: deque[Any] = deque()
        self._max_idle = max(1, max_idle)
        self._closed = False
        # PostgreSQL: detached connections are server connections outside the pool's
        # accounting, so at most `limit` are open at once (pool_size + max_overflow).
        self._slots = threading.BoundedSemaphore(limit) if limit else None
        self._timeout = timeout
        self._cursor_api = engine.dialect.name != "sqlite"  # psycopg2 has no .execute

    def acquire(self) -> Any:
        if self._slots is not None and not self._slots.acquire(timeout=self._timeout):
            raise sa_exc.TimeoutError(
                f"read connection limit reached, connection timed out, timeout {self._timeout}"
            )
        while True:
            try:
                conn = self._idle.pop()  # deque.pop/append are atomic: no lock needed
            except IndexError:
                break
            if not (self._cursor_api and _server_hung_up(conn)):
                return conn
            # The server closed it while idle (restart, failover, idle timeout): the
            # others are stale too. Found without a round trip, so writes can use these.
            with suppress(Exception):
                conn.close()
            self.drop_idle()
        try:
            fairy = self._engine.raw_connection()  # PostgreSQL: a new one (NullPool)
            fairy.detach()
            conn = fairy.dbapi_connection
            if self._cursor_api:
                conn.autocommit = True  # single-statement reads: no BEGIN/ROLLBACK
            return conn
        except BaseException:
            if self._slots is not None:
                self._slots.release()
            raise

    def execute(self, conn: Any, sql: str, params: Any) -> None:
        """One statement in autocommit (PostgreSQL): committed when this returns."""
        cursor = conn.cursor()
        try:
            cursor.execute(sql, params)
        finally:
            cursor.close()

    def fetch_one(self, conn: Any, sql: str, params: Any) -> Any:
        if not self._cursor_api:
            return conn.execute(sql, params).fetchone()
        cursor = conn.cursor()
        try:
            cursor.execute(sql, params)
            return cursor.fetchone()
        finally:
            cursor.close()

    def is_disconnect(self, exc: BaseException, conn: Any) -> bool:
        """A connection the server dropped (restart, failover): worth one retry."""
        dbapi = self._engine.dialect.loaded_dbapi
        return isinstance(exc, dbapi.Error) and self._engine.dialect.is_disconnect(exc, conn, None)

    def release(self, conn: Any) -> None:
        if self._closed or len(self._idle) >= self._max_idle:
            conn.close()
        else:
            self._idle.append(conn)
        if self._slots is not None:
            self._slots.release()

    def discard(self, conn: Any) -> None:
        with suppress(Exception):  # a broken connection is being thrown away
            conn.close()
        if self._slots is not None:
            self._slots.release()

    def drop_idle(self) -> None:
        """Close every idle connection (after a disconnect they are likely stale too)."""
        while self._idle:
            try:
                conn = self._idle.pop()
            except IndexError:
                return
            with suppress(Exception):
                conn.close()

    def close(self) -> None:
        self._closed = True
        self.drop_idle()


def _server_hung_up(conn: Any) -> bool:
    """True when an idle PostgreSQL connection has something to read: on an idle
    autocommit connection that is only ever the server's termination notice or EOF.
    A zero-timeout poll, no round trip (pool_pre_ping costs one)."""
    if conn.closed:
        return True
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _parse_sqlite_datetime(value: str | None) -> datetime | None:
    # SQLAlchemy stores "YYYY-MM-DD HH:MM:SS.ffffff" (naive UTC, see UTCDateTime).
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


def _load_json(value: Any) -> Any:
    return None if value is None else loads(value)


def row_converter(spec: KindSpec, fields: Sequence[str]) -> Callable[[Sequence[Any]], Any]:
    """A function turning a raw sqlite3 row (columns in `fields` order) into a record."""
    converters: list[Callable[[Any], Any] | None] = []
    for name in fields:
        ftype = spec.field_types.get(name)
        if ftype in _JSON_TYPES:
            converters.append(_load_json)
        elif ftype is FieldType.BOOL:
            converters.append(bool)
        elif name in ("created_at", "updated_at"):
            converters.append(_parse_sqlite_datetime)
        else:
            converters.append(None)
    plan = tuple(zip(fields, converters, strict=True))
    record_type = spec.record

    def convert(row: Sequence[Any]) -> Any:
        return record_type(
            **{
                name: (value if fn is None else fn(value))
                for (name, fn), value in zip(plan, row, strict=False)
            }
        )

    return convert


def json_text_converter(spec: KindSpec, fields: Sequence[str]) -> Callable[[Sequence[Any]], Any]:
    """Like `row_converter` for rows whose JSON fields are text and every other column
    already has its Python value (PostgreSQL streams): decodes only the JSON."""
    json_fields = tuple(
        (i, name) for i, name in enumerate(fields) if spec.field_types.get(name) in _JSON_TYPES
    )
    record_type = spec.record

    def convert(row: Sequence[Any]) -> Any:
        values = dict(zip(fields, row, strict=False))
        for i, name in json_fields:
            values[name] = _load_json(row[i])
        return record_type(**values)

    return convert


def utc_timestamp(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def pg_row_converter(spec: KindSpec, fields: Sequence[str]) -> Callable[[Sequence[Any]], Any]:
    """A raw psycopg2 row (JSON already decoded by the engine's orjson typecaster,
    timestamptz as aware datetimes) into a record, timestamps in UTC like UTCDateTime."""
    stamps = tuple(i for i, name in enumerate(fields) if name in ("created_at", "updated_at"))
    record_type = spec.record

    def convert(row: Sequence[Any]) -> Any:
        values = list(row)
        for i in stamps:
            values[i] = utc_timestamp(values[i])
        return record_type(**dict(zip(fields, values, strict=False)))

    return convert


def _dump_json(value: Any) -> str | None:
    return None if value is None else dumps_str(value)


def _format_sqlite_datetime(value: datetime | None) -> str | None:
    # Exactly what SQLAlchemy's SQLite DATETIME writes for UTCDateTime (naive UTC).
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", timespec="microseconds")


def param_converter(
    spec: KindSpec,
    fields: Sequence[str],
    timestamp: Callable[[datetime | None], Any] | None = None,
) -> Callable[[Any], list]:
    """A function turning a record into positional DBAPI parameters of `fields`: JSON
    fields encoded with orjson, timestamps through `timestamp` (default: the naive-UTC
    text SQLAlchemy's SQLite DATETIME writes; PostgreSQL passes `utc_timestamp`)."""
    format_timestamp = timestamp or _format_sqlite_datetime
    plan: list[Callable[[Any], Any] | None] = []
    for name in fields:
        if spec.field_types.get(name) in _JSON_TYPES:
            plan.append(_dump_json)
        elif name in ("created_at", "updated_at"):
            plan.append(format_timestamp)
        else:
            plan.append(None)
    read_all = attrgetter(*fields)  # every field in one C call
    converted = tuple((i, fn) for i, fn in enumerate(plan) if fn is not None)

    def convert(record: Any) -> list:
        values = list(read_all(record))
        for i, fn in converted:
            values[i] = fn(values[i])
        return values

    return convert
