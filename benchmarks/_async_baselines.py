"""The async face's baselines: raw async drivers awaited directly on the benchmark's loop.

Every driver here offers the same four coroutines as `AsyncOurs` (the AsyncStorageManager):

    get(scid) -> LogEntry | None        page(namespace, offset) -> list[LogEntry] (50)
    create(entry) -> LogEntry           stream(batch) -> int (rows read)

and returns the same thing as the sync baselines (benchmarks/_baselines.py): a `LogEntry`,
JSON decoded with orjson, timestamps as aware UTC datetimes, built by the same row
helpers, so a ratio measures only what our layers add on top of the driver:

- `AiosqliteRaw`: aiosqlite on its own copy of the SQLAlchemy backend's SQLite file, with
  the backend's pragmas (WAL, synchronous=FULL, busy_timeout, autocommit reads, BEGIN
  IMMEDIATE writes) and the sync raw driver's SQL. One connection (aiosqlite's one
  worker thread): reads are one `execute_fetchall` hand-off each.
- `AsyncpgRaw`: asyncpg on its own database, one connection, statements prepared once
  and reused, orjson as the `json` codec; a single-statement call is one round trip
  (autocommit), the stream a server-side cursor in a transaction.
- `AskarAsyncRaw`: aries-askar awaited in this loop on its own copy of the store, the
  sync raw driver's code (`_baselines.AskarRaw`: one long-lived session for reads, a
  session per create, a scan for the stream), opened in the running loop.

Under concurrency (`bench_async.py --concurrency N`: N tasks at once) one connection
cannot serve a call while another is in flight, so the raw side there is each driver's
plain concurrent pattern, as many connections as ours may open (pool_size +
max_overflow), handed out by an asyncio.Queue (`QueuedRaw`): `AiosqlitePoolRaw` (that
many aiosqlite connections), `AsyncpgPoolRaw` (that many asyncpg connections; not an
asyncpg.Pool, whose reset query on each release is a round trip ours does not make);
and `AskarSessionRaw` (a session per get, Askar's own pool behind it).
"""

from __future__ import annotations

import asyncio
from typing import Any

import _baselines as B
import orjson

from storage_core.records import LogEntry


class AsyncOurs:
    """The public async API: AsyncStorageManager coroutines, exactly as a handler awaits them."""

    name = "ours"

    def __init__(self, manager: Any) -> None:
        self.m = manager

    async def get(self, scid: str) -> LogEntry | None:
        return await self.m.get_log_entry(scid)

    async def page(self, namespace: str, offset: int) -> list[LogEntry]:
        return await self.m.get_log_entries({"namespace": namespace}, limit=B.PAGE, offset=offset)

    async def create(self, e: LogEntry) -> LogEntry:
        return await self.m.create_log_entry(
            e.scid, e.did, e.domain, e.namespace, e.identifier, e.logs, e.deactivated
        )

    async def stream(self, batch: int = 500) -> int:
        n = 0
        async for _ in self.m.stream_records("log_entry", batch_size=batch):
            n += 1
        return n

    async def aclose(self) -> None:
        await self.m.aclose()


# --- SQLite: aiosqlite -----------------------------------------------------------------
class AiosqliteRaw:
    name = "raw"

    def __init__(self, db: Any) -> None:
        self.db = db

    @classmethod
    async def open(cls, path: str, synchronous: str = "FULL", busy_ms: int = 30_000) -> Any:
        import aiosqlite

        db = await aiosqlite.connect(path, isolation_level=None)
        for pragma in (
            "journal_mode=WAL",
            f"busy_timeout={busy_ms}",
            f"synchronous={synchronous}",
            "foreign_keys=ON",
        ):
            await db.execute(f"PRAGMA {pragma}")
        return cls(db)

    async def aclose(self) -> None:
        await self.db.close()

    async def get(self, scid: str) -> LogEntry | None:
        rows = await self.db.execute_fetchall(
            f"SELECT {B._COLS} FROM log_entries WHERE scid = ?", (scid,)
        )
        return B._sqlite_row(rows[0]) if rows else None

    async def page(self, namespace: str, offset: int) -> list[LogEntry]:
        rows = await self.db.execute_fetchall(
            f"SELECT {B._COLS} FROM log_entries WHERE namespace = ? ORDER BY seq LIMIT ? OFFSET ?",
            (namespace, B.PAGE, offset),
        )
        return [B._sqlite_row(r) for r in rows]

    async def create(self, e: LogEntry) -> LogEntry:
        ts = B.now()
        text = B._sqlite_ts(ts)
        db = self.db
        await db.execute("BEGIN IMMEDIATE")
        try:
            await db.execute(
                f"INSERT INTO log_entries ({B._COLS}, seq) VALUES "
                f"(?, ?, ?, ?, ?, ?, ?, ?, ?, 1, {B._SQLITE_NEXT_SEQ})",
                (
                    e.scid,
                    e.did,
                    e.domain,
                    e.namespace,
                    e.identifier,
                    orjson.dumps(e.logs).decode(),
                    e.deactivated,
                    text,
                    text,
                ),
            )
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        return _created(e, ts)

    async def stream(self, batch: int = 500) -> int:
        n = 0
        async with self.db.execute(f"SELECT {B._COLS} FROM log_entries ORDER BY seq") as cur:
            while rows := await cur.fetchmany(batch):
                for r in rows:
                    B._sqlite_row(r)
                    n += 1
        return n


