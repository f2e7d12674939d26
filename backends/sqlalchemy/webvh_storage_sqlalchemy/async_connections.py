"""`AsyncConnections`: every way the async face uses a connection, all from its
`AsyncEngine`'s one pool (pool_size + max_overflow is the ceiling, whatever the number
of tasks: the rest wait pool_timeout, then get BackendUnavailableError).

The fast paths follow connections.py (the sync face): they take a pool entry and run
driver SQL on its raw driver connection (asyncpg / aiosqlite), skipping SQLAlchemy's
Connection, proxy and reset layers; entries are kept checked out between calls (LIFO)
while no one waits in the pool's queue. Fast calls beyond the pool's capacity queue on
an asyncio.Semaphore of that size (the gate), not in the pool: a wait there is one
future, where the pool's is a greenlet_spawn and a queue wait (200 tasks on 30
connections took 1.5 event-loop turns and 1.7 greenlet_spawns a read, 0.5 of raw
aiosqlite's rate; raw, 0.15 turns). While anyone listens to the engine (event
listeners on `AsyncEngine.sync_engine`, echo=True) every statement goes through a
SQLAlchemy `AsyncConnection` instead, so they all stay visible. Inside a
`bound_transaction()` block every use by the calling task is the block's one
`AsyncConnection`, in its transaction (as `BoundConnection` on the sync face).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import (
    AbstractAsyncContextManager,
    aclosing,
    asynccontextmanager,
    nullcontext,
    suppress,
)
from typing import Any, Protocol, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncResult
from sqlalchemy.pool import QueuePool
from sqlalchemy.util import greenlet_spawn

from storage_core.errors import BackendUnavailableError
from webvh_storage_sqlalchemy.async_drivers import AsyncDriver
from webvh_storage_sqlalchemy.connections import ConnectionLost, observed
from webvh_storage_sqlalchemy.dialects import Dialect
from webvh_storage_sqlalchemy.dialects.sqlite import SQLiteDialect, SQLiteMemoryDialect

T = TypeVar("T")
log = logging.getLogger(__name__)
Rows = Sequence[Sequence[Any]]


class AsyncDriverConnection(Protocol):
    """A connection lent to the async face: driver SQL in the sync dialect's style.
    Each statement commits on its own, except inside `AsyncConnections.transaction()`."""

    async def execute(self, sql: str, params: Sequence[Any]) -> None: ...

    async def fetch_one(self, sql: str, params: Sequence[Any]) -> Sequence[Any] | None: ...

    async def fetch_all(self, sql: str, params: Sequence[Any]) -> Rows: ...

    async def bulk_upsert(self, sql: str, rows: list[list[Any]]) -> None: ...

    def rows(self, sql: str, params: Sequence[Any], batch_size: int) -> AsyncIterator[Rows]: ...


class RawConnection:
    """Statements straight on the driver's connection (the fast paths)."""

    __slots__ = ("_conn", "_driver")

    def __init__(self, driver: AsyncDriver, conn: Any) -> None:
        self._driver = driver
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any]) -> None:
        await self._driver.execute(self._conn, sql, params)

    async def fetch_one(self, sql: str, params: Sequence[Any]) -> Sequence[Any] | None:
        return await self._driver.fetch_one(self._conn, sql, params)

    async def fetch_all(self, sql: str, params: Sequence[Any]) -> Rows:
        return await self._driver.fetch_all(self._conn, sql, params)

    async def bulk_upsert(self, sql: str, rows: list[list[Any]]) -> None:
        driver, conn = self._driver, self._conn
        for statement, params, many in driver.bulk_statements(sql, rows):
            if many:
                await driver.execute_many(conn, statement, list(params))
            else:
                await driver.execute(conn, statement, params)

    def rows(self, sql: str, params: Sequence[Any], batch_size: int) -> AsyncIterator[Rows]:
        return self._driver.rows(self._conn, sql, params, batch_size)


