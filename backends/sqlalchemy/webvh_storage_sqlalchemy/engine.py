"""Engine and pool per dialect: SQLite file, SQLite :memory:, PostgreSQL, anything else.

SQLite notes (why the pragmas and the BEGIN handling):
- WAL lets readers run while one writer writes; busy_timeout makes a second writer wait
  instead of failing; synchronous=FULL makes every commit durable (NORMAL is faster and
  only risks the last commits on power loss: option `sqlite_synchronous` or
  STORAGE_SQLITE_SYNCHRONOUS). The WAL is copied back into the database every
  `sqlite_wal_autocheckpoint` pages (STORAGE_SQLITE_WAL_AUTOCHECKPOINT, SQLite's 1000 by
  default); bulk loads raise it to sync less often.
- pysqlite's own transaction handling is switched off (isolation_level=None) and we emit
  BEGIN ourselves: our writes use BEGIN IMMEDIATE, which takes the write lock up front, so
  concurrent writers queue on busy_timeout instead of failing with "database is locked"
  when a deferred transaction tries to upgrade. Our reads run without BEGIN (autocommit).
- New database files are created 0600 (owner only): they hold DID documents and tasks.
"""

from __future__ import annotations

import os
import threading
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool, StaticPool

from storage_core.codec import dumps_str, loads
from storage_core.config import Settings
from storage_core.errors import ValidationError

#: Execution option our own write paths set; the SQLite "begin" hook reads it.
SQLITE_BEGIN_OPTION = "storage_sqlite_begin"
#: Execution option for reads that need no transaction on SQLite.
SQLITE_AUTOCOMMIT_OPTION = "storage_sqlite_autocommit"
SQLITE_SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")
DEFAULT_BUSY_TIMEOUT_MS = 30_000
DEFAULT_WAL_AUTOCHECKPOINT = 1000  # pages, SQLite's own default


@dataclass
class EngineBundle:
    """The engine plus the facts the backend needs about it."""

    engine: Engine
    url: URL
    dialect: str
    in_memory: bool = False
    #: Serialises use of the single shared :memory: connection across threads.
    lock: AbstractContextManager[Any] = field(default_factory=nullcontext)
    #: PostgreSQL: a second pool whose connections stay in autocommit, for single-statement
    #: reads (no BEGIN/ROLLBACK round trips, no isolation-level switching per checkout).
    read_engine: Engine | None = None
    #: PostgreSQL: fresh autocommit connections (no pool) for fastread.ReadConnections,
    #: which keeps them itself; a new connection can never be a stale pooled one.
    direct_engine: Engine | None = None


def database_url(settings: Settings) -> URL:
    raw = settings.url or settings.env_sql_url
    url = make_url(raw)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg2")
    return url


def build_engine(settings: Settings) -> EngineBundle:
    url = database_url(settings)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, settings)
    if url.get_backend_name() == "postgresql":
        return _postgresql_engine(url, settings)
    engine = create_engine(
        url,
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout,
        pool_pre_ping=True,
        json_serializer=dumps_str,
        json_deserializer=loads,
    )
    return EngineBundle(engine, url, url.get_backend_name())


def _postgresql_engine(url: URL, settings: Settings) -> EngineBundle:
    def make(pre_ping: bool = True, pooled: bool = True, **extra: Any) -> Engine:
        pool_args: dict[str, Any] = (
            {
                "pool_size": settings.pool_size,
                "max_overflow": settings.max_overflow,
                "pool_timeout": settings.pool_timeout,
                "pool_pre_ping": pre_ping,
            }
            if pooled
            else {"poolclass": NullPool}
        )
        return create_engine(
            url,
            json_serializer=dumps_str,
            json_deserializer=loads,
            connect_args={"connect_timeout": max(1, round(settings.connect_timeout))},
            **pool_args,
            **extra,
        )

    # The read pool skips the pre-ping (a round trip per call, as much as the read): a
    # read on a stale connection fails, SQLAlchemy invalidates the pool, and the backend
    # retries the read once on a fresh connection (SQLAlchemyBackend._read).
    read_engine = make(pre_ping=False, isolation_level="AUTOCOMMIT")
    direct_engine = make(pooled=False, isolation_level="AUTOCOMMIT")
    return EngineBundle(
        make(), url, "postgresql", read_engine=read_engine, direct_engine=direct_engine
    )


def is_memory_sqlite(url: URL) -> bool:
    database = url.database or ""
    return database in ("", ":memory:") or "mode=memory" in str(url.query.get("mode", ""))


def _sqlite_engine(url: URL, settings: Settings) -> EngineBundle:
    synchronous = str(
        settings.option("sqlite_synchronous", "STORAGE_SQLITE_SYNCHRONOUS", "FULL")
    ).upper()
    if synchronous not in SQLITE_SYNCHRONOUS_LEVELS:
        raise ValidationError(
            "sqlite_synchronous", f"must be one of {', '.join(SQLITE_SYNCHRONOUS_LEVELS)}"
        )
    busy_ms = int(
        settings.option(
            "sqlite_busy_timeout_ms", "STORAGE_SQLITE_BUSY_TIMEOUT_MS", DEFAULT_BUSY_TIMEOUT_MS
        )
    )
    autocheckpoint = _pages(
        settings.option(
            "sqlite_wal_autocheckpoint",
            "STORAGE_SQLITE_WAL_AUTOCHECKPOINT",
            DEFAULT_WAL_AUTOCHECKPOINT,
        )
    )
    memory = is_memory_sqlite(url)
    common = {"json_serializer": dumps_str, "json_deserializer": loads}
    if memory:
        engine = create_engine(
            url,
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
            **common,
        )
        lock: AbstractContextManager[Any] = threading.RLock()
    else:
        _create_private_file(url.database or "")
        engine = create_engine(
            url,
            pool_size=settings.pool_size,
            max_overflow=settings.max_overflow,
            pool_timeout=settings.pool_timeout,
            connect_args={"check_same_thread": False, "timeout": busy_ms / 1000},
            **common,
        )
        lock = nullcontext()
    _install_sqlite_hooks(
        engine,
        memory=memory,
        pragmas={
            "busy_timeout": busy_ms,
            "synchronous": synchronous,
            "foreign_keys": "ON",
            "wal_autocheckpoint": autocheckpoint,
        },
    )
    return EngineBundle(engine, url, "sqlite", in_memory=memory, lock=lock)


def _create_private_file(path: str) -> None:
    """Create the database file readable by its owner only, before SQLite opens it."""
    if not path or path.startswith("file:") or os.path.exists(path):
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


def _install_sqlite_hooks(engine: Engine, *, memory: bool, pragmas: dict[str, object]) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see module doc)
        cursor = dbapi_connection.cursor()
        try:
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            for name, value in pragmas.items():  # validated values, never user text
                cursor.execute(f"PRAGMA {name}={value}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        options = connection.get_execution_options()
        if options.get(SQLITE_AUTOCOMMIT_OPTION):
            return
        mode = options.get(SQLITE_BEGIN_OPTION, "")
        connection.exec_driver_sql(f"BEGIN {mode}".strip())
