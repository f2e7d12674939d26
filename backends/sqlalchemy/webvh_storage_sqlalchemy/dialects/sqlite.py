"""SQLite through the standard library's sqlite3: a database file, or `:memory:`.

Why the pragmas and the BEGIN handling:
- WAL lets readers run while one writer writes; busy_timeout makes a second writer wait
  instead of failing; synchronous=FULL makes every commit durable (NORMAL is faster and
  only risks the last commits on power loss: option `sqlite_synchronous` or
  STORAGE_SQLITE_SYNCHRONOUS). The WAL is copied back into the database every
  `sqlite_wal_autocheckpoint` pages (STORAGE_SQLITE_WAL_AUTOCHECKPOINT, SQLite's 1000 by
  default); bulk loads raise it to sync less often.
- sqlite3's own transaction handling is switched off (isolation_level=None) and we emit
  BEGIN ourselves: write transactions use BEGIN IMMEDIATE, which takes the write lock up
  front, so concurrent writers queue on busy_timeout instead of failing with "database
  is locked" when a deferred transaction tries to upgrade. Reads and single-statement
  writes run without BEGIN (a lone INSERT takes the write lock when it starts).
- New database files are created 0600 (owner only): they hold DID documents and tasks.
- `:memory:` is one connection shared by every thread (StaticPool), used under a lock.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Engine,
    Table,
    create_engine,
    event,
    type_coerce,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import NullType

from storage_core.codec import loads
from storage_core.config import Settings
from storage_core.errors import StorageError, ValidationError
from storage_core.interface import Capability
from storage_core.kinds import FieldType, KindSpec
from webvh_storage_sqlalchemy.dialects.base import Dialect, DriverConnection
from webvh_storage_sqlalchemy.options import (
    DEFAULT_BUSY_TIMEOUT_MS,
    DEFAULT_WAL_AUTOCHECKPOINT,
    SYNCHRONOUS_LEVELS,
)
from webvh_storage_sqlalchemy.rows import (
    Converter,
    RowToRecord,
    is_datetime,
    is_json,
    load_json,
)

if TYPE_CHECKING:  # these modules import this one
    from sqlalchemy.engine import URL

    from webvh_storage_sqlalchemy.connections import Connections
    from webvh_storage_sqlalchemy.statements import KindStatements

#: Execution option of our write engine; the "begin" hook reads it.
BEGIN_OPTION = "storage_sqlite_begin"
#: Execution option of Connections that run without a transaction: no BEGIN at all.
AUTOCOMMIT_OPTION = "storage_sqlite_autocommit"


class SQLiteConnection:
    """sqlite3's Connection.execute: no cursor object of our own to make and close."""

    __slots__ = ("_conn",)

    def __init__(self, dbapi_connection: Any) -> None:
        self._conn = dbapi_connection

    def execute(self, sql: str, params: Sequence[Any]) -> None:
        self._conn.execute(sql, params)

    def fetch_one(self, sql: str, params: Sequence[Any]) -> Sequence[Any] | None:
        row: Sequence[Any] | None = self._conn.execute(sql, params).fetchone()
        return row

    def fetch_all(self, sql: str, params: Sequence[Any]) -> Sequence[Sequence[Any]]:
        rows: Sequence[Sequence[Any]] = self._conn.execute(sql, params).fetchall()
        return rows

    def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)  # the loop runs in C


def _from_sqlite(name: str, ftype: FieldType | None) -> Converter | None:
    if is_json(ftype):
        # only a "JSON value" column may hold NULL; the others decode straight in C
        return load_json if ftype is FieldType.JSON else loads
    if ftype is FieldType.BOOL:
        return bool
    if is_datetime(name, ftype):
        return _from_sqlite_datetime
    return None


def _from_sqlite_datetime(value: str | None) -> datetime | None:
    # SQLAlchemy stores "YYYY-MM-DD HH:MM:SS.ffffff" (naive UTC, see columns.UTCDateTime).
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