# --- PostgreSQL: asyncpg ---------------------------------------------------------------
class AsyncpgRaw:
    name = "raw"

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._get: Any = None
        self._page: Any = None
        self._insert: Any = None
        self._all: Any = None

    @classmethod
    async def open(cls, dsn: str) -> Any:
        import asyncpg

        conn = await asyncpg.connect(dsn)
        await conn.set_type_codec(
            "json",
            schema="pg_catalog",
            encoder=lambda v: orjson.dumps(v).decode(),
            decoder=orjson.loads,
        )
        self = cls(conn)
        self._get = await conn.prepare(f"SELECT {B._COLS} FROM log_entries WHERE scid = $1")
        self._page = await conn.prepare(
            f"SELECT {B._COLS} FROM log_entries WHERE namespace = $1 ORDER BY seq "
            "LIMIT $2 OFFSET $3"
        )
        self._insert = await conn.prepare(
            f"INSERT INTO log_entries ({B._COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1)"
        )
        self._all = await conn.prepare(f"SELECT {B._COLS} FROM log_entries ORDER BY seq")
        return self

    async def aclose(self) -> None:
        await self.conn.close()

    async def get(self, scid: str) -> LogEntry | None:
        row = await self._get.fetchrow(scid)
        return None if row is None else B._pg_row(row)

    async def page(self, namespace: str, offset: int) -> list[LogEntry]:
        rows = await self._page.fetch(namespace, B.PAGE, offset)
        return [B._pg_row(r) for r in rows]

    async def create(self, e: LogEntry) -> LogEntry:
        ts = B.now()
        await self._insert.fetch(
            e.scid, e.did, e.domain, e.namespace, e.identifier, e.logs, e.deactivated, ts, ts
        )
        return _created(e, ts)

    async def stream(self, batch: int = 500) -> int:
        n = 0
        async with self.conn.transaction():  # a server-side cursor needs one
            async for r in self._all.cursor(prefetch=batch):
                B._pg_row(r)
                n += 1
        return n


class QueuedRaw:
    """Gets and pages by concurrent tasks on `size` single-connection raw drivers
    (`single`: `AiosqliteRaw`, `AsyncpgRaw`) handed out by an asyncio.Queue, one per
    call: the least a pool does (no reset, no proxy), the shape of our fast paths' own
    (connections kept checked out, the rest of the tasks waiting on asyncio futures)."""

    name = "raw"
    single: Any = None

    def __init__(self, free: asyncio.Queue[Any], all_: list[Any]) -> None:
        self.free = free
        self.all = all_

    @classmethod
    async def open(cls, target: str, size: int) -> Any:
        connections = [await cls.single.open(target) for _ in range(size)]
        free: asyncio.Queue[Any] = asyncio.Queue()
        for conn in connections:
            free.put_nowait(conn)
        return cls(free, connections)

    async def aclose(self) -> None:
        for conn in self.all:
            await conn.aclose()

    async def get(self, scid: str) -> LogEntry | None:
        conn = await self.free.get()
        try:
            result: LogEntry | None = await conn.get(scid)
            return result
        finally:
            self.free.put_nowait(conn)

    async def page(self, namespace: str, offset: int) -> list[LogEntry]:
        conn = await self.free.get()
        try:
            result: list[LogEntry] = await conn.page(namespace, offset)
            return result
        finally:
            self.free.put_nowait(conn)


class AiosqlitePoolRaw(QueuedRaw):
    """`size` aiosqlite connections (a thread each)."""

    single = AiosqliteRaw


class AsyncpgPoolRaw(QueuedRaw):
    """`size` asyncpg connections (statements prepared on each), not an asyncpg.Pool:
    its release runs a reset query (`SELECT pg_advisory_unlock_all(); CLOSE ALL;
    UNLISTEN *; RESET ALL`), a second round trip per call that ours does not make, and
    its acquire and release cost more Python than ours; both made the raw side slower."""

    single = AsyncpgRaw


# --- Askar: aries-askar ----------------------------------------------------------------
class AskarAsyncRaw(B.AskarRaw):
    """`_baselines.AskarRaw`'s coroutines (the same code as run.py's raw Askar driver),
    awaited directly in the benchmark's loop instead of on a loop of its own."""

    def __init__(self, store: Any) -> None:  # no super().__init__: no loop of its own
        self.store = store
        self._session = None

    @classmethod
    async def open(cls, uri: str) -> Any:
        from aries_askar import Store

        return cls(await Store.open(uri, "none"))

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
        await self.store.close()


class AskarSessionRaw(AskarAsyncRaw):
    """Concurrent gets: a session each (one session serves one call at a time)."""

    async def get(self, scid: str) -> LogEntry | None:
        async with self.store.session() as session:
            entry = await session.fetch(B.CATEGORY, scid)
        return None if entry is None else B._askar_record(entry.raw_value)

    async def page(self, namespace: str, offset: int) -> list[LogEntry]:
        wql = {"namespace": namespace}
        scan = self.store.scan(B.CATEGORY, wql, offset=offset, limit=B.PAGE, order_by="id")
        return [B._askar_record(e.raw_value) async for e in scan]


def _created(e: LogEntry, ts: Any) -> LogEntry:
    return LogEntry(
        scid=e.scid,
        did=e.did,
        domain=e.domain,
        namespace=e.namespace,
        identifier=e.identifier,
        logs=e.logs,
        deactivated=e.deactivated,
        created_at=ts,
        updated_at=ts,
        record_version=1,
    )