class ObservedAsyncConnection:
    """The same statements through SQLAlchemy's AsyncConnection (inside its transaction):
    visible to the engine's event listeners and its echo log."""

    __slots__ = ("_conn", "_driver")

    def __init__(self, driver: AsyncDriver, conn: AsyncConnection) -> None:
        self._driver = driver
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any]) -> None:
        await self._conn.exec_driver_sql(self._driver.sql(sql), tuple(params))

    async def fetch_one(self, sql: str, params: Sequence[Any]) -> Sequence[Any] | None:
        return (await self._conn.exec_driver_sql(self._driver.sql(sql), tuple(params))).first()

    async def fetch_all(self, sql: str, params: Sequence[Any]) -> Rows:
        return (await self._conn.exec_driver_sql(self._driver.sql(sql), tuple(params))).all()

    async def bulk_upsert(self, sql: str, rows: list[list[Any]]) -> None:
        for statement, params, many in self._driver.bulk_statements(sql, rows):
            given: Any = [tuple(row) for row in params] if many else tuple(params)
            await self._conn.exec_driver_sql(self._driver.sql(statement), given)

    async def rows(self, sql: str, params: Sequence[Any], batch_size: int) -> AsyncIterator[Rows]:
        """A server-side cursor where the driver has one (SQLAlchemy's stream_results)."""
        statement, values = self._driver.sql(sql), tuple(params)
        result = AsyncResult(
            await self._conn.run_sync(
                lambda conn: conn.exec_driver_sql(
                    statement, values, execution_options={"stream_results": True}
                )
            )
        )
        try:
            while batch := await result.fetchmany(batch_size):
                yield batch
        finally:
            await result.close()


class AsyncBoundConnection:
    """The one AsyncConnection of a `bound_transaction()` block. Tasks started inside
    the block inherit it with their context: a lock keeps them from using it at once."""

    __slots__ = ("conn", "driver", "lock")

    def __init__(self, conn: AsyncConnection, driver: AsyncDriver) -> None:
        self.conn = conn
        self.driver = driver
        self.lock = asyncio.Lock()

    @asynccontextmanager
    async def driver_connection(self) -> AsyncIterator[AsyncDriverConnection]:
        async with self.lock:
            yield ObservedAsyncConnection(self.driver, self.conn)

    @asynccontextmanager
    async def sql(self) -> AsyncIterator[AsyncConnection]:
        async with self.lock:
            yield self.conn