#: The last timestamp converted and its text: a record's created_at is often its
#: updated_at, and a bulk upsert stamps every record with the same `now`.
_last_datetime: tuple[datetime | None, str | None] = (None, None)


def _to_sqlite_datetime(value: datetime | None) -> str | None:
    # Exactly what SQLAlchemy's SQLite DATETIME writes for UTCDateTime (naive UTC).
    global _last_datetime
    if value is None:
        return None
    last = _last_datetime  # one read: another thread may replace it, never half of it
    if value is last[0]:
        return last[1]
    text = value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", timespec="microseconds")
    _last_datetime = (value, text)
    return text


class SQLiteDialect(Dialect):
    """A SQLite database file."""

    name = "sqlite"
    driver = "pysqlite"
    read_column = staticmethod(_from_sqlite)
    timestamp_param = staticmethod(_to_sqlite_datetime)
    placeholder = "?"
    no_limit = -1  # a negative LIMIT: no limit
    begin_sql = "BEGIN IMMEDIATE"
    lacks = frozenset({Capability.SERVER_SIDE_CURSORS})
    journal_mode: str | None = "WAL"

    def __init__(self, url: URL, settings: Settings) -> None:
        super().__init__(url, settings)
        synchronous = str(settings.option("sqlite_synchronous", default="FULL")).upper()
        if synchronous not in SYNCHRONOUS_LEVELS:
            raise ValidationError(
                "sqlite_synchronous", f"must be one of {', '.join(SYNCHRONOUS_LEVELS)}"
            )
        self.busy_timeout_ms = int(
            settings.option("sqlite_busy_timeout_ms", default=DEFAULT_BUSY_TIMEOUT_MS)
        )
        autocheckpoint = _pages(
            settings.option("sqlite_wal_autocheckpoint", default=DEFAULT_WAL_AUTOCHECKPOINT)
        )
        self.pragmas: dict[str, object] = {  # validated values, never caller text
            "busy_timeout": self.busy_timeout_ms,
            "synchronous": synchronous,
            "foreign_keys": "ON",
            "wal_autocheckpoint": autocheckpoint,
        }
        self.compiler = sqlite.dialect()

    # --- the engine --------------------------------------------------------------------
    def create_engine(self) -> Engine:
        _create_private_file(_database_path(self.url))
        engine = create_engine(
            self.url,
            connect_args={"check_same_thread": False, "timeout": self.busy_timeout_ms / 1000},
            **self.pool_args(),
            **self.engine_args(),
        )
        self._install_hooks(engine)
        return engine

    def _install_hooks(self, engine: Engine) -> None:
        journal_mode, pragmas = self.journal_mode, self.pragmas

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (module doc)
            cursor = dbapi_connection.cursor()
            try:
                if journal_mode:
                    cursor.execute(f"PRAGMA journal_mode={journal_mode}")
                for name, value in pragmas.items():
                    cursor.execute(f"PRAGMA {name}={value}")
            finally:
                cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Connection) -> None:
            options = connection.get_execution_options()
            if not options.get(AUTOCOMMIT_OPTION):
                connection.exec_driver_sql(f"BEGIN {options.get(BEGIN_OPTION, '')}".strip())

    def without_transaction(self, conn: Connection) -> AbstractContextManager[None]:
        conn.execution_options(**{AUTOCOMMIT_OPTION: True})  # read by the "begin" hook
        return nullcontext()

    def writes(self, engine: Engine) -> Engine:
        return engine.execution_options(**{BEGIN_OPTION: "IMMEDIATE"})

    def insert(self, table: Table) -> sqlite.Insert:
        return sqlite.insert(table)

    # --- driver-level fast paths ---------------------------------------------------------
    def lend(self, dbapi_connection: Any) -> DriverConnection:
        return SQLiteConnection(dbapi_connection)

    def read_one(
        self, dbapi_connection: Any, sql: str, params: Sequence[Any]
    ) -> Sequence[Any] | None:
        row: Sequence[Any] | None = dbapi_connection.execute(sql, params).fetchone()
        return row

    def reusable(self, dbapi_connection: Any) -> bool:
        return not dbapi_connection.in_transaction  # e.g. a ROLLBACK that failed

    def bulk_upsert(
        self, conn: DriverConnection, statements: KindStatements, records: Sequence[Any]
    ) -> None:
        conn.execute_many(statements.bulk_upsert_sql, map(statements.to_params, records))

    # --- streams -----------------------------------------------------------------------
    def stream_columns(
        self, spec: KindSpec[Any], columns: Sequence[Column[Any]]
    ) -> list[ColumnElement[Any]]:
        # untyped: a page is fetched as the driver's raw values and each row converted only
        # when it is yielded (decoding 500 JSON logs up front costs ~3x: allocation, GC)
        return [type_coerce(c, NullType()).label(c.name) for c in columns]

    def stream_converter(self, spec: KindSpec[Any], fields: Sequence[str]) -> RowToRecord:
        return self.row_converter(spec, fields)

    # --- maintenance -------------------------------------------------------------------
    def flush(self, connections: Connections) -> None:
        """Copy the write-ahead log into the database file, synced to disk (after a bulk
        load with synchronous=NORMAL)."""
        with connections.connection() as conn:
            row = conn.fetch_one("PRAGMA wal_checkpoint(FULL)", ())
        if row is None or row[0]:
            raise StorageError("could not checkpoint the SQLite database: another process holds it")


