"""The async face's drivers, one class per database: asyncpg for PostgreSQL, aiosqlite
for SQLite (file and `:memory:`). Why these two: benchmarks/README.md, "Async drivers".

Each class maps the URL the sync face accepts to its async driver (the same
DATABASE_URL opens both faces), builds the one `AsyncEngine` with the sync dialect's
options (pool, timeouts, echo, SQLite pragmas and BEGIN handling: the sync dialect's own
hooks, installed on `AsyncEngine.sync_engine`), and runs driver SQL on a raw driver
connection for the fast paths. The SQL itself is the sync dialect's (statements.py):
asyncpg only wants `$1, $2, ...` where psycopg2 wants `%s`, which `sql()` rewrites.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, ClassVar

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from webvh_storage_sqlalchemy.dialects import Dialect
from webvh_storage_sqlalchemy.dialects.postgresql import PostgreSQLDialect, _multi_row
from webvh_storage_sqlalchemy.dialects.sqlite import (
    SQLiteDialect,
    SQLiteMemoryDialect,
    _create_private_file,
    _database_path,
)
from webvh_storage_sqlalchemy.rows import BULK_CHUNK_ROWS, chunks

#: A bulk write's statement: SQL, its parameters, and whether they are many rows
#: (executemany) or one statement's.
BulkStatement = tuple[str, Sequence[Any], bool]
#: Distinct driver SQL strings whose rewritten form is kept.
_SQL_KEPT = 1024


class AsyncDriver(ABC):
    """What one async driver does on a raw connection (`driver_connection`)."""

    #: SQLAlchemy's name of the async driver for this dialect.
    driver: ClassVar[str]
    #: Opens a write transaction on a raw connection.
    begin_sql: ClassVar[str] = "BEGIN"

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.url: URL = dialect.url.set(drivername=f"{dialect.name}+{self.driver}")

    @abstractmethod
    def create_engine(self) -> AsyncEngine:
        """The async face's one engine: one pool of at most pool_size + max_overflow."""

    def sql(self, sql: str) -> str:
        """The sync dialect's driver SQL in this driver's parameter style."""
        return sql

    @abstractmethod
    async def execute(self, conn: Any, sql: str, params: Sequence[Any]) -> None: ...

    @abstractmethod
    async def fetch_one(self, conn: Any, sql: str, params: Sequence[Any]) -> Sequence[Any] | None:
        """The first row (get by key, count): one round trip."""

    @abstractmethod
    async def fetch_all(
        self, conn: Any, sql: str, params: Sequence[Any]
    ) -> Sequence[Sequence[Any]]: ...

    @abstractmethod
    async def execute_many(self, conn: Any, sql: str, rows: list[Sequence[Any]]) -> None: ...

    @abstractmethod
    def rows(
        self, conn: Any, sql: str, params: Sequence[Any], batch_size: int
    ) -> AsyncIterator[Sequence[Sequence[Any]]]:
        """The rows of a read, batch_size at a time, from one open cursor; closing the
        iterator closes the cursor."""

    def bulk_statements(self, sql: str, rows: list[list[Any]]) -> Iterator[BulkStatement]:
        """The statements that write `rows` with the kind's bulk upsert `sql` (both in
        the sync dialect's style): by default one executemany."""
        yield sql, rows, True

    @abstractmethod
    def lost(self, conn: Any) -> bool:
        """True when the raw connection is unusable (the server or the driver closed it)."""

    @abstractmethod
    def reusable(self, conn: Any) -> bool:
        """The raw connection may go back to the pool: open, no transaction left open."""

    #: Connections keep prepared statements that a schema change invalidates (asyncpg):
    #: provisioning closes the pooled ones.
    caches_plans: ClassVar[bool] = False
    #: flush(): the statement whose first column is 0 once the data is durable, or None
    flush_sql: ClassVar[str | None] = None