class AsyncConnections:
    """The async face's pool and the ways its calls borrow from it."""

    def __init__(self, dialect: Dialect, driver: AsyncDriver) -> None:
        self.dialect = dialect
        self.driver = driver
        self.engine: AsyncEngine = driver.create_engine()
        #: For SQLAlchemy write transactions (SQLite: BEGIN IMMEDIATE).
        self.writes: AsyncEngine = self.engine.execution_options(
            **dialect.writes(self.engine.sync_engine).get_execution_options()
        )
        #: `:memory:` is one connection every task shares: its uses take turns.
        self.lock: AbstractAsyncContextManager[Any] = (
            asyncio.Lock() if isinstance(dialect, SQLiteMemoryDialect) else nullcontext()
        )
        self.closed = False
        self._idle: list[Any] = []  # pool entries (_ConnectionRecord) kept for fast calls
        pool = self.engine.sync_engine.pool
        self._pool = pool
        if isinstance(pool, QueuePool):
            self._capacity = pool.size() + pool._max_overflow
            self._max_idle = max(0, min(pool.size(), self._capacity - 1))
        else:  # :memory: (StaticPool): nothing to keep
            self._capacity = self._max_idle = 0
        #: Fast calls holding (or taking) an entry: at most the pool's capacity, so the
        #: rest wait here, not in the pool's queue (see the module docstring).
        self._gate = asyncio.Semaphore(max(1, self._capacity))
        self._gate_timeout: float = getattr(pool, "_timeout", 30.0)
        #: Fast calls waiting at the gate right now.
        self._gate_waiting = 0
        #: The calling task's open `bound_transaction()`, if any.
        self._bound: contextvars.ContextVar[AsyncBoundConnection | None] = contextvars.ContextVar(
            "webvh_storage_async_sql_transaction", default=None
        )

    @asynccontextmanager
    async def bound_transaction(self) -> AsyncIterator[None]:
        """One write transaction for every call of the calling task inside the block:
        committed when it ends, rolled back when it raises; a block inside one joins
        it. Not on :memory: (the dialect lacks Capability.TRANSACTIONS)."""
        if self._bound.get() is not None:
            yield
            return
        self.check_open()
        await self.release_idle()
        async with self.writes.connect() as conn, conn.begin():  # commit, or roll back
            token = self._bound.set(AsyncBoundConnection(conn, self.driver))
            try:
                yield
            finally:
                self._bound.reset(token)

    def check_open(self) -> None:
        if self.closed:
            raise BackendUnavailableError("the sqlalchemy backend is closed")

    def observed(self) -> bool:
        """True while every statement must go through SQLAlchemy to be seen."""
        return observed(self.engine.sync_engine)

    def saturated(self) -> bool:
        """Every connection the pool may open is in use (none kept idle): a checkout
        now would wait (as `Connections.saturated`)."""
        if not isinstance(self._pool, QueuePool):
            return False
        return self._pool.checkedout() - len(self._idle) >= self._capacity

    @property
    def idle_count(self) -> int:
        """Pool entries the fast paths hold idle right now (checked out, not in use)."""
        return len(self._idle)

    async def close(self) -> None:
        """Close every pooled connection and refuse any further use."""
        self.closed = True
        await self.release_idle()
        await self.engine.dispose()

    async def close_idle(self) -> None:
        """Close every connection not in use (the pool opens new ones when needed), in
        the same pool: `AsyncEngine.dispose()` would replace the pool this object uses."""
        await self.release_idle()
        await greenlet_spawn(self._pool.dispose)

    async def release_idle(self) -> None:
        """Hand every entry the fast paths keep back to the pool (before a checkout
        through SQLAlchemy, which would otherwise wait for them)."""
        while self._idle:
            entry = self._idle.pop()
            await greenlet_spawn(entry.checkin, _fairy_was_created=False)

    # --- pool entries lent to the fast paths ---------------------------------------------
    async def _checkout(self) -> Any:
        """An entry: the last one kept idle, else the pool's (it may connect, or wait
        up to pool_timeout and raise TimeoutError), its connection open."""
        try:
            return self._idle.pop()
        except IndexError:
            return await greenlet_spawn(self._from_pool)

    def _pool_waited_on(self) -> bool:
        """A task waits in the pool's own queue (a SQLAlchemy path, or a fast call let
        in while those held connections): the entry must go there, or it would wait
        for as long as fast calls keep coming. (The rule before, keep one only while the
        pool had a free slot, sent every call through the pool once all were in use:
        two greenlet_spawns a call, 30 tasks on 30 connections.) Read from SQLAlchemy's
        AsyncAdaptedQueue, an asyncio.Queue; without it, that rule."""
        try:
            return bool(self._pool._pool._queue._getters)  # type: ignore[attr-defined]
        except AttributeError:
            return bool(self._pool.checkedout() >= self._capacity - 1)  # type: ignore[attr-defined]

    async def _enter_gate(self) -> None:
        """A place among the fast calls that hold entries; within pool_timeout, as the
        pool's own wait, else SQLAlchemy's TimeoutError (BackendUnavailableError)."""
        gate = self._gate
        if not gate.locked():
            await gate.acquire()  # returns at once
            return
        self._gate_waiting += 1
        try:
            async with asyncio.timeout(self._gate_timeout):
                await gate.acquire()
        except TimeoutError:
            raise sa_exc.TimeoutError(
                f"no connection free within {self._gate_timeout:g} s: all "
                f"{self._capacity} (pool_size + max_overflow) in use"
            ) from None
        finally:
            self._gate_waiting -= 1

    def _from_pool(self) -> Any:
        entry: Any = self._pool._do_get()
        try:
            entry.get_connection()  # reconnects an entry the pool had invalidated
        except BaseException:
            entry.checkin(_fairy_was_created=False)
            raise
        return entry

    async def _give_back(self, entry: Any) -> None:
        """Keep an entry for the next fast call (the gate's next one) unless a task
        waits in the pool's queue, else check it in; throw it away when unusable.
        Beyond max_idle (pool_size) only for a call waiting at the gate: an overflow
        connection stays open while calls queue for it, and is closed once none do
        (checked in, it was closed at once, then opened again by the next call)."""
        try:
            reusable = self.driver.reusable(entry.driver_connection)
        except Exception:
            reusable = False
        if not reusable:
            await self._discard(entry, None)
            return
        if (
            (len(self._idle) < self._max_idle or self._gate_waiting > len(self._idle))
            and not self.closed
            and not self._pool_waited_on()
        ):
            self._idle.append(entry)
        else:
            await greenlet_spawn(entry.checkin, _fairy_was_created=False)

    async def _after_error(self, entry: Any, exc: BaseException) -> None:
        """Return an entry whose statement raised `exc`; raises ConnectionLost when the
        connection is gone (a read may then run once more)."""
        if isinstance(exc, GeneratorExit):  # a stream closed early: its cursor is closed
            await self._give_back(entry)
            return
        if not isinstance(exc, Exception):  # cancelled mid-statement: state unknown
            await asyncio.shield(self._discard(entry, None))
            return
        try:
            lost = self.driver.lost(entry.driver_connection)
        except Exception:
            lost = True
        if lost or isinstance(exc, OSError | ConnectionError):
            await self._discard(entry, exc)
            raise ConnectionLost(exc) from exc
        await self._give_back(entry)

    async def _discard(self, entry: Any, exc: Exception | None) -> None:
        """Close the entry's connection (the pool opens a new one when next needed) and
        return it; `:memory:`'s one connection is the database: it is kept unless lost."""
        if self._capacity == 0 and not self.driver.lost(entry.driver_connection):
            with suppress(Exception):
                await self.driver.execute(entry.driver_connection, "ROLLBACK", ())
            return

        def invalidate() -> None:
            try:
                entry.invalidate(exc)
            finally:
                entry.checkin(_fairy_was_created=False)

        await greenlet_spawn(invalidate)

    # --- leases ---------------------------------------------------------------------------
    @asynccontextmanager
    async def connection(
        self, transaction: bool = False, *, locked: bool = True
    ) -> AsyncIterator[AsyncDriverConnection]:
        """A pooled connection for driver SQL; with `transaction`, inside the dialect's
        BEGIN ... COMMIT (ROLLBACK on error). `locked=False` leaves `:memory:`'s lock to
        the caller (a stream takes it per batch, never while its consumer works)."""
        self.check_open()
        bound = self._bound.get()
        if bound is not None:  # the block's connection, already in its transaction
            async with bound.driver_connection() as conn:
                yield conn
            return
        async with self.lock if locked else nullcontext():
            if self.observed():
                await self.release_idle()
                async with self._observed(transaction) as conn:
                    yield ObservedAsyncConnection(self.driver, conn)
                return
            gated = self._capacity > 0  # :memory: has its lock instead
            if gated:
                await self._enter_gate()
            try:
                entry = await self._checkout()
                raw = entry.driver_connection
                try:
                    if not transaction:
                        yield RawConnection(self.driver, raw)
                    else:
                        await self.driver.execute(raw, self.driver.begin_sql, ())
                        try:
                            yield RawConnection(self.driver, raw)
                        except BaseException:
                            with suppress(Exception):  # the original error matters
                                await self.driver.execute(raw, "ROLLBACK", ())
                            raise
                        await self.driver.execute(raw, "COMMIT", ())
                except BaseException as exc:
                    await self._after_error(entry, exc)
                    raise
                await self._give_back(entry)
            finally:
                if gated:
                    self._gate.release()

    @asynccontextmanager
    async def _observed(self, transaction: bool) -> AsyncIterator[AsyncConnection]:
        """A SQLAlchemy AsyncConnection: in a write transaction, or (SQLite) with each
        statement committed on its own as on the fast paths; committed at the end."""
        if transaction:
            async with self.writes.begin() as conn:
                yield conn
            return
        async with self.engine.connect() as conn:
            if isinstance(self.dialect, SQLiteDialect):  # its BEGIN hook then skips BEGIN
                self.dialect.without_transaction(conn.sync_connection)  # type: ignore[arg-type]
            yield conn
            await conn.commit()

    def transaction(self) -> AbstractAsyncContextManager[AsyncDriverConnection]:
        return self.connection(transaction=True)

    @asynccontextmanager
    async def sql_transaction(self) -> AsyncIterator[AsyncConnection]:
        """A SQLAlchemy AsyncConnection in a write transaction, committed at the end
        (inside a bound transaction: the block's, committed with it)."""
        self.check_open()
        bound = self._bound.get()
        if bound is not None:
            async with bound.sql() as conn:
                yield conn
            return
        async with self.lock:
            await self.release_idle()
            async with self.writes.begin() as conn:
                yield conn

    async def stream_rows(
        self, sql: str, params: Sequence[Any], batch_size: int
    ) -> AsyncIterator[Rows]:
        """The rows of a read, batch_size at a time, from one cursor on one pooled
        connection (PostgreSQL: a server-side cursor) held until the iterator ends or is
        closed. On `:memory:` each batch is fetched under the lock, which is never held
        while the caller works on a batch (it may call the store meanwhile)."""
        bound = self._bound.get()
        if bound is not None:  # the block's connection, taken per batch likewise
            rows = ObservedAsyncConnection(self.driver, bound.conn).rows(sql, params, batch_size)
            async with aclosing(_batches(rows, bound.lock)) as batches:
                async for batch in batches:
                    yield batch
            return
        async with (
            self.connection(locked=False) as conn,
            aclosing(_batches(conn.rows(sql, params, batch_size), self.lock)) as batches,
        ):
            async for batch in batches:
                yield batch

    # --- reads, run once more if the connection was lost ---------------------------------
    async def fetch_one(self, sql: str, params: Sequence[Any]) -> Sequence[Any] | None:
        if self._bound.get() is not None:  # never re-run: lost with its transaction
            async with self.connection() as conn:
                return await conn.fetch_one(sql, params)
        try:
            return await self._fetch_one(sql, params)
        except Exception as exc:
            if not _lost(exc):
                raise
            _log_rerun(exc)
        return await self._fetch_one(sql, params)

    async def _fetch_one(self, sql: str, params: Sequence[Any]) -> Sequence[Any] | None:
        """connection() written out flat for the hottest call, a read by key."""
        if self.closed or self._capacity == 0 or self.observed():
            async with self.connection() as conn:
                return await conn.fetch_one(sql, params)
        await self._enter_gate()
        try:
            try:
                entry = self._idle.pop()
            except IndexError:
                entry = await greenlet_spawn(self._from_pool)
            try:
                row = await self.driver.fetch_one(entry.driver_connection, sql, params)
            except BaseException as exc:
                await self._after_error(entry, exc)
                raise
            await self._give_back(entry)
            return row
        finally:
            self._gate.release()

    async def fetch_all(self, sql: str, params: Sequence[Any]) -> Rows:
        if self._bound.get() is not None:  # never re-run: lost with its transaction
            return await self._fetch_all(sql, params)
        return await _rerun_once_if_lost(self._fetch_all, sql, params)

    async def sql_read(self, read: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """`read(conn)` on a SQLAlchemy AsyncConnection (Core statements: order_by),
        run once more if the connection was lost, except inside a bound transaction."""
        bound = self._bound.get()
        if bound is not None:
            async with bound.sql() as conn:
                return await read(conn)
        return await _rerun_once_if_lost(self._sql_read, read)

    async def _sql_read(self, read: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        self.check_open()
        async with self.lock:
            await self.release_idle()
            async with self._observed(transaction=False) as conn:
                return await read(conn)

    async def _fetch_all(self, sql: str, params: Sequence[Any]) -> Rows:
        async with self.connection() as conn:
            return await conn.fetch_all(sql, params)


async def _batches(
    rows: AsyncIterator[Rows], lock: AbstractAsyncContextManager[Any]
) -> AsyncGenerator[Rows, None]:
    """`rows`' batches, each fetched (and the cursor closed) holding `lock`, which is
    never held while the consumer works on a batch (it may call the store meanwhile)."""
    try:
        while True:
            async with lock:
                try:
                    batch = await anext(rows)
                except StopAsyncIteration:
                    return
            yield batch
    finally:
        async with lock:
            await rows.aclose()  # type: ignore[attr-defined]


def _lost(exc: Exception) -> bool:
    return bool(getattr(exc, "connection_invalidated", False))


def _log_rerun(exc: Exception) -> None:
    log.warning("database connection lost (%s); running the read once more", type(exc).__name__)


async def _rerun_once_if_lost(read: Callable[..., Awaitable[T]], *args: Any) -> T:
    """`await read(*args)`, once more when the first run lost its connection (the sync
    face's rule: a read may be re-run, a write never)."""
    try:
        return await read(*args)
    except Exception as exc:
        if not _lost(exc):
            raise
        _log_rerun(exc)
    return await read(*args)