class SQLiteMemoryDialect(SQLiteDialect):
    """`sqlite:///:memory:`: one connection every thread shares, used under a lock. No
    transactions across calls: every caller would see (and join) a block's writes."""

    lacks = frozenset(
        {Capability.SERVER_SIDE_CURSORS, Capability.PERSISTENT, Capability.TRANSACTIONS}
    )
    journal_mode = None

    def __init__(self, url: URL, settings: Settings) -> None:
        super().__init__(url, settings)
        self.lock = threading.RLock()

    def create_engine(self) -> Engine:
        engine = create_engine(
            self.url,
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
            **self.engine_args(),
        )
        self._install_hooks(engine)
        return engine

    def flush(self, connections: Connections) -> None:
        """Nothing outlives the process."""


def is_memory(url: URL) -> bool:
    database = url.database or ""
    return database in ("", ":memory:") or "mode=memory" in str(url.query.get("mode", ""))


def _database_path(url: URL) -> str:
    """The file SQLite will create for `url`, or "" when it creates none: a plain path,
    or the path of a `file:` URI (`?uri=true`) whose mode lets SQLite create it (rwc,
    the default); not `mode=ro`/`rw` (the file must exist) nor `mode=memory`."""
    database = url.database or ""
    if not database.startswith("file:"):
        return database
    mode = str(url.query.get("mode", "rwc"))
    if mode != "rwc":
        return ""
    path = database[len("file:") :].partition("?")[0].partition("#")[0]
    if path.startswith("//"):  # file://localhost/abs/path or file:///abs/path
        path = "/" + path[2:].partition("/")[2]
    return unquote(path)


def _create_private_file(path: str) -> None:
    """Create the database file readable by its owner only, before SQLite opens it
    (SQLite gives the -wal and -shm files the database file's mode)."""
    if not path or path == ":memory:" or os.path.exists(path):
        return
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError:
        return  # SQLite reports the problem ("unable to open database file") on connect
    os.close(fd)
    os.chmod(path, 0o600)  # O_CREAT's mode is filtered by the umask; be explicit.


def _pages(raw: object) -> int:
    try:
        pages = int(str(raw))
    except ValueError:
        pages = -1
    if pages < 0:
        raise ValidationError("sqlite_wal_autocheckpoint", "must be a whole number of pages >= 0")
    return pages