class AsyncpgDriver(AsyncDriver):
    """asyncpg. JSON columns are decoded by the codec SQLAlchemy's asyncpg dialect sets
    up on each connection (with the engine's orjson loads), as psycopg2 decodes them,
    so the sync dialect's row and parameter converters serve unchanged."""

    driver = "asyncpg"
    caches_plans = True

    def __init__(self, dialect: Dialect) -> None:
        super().__init__(dialect)
        self._sql: dict[str, str] = {}
        # libpq's (psycopg2's) URL parameter, under asyncpg's name: same values
        query = dict(self.url.query)
        if "sslmode" in query:
            query["ssl"] = query.pop("sslmode")
            self.url = self.url.set(query=query)

    def create_engine(self) -> AsyncEngine:
        settings = self.dialect.settings
        timeout = max(1, round(settings.option("connect_timeout")))
        connect_args: dict[str, Any] = {"timeout": timeout}
        url = self.url
        if not settings.option("prepared_statements"):
            # A transaction-pooling PgBouncer hands each transaction any server
            # connection, where a named statement prepared on another does not exist:
            # asyncpg's and SQLAlchemy's statement caches off, unnamed statements only.
            connect_args["statement_cache_size"] = 0
            url = url.update_query_dict({"prepared_statement_cache_size": "0"})
        return create_async_engine(
            url,
            connect_args=connect_args,
            **self.dialect.pool_args(),
            **self.dialect.engine_args(),
        )

    def sql(self, sql: str) -> str:
        found = self._sql.get(sql)
        if found is None:
            found = dollar_params(sql)
            if len(self._sql) < _SQL_KEPT:
                self._sql[sql] = found
        return found

    async def execute(self, conn: Any, sql: str, params: Sequence[Any]) -> None:
        await conn.execute(self.sql(sql), *params)

    async def fetch_one(self, conn: Any, sql: str, params: Sequence[Any]) -> Sequence[Any] | None:
        row: Sequence[Any] | None = await conn.fetchrow(self.sql(sql), *params)
        return row

    async def fetch_all(
        self, conn: Any, sql: str, params: Sequence[Any]
    ) -> Sequence[Sequence[Any]]:
        rows: Sequence[Sequence[Any]] = await conn.fetch(self.sql(sql), *params)
        return rows

    async def execute_many(self, conn: Any, sql: str, rows: list[Sequence[Any]]) -> None:
        await conn.executemany(self.sql(sql), rows)

    async def rows(
        self, conn: Any, sql: str, params: Sequence[Any], batch_size: int
    ) -> AsyncIterator[Sequence[Sequence[Any]]]:
        """A server-side cursor (asyncpg's, in a transaction), batch_size rows a fetch."""
        async with conn.transaction():
            cursor = await conn.cursor(self.sql(sql), *params)
            while True:
                batch = await cursor.fetch(batch_size)
                if batch:
                    yield batch
                if len(batch) < batch_size:
                    return

    def bulk_statements(self, sql: str, rows: list[list[Any]]) -> Iterator[BulkStatement]:
        """Many rows per INSERT ... VALUES (...), (...) statement, as the sync face writes
        them: one round trip per chunk."""
        for chunk in chunks(rows, BULK_CHUNK_ROWS):
            yield _multi_row(sql, len(chunk)), [v for row in chunk for v in row], False

    def lost(self, conn: Any) -> bool:
        return bool(conn.is_closed())

    def reusable(self, conn: Any) -> bool:
        return not conn.is_closed() and not conn.is_in_transaction()


class AiosqliteDriver(AsyncDriver):
    """aiosqlite: sqlite3 on a thread of its own per connection, so the sync dialect's
    values, converters, pragmas and BEGIN hooks all apply as they are."""

    driver = "aiosqlite"
    begin_sql = SQLiteDialect.begin_sql  # BEGIN IMMEDIATE: writers queue on busy_timeout
    flush_sql = "PRAGMA wal_checkpoint(FULL)"

    def create_engine(self) -> AsyncEngine:
        dialect = self.dialect
        assert isinstance(dialect, SQLiteDialect)
        if isinstance(dialect, SQLiteMemoryDialect):
            engine = create_async_engine(self.url, poolclass=StaticPool, **dialect.engine_args())
        else:
            _create_private_file(_database_path(self.url))
            engine = create_async_engine(
                self.url,
                connect_args={"timeout": dialect.busy_timeout_ms / 1000},
                **dialect.pool_args(),
                **dialect.engine_args(),
            )
        dialect._install_hooks(engine.sync_engine)
        return engine

    async def execute(self, conn: Any, sql: str, params: Sequence[Any]) -> None:
        await conn.execute_fetchall(sql, params)  # one hop to its thread, cursor closed there

    async def fetch_one(self, conn: Any, sql: str, params: Sequence[Any]) -> Sequence[Any] | None:
        rows = await conn.execute_fetchall(sql, params)
        return rows[0] if rows else None

    async def fetch_all(
        self, conn: Any, sql: str, params: Sequence[Any]
    ) -> Sequence[Sequence[Any]]:
        rows: Sequence[Sequence[Any]] = await conn.execute_fetchall(sql, params)
        return rows

    async def execute_many(self, conn: Any, sql: str, rows: list[Sequence[Any]]) -> None:
        await conn.executemany(sql, rows)

    async def rows(
        self, conn: Any, sql: str, params: Sequence[Any], batch_size: int
    ) -> AsyncIterator[Sequence[Sequence[Any]]]:
        async with conn.execute(sql, params) as cursor:
            while True:
                batch = await cursor.fetchmany(batch_size)
                if batch:
                    yield batch
                if len(batch) < batch_size:
                    return

    def lost(self, conn: Any) -> bool:
        return conn._connection is None  # aiosqlite's own sign of a closed connection

    def reusable(self, conn: Any) -> bool:
        return not self.lost(conn) and not conn.in_transaction  # e.g. a failed ROLLBACK


def driver_for(dialect: Dialect) -> AsyncDriver:
    """The async driver of the sync face's dialect."""
    if isinstance(dialect, PostgreSQLDialect):
        return AsyncpgDriver(dialect)
    return AiosqliteDriver(dialect)


_FORMAT_PARAM = re.compile(r"%(%|s)")


def dollar_params(sql: str) -> str:
    """psycopg2's `format` style (`%s`, literal `%%`) -> asyncpg's `$1, $2, ...`."""
    counter = 0

    def number(match: re.Match[str]) -> str:
        nonlocal counter
        if match.group(1) == "%":
            return "%"
        counter += 1
        return f"${counter}"

    return _FORMAT_PARAM.sub(number, sql)
