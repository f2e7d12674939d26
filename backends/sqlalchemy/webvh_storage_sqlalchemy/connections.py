"""The store's one engine and its one pool, lent out as driver (DBAPI) connections for the
fast paths and as SQLAlchemy Connections for everything else.

One pool means pool_size + max_overflow is the most connections the store ever opens,
whichever calls run at once, and a caller that gets none within pool_timeout is told so
(BackendUnavailableError, via errors.translate).

Fast paths skip SQLAlchemy's Connection/Result layers (~100 us per call: several times a
SQLite read by key, as much as a PostgreSQL round trip) but not its pool, and not its
observers: while anyone listens for before/after_cursor_execute or to the pool
(OpenTelemetry's SQLAlchemy instrumentation does both) or the engine logs SQL (echo), the
same statements run through `Connection.exec_driver_sql`, so every statement reaches the
listeners and the log. Checking costs about a microsecond.

Inside `bound_transaction()` every use of a connection by the caller (thread, or async
task) that entered it gets the block's one Connection, in its transaction, instead of
a pooled one: a context variable per store carries it, so other threads and tasks are
untouched and never see the block's writes before its commit.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from typing import Any, ParamSpec, TypeVar, cast

from sqlalchemy import Connection, Engine
from sqlalchemy.pool import QueuePool
from sqlalchemy.pool.base import _ConnectionRecord

from storage_core.errors import BackendUnavailableError
from webvh_storage_sqlalchemy.dialects import Dialect, DriverConnection

T = TypeVar("T")
P = ParamSpec("P")
log = logging.getLogger(__name__)


class ConnectionLost(Exception):
    """A statement failed because the server had dropped its connection (restart,
    failover, idle kill). The connection was thrown away; a read may run once more.
    Shaped like SQLAlchemy's DBAPIError so errors.translate reads both alike."""

    connection_invalidated = True

    def __init__(self, orig: Exception) -> None:
        super().__init__(str(orig))
        self.orig = orig


class ObservedConnection:
    """A DriverConnection that runs each statement through SQLAlchemy, visible to the
    engine's event listeners and its echo log."""

    __slots__ = ("_conn",)

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any]) -> None:
        self._conn.exec_driver_sql(sql, tuple(params))

    def fetch_one(self, sql: str, params: Sequence[Any]) -> Sequence[Any] | None:
        return self._conn.exec_driver_sql(sql, tuple(params)).fetchone()

    def fetch_all(self, sql: str, params: Sequence[Any]) -> Sequence[Sequence[Any]]:
        return self._conn.exec_driver_sql(sql, tuple(params)).all()

    def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._conn.exec_driver_sql(sql, [tuple(row) for row in rows])


class BoundConnection:
    """The one Connection of a `bound_transaction()` block. Tasks started inside the
    block inherit it with their context: a lock keeps them from using it at once."""

    __slots__ = ("conn", "lock")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.lock = threading.RLock()

    @contextmanager
    def driver(self) -> Iterator[DriverConnection]:
        """The block's Connection as a DriverConnection (through SQLAlchemy)."""
        with self.lock:
            yield ObservedConnection(self.conn)

    @contextmanager
    def sql(self) -> Iterator[Connection]:
        with self.lock:
            yield self.conn


class Connections:
    """Every way the backend uses a connection, all from the engine's one pool."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.engine = dialect.create_engine()
        #: For write transactions (SQLAlchemy paths, provisioning).
        self.writes = dialect.writes(self.engine)
        #: Held around every use of a connection (a real lock only for :memory:).
        self.lock: AbstractContextManager[Any] = dialect.lock
        #: True when every use of a connection must hold `lock` (:memory:)
        self._serialised = not isinstance(self.lock, nullcontext)
        #: whether the dialect can tell a connection the server closed while idle
        self._polls_idle = type(dialect).closed_by_server is not Dialect.closed_by_server
        self._dbapi_error: type[Exception] = self.engine.dialect.loaded_dbapi.Error
        #: checkout listeners of our own (the dialect's); any more means someone watches
        self._own_checkout_hooks = len(self.engine.pool.dispatch.checkout)
        self.closed = False
        #: Pool entries the fast paths keep checked out between calls (LIFO), so a call
        #: skips the pool's queue (a third of a SQLite read by key). They still count
        #: against the pool, so its size stays the ceiling; see `give_back`.
        self._idle: list[_ConnectionRecord] = []
        pool = self.engine.pool
        if isinstance(pool, QueuePool):
            self._capacity = pool.size() + pool._max_overflow
            self._max_idle = max(0, min(pool.size(), self._capacity - 1))
        else:  # :memory: (one shared connection): nothing to keep
            self._capacity = self._max_idle = 0
        #: The caller's open `bound_transaction()`, if any (per thread / async task).
        self._bound: contextvars.ContextVar[BoundConnection | None] = contextvars.ContextVar(
            "webvh_storage_sql_transaction", default=None
        )

    # --- transactions across calls -----------------------------------------------------
    @property
    def bound(self) -> BoundConnection | None:
        """The caller's open transaction block, or None."""
        return self._bound.get()

    @contextmanager
    def bound_transaction(self) -> Iterator[None]:
        """One write transaction for every call of the caller inside the block:
        committed when it ends, rolled back when it raises. A block inside one joins it.
        Not on :memory: (one connection every thread shares: the dialect lacks
        Capability.TRANSACTIONS)."""
        if self._bound.get() is not None:
            yield
            return
        self.check_open()
        self.release_idle()
        with self.writes.connect() as conn, conn.begin():  # commit, or rollback on raise
            self._bound.set(BoundConnection(conn))
            try:
                yield
            finally:
                self._bound.set(None)

    def close(self) -> None:
        """Close every pooled connection and refuse any further use: engine.dispose()
        alone would let the next call quietly open a new pool."""
        self.closed = True
        self.release_idle()
        self.engine.dispose()

    @property
    def idle_count(self) -> int:
        """Pool entries the fast paths hold idle right now (checked out, not in use)."""
        return len(self._idle)

    def saturated(self) -> bool:
        """Every connection the pool may open is in use (none idle, none kept idle for
        the fast paths): a checkout now would wait."""
        pool = self.engine.pool
        if not isinstance(pool, QueuePool):
            return False
        return pool.checkedout() - len(self._idle) >= self._capacity

    def release_idle(self) -> None:
        """Hand every entry the fast paths keep back to the pool: before a checkout
        through SQLAlchemy, which would otherwise wait for them. (A pool listener attached
        while entries are kept sees their checkin without having seen their checkout.)"""
        idle = self._idle
        while idle:
            try:
                entry = idle.pop()
            except IndexError:
                return
            entry.checkin(_fairy_was_created=False)

    def _checkout(self) -> _ConnectionRecord:
        """An entry for a fast call: the last one kept idle, else one from the pool
        (QueuePool: waits up to pool_timeout, then raises TimeoutError)."""
        try:
            return self._idle.pop()
        except IndexError:
            entry: _ConnectionRecord = self.engine.pool._do_get()  # type: ignore[assignment]
            return entry

    def check_open(self) -> None:
        if self.closed:
            raise BackendUnavailableError("the sqlalchemy backend is closed")

    def observed(self) -> bool:
        """True while the fast paths must go through SQLAlchemy to be seen: someone
        listens to the engine's statements or its pool, or the engine logs SQL."""
        return observed(self.engine, self._own_checkout_hooks)

    # --- driver connections (fast paths) -------------------------------------------------
    def connection(self) -> AbstractContextManager[DriverConnection]:
        """A pooled connection for driver-level statements, each committed on its own;
        back to the pool afterwards, or thrown away if the server dropped it (then the
        error is ConnectionLost). Inside a bound transaction: the block's connection."""
        bound = self._bound.get()
        return _Lease(self) if bound is None else bound.driver()

    @contextmanager
    def transaction(self) -> Iterator[DriverConnection]:
        """connection() inside the dialect's BEGIN ... COMMIT (ROLLBACK on error); the
        block's connection, in its transaction, inside a bound transaction."""
        bound = self._bound.get()
        if bound is not None:
            with bound.driver() as driver:
                yield driver
            return
        with self.connection() as conn:
            conn.execute(self.dialect.begin_sql, ())
            try:
                yield conn
            except BaseException:
                with suppress(Exception):  # the original error matters; reusable() checks
                    conn.execute("ROLLBACK", ())
                raise
            conn.execute("COMMIT", ())

    def fetch_one(self, sql: str, params: Sequence[Any]) -> Sequence[Any] | None:
        """One row of a driver-level read, run once more if the connection was lost
        (never inside a bound transaction: a lost one is lost with its transaction)."""
        bound = self._bound.get()
        if bound is not None:
            with bound.driver() as conn:
                return conn.fetch_one(sql, params)
        return _rerun_once_if_lost(self._fetch_one, sql, params)

    def fetch_all(self, sql: str, params: Sequence[Any]) -> Sequence[Sequence[Any]]:
        """Every row of a driver-level read, run once more if the connection was lost
        (never inside a bound transaction)."""
        bound = self._bound.get()
        if bound is not None:
            with bound.driver() as conn:
                return conn.fetch_all(sql, params)
        return _rerun_once_if_lost(self._fetch_all, sql, params)

    def _fetch_all(self, sql: str, params: Sequence[Any]) -> Sequence[Sequence[Any]]:
        with _Lease(self) as conn:
            return conn.fetch_all(sql, params)

    def _fetch_one(self, sql: str, params: Sequence[Any]) -> Sequence[Any] | None:
        """connection() written out flat for the hottest call of a did:webvh server, a
        read by key: each Python call saved here is a few percent of a SQLite read."""
        if self.closed or self._serialised or self.observed():
            with _Lease(self) as lent:
                return lent.fetch_one(sql, params)
        try:
            entry: _ConnectionRecord = self._idle.pop()
        except IndexError:
            entry = self.engine.pool._do_get()  # type: ignore[assignment]
        dbapi_connection = self.connection_of(entry)
        try:
            row = self.dialect.read_one(dbapi_connection, sql, params)
        except BaseException as exc:
            self.after_error(entry, exc)
            raise
        self.give_back(entry)
        return row

    # --- SQLAlchemy Connections ----------------------------------------------------------
    def sql_read(self, work: Callable[[Connection], T]) -> T:
        """`work` on a Connection without a transaction, run once more if the connection
        was lost (SQLAlchemy has invalidated it then); inside a bound transaction, on
        the block's connection, once."""
        bound = self._bound.get()
        if bound is not None:
            with bound.sql() as conn:
                return work(conn)
        return _rerun_once_if_lost(self._sql_read, work)

    def _sql_read(self, work: Callable[[Connection], T]) -> T:
        with self.lock, self.autocommit_connection() as conn:
            return work(conn)

    @contextmanager
    def autocommit_connection(self) -> Iterator[Connection]:
        """A Connection whose statements each commit on their own (no lock taken)."""
        self.check_open()
        self.release_idle()
        with self.engine.connect() as conn, self.dialect.without_transaction(conn):
            yield conn

    @contextmanager
    def sql_transaction(self) -> Iterator[Connection]:
        """A Connection in a write transaction, committed when the block ends (the
        bound transaction's, committed with it, inside one)."""
        bound = self._bound.get()
        if bound is not None:
            with bound.sql() as conn:
                yield conn
            return
        self.check_open()
        self.release_idle()
        with self.lock, self.writes.begin() as conn:
            yield conn

    # --- pool entries lent to the fast paths ------------------------------------------------
    def take(self, entry: _ConnectionRecord) -> DriverConnection:
        """The entry's connection, prepared for a fast path."""
        return self.dialect.lend(self.connection_of(entry))

    def connection_of(self, entry: _ConnectionRecord) -> Any:
        """The entry's DBAPI connection (connecting if the pool had invalidated it),
        checked like a checkout checks it; on failure the entry goes back to the pool."""
        try:
            dbapi_connection = entry.get_connection()
            if self._polls_idle and self.dialect.closed_by_server(dbapi_connection):
                entry.invalidate()
                dbapi_connection = entry.get_connection()  # a new one
            return dbapi_connection
        except BaseException as exc:
            self.discard(entry, exc if isinstance(exc, Exception) else None)
            raise

    def give_back(self, entry: _ConnectionRecord) -> None:
        """Return an entry after a fast call: kept for the next one while that leaves
        the pool a free slot for everyone else (an ORM session, a stream, another
        thread), else checked in; thrown away when the call left it unusable."""
        try:
            reusable = self.dialect.reusable(entry.dbapi_connection)
        except Exception:
            reusable = False
        if not reusable:
            self.discard(entry, None)
            return
        idle = self._idle
        pool: Any = self.engine.pool
        # pool.checkedout() without its mutex (a third of the time); stale by one at
        # worst, which only keeps one entry less
        if (
            len(idle) < self._max_idle  # 0 without a QueuePool: nothing is kept
            and not self.closed
            and pool._pool.maxsize - len(pool._pool.queue) + pool._overflow < self._capacity - 1
        ):
            idle.append(entry)
        else:
            entry.checkin(_fairy_was_created=False)  # no proxy was made

    def after_error(self, entry: _ConnectionRecord, exc: BaseException) -> None:
        """Return an entry whose statement raised `exc`; raises ConnectionLost when the
        server had dropped the connection."""
        if not isinstance(exc, Exception):  # interrupted: its state is unknown
            self.discard(entry, None)
        elif self.is_disconnect(exc):
            self.discard(entry, exc)
            raise ConnectionLost(exc) from exc
        else:
            self.give_back(entry)

    def discard(self, entry: _ConnectionRecord, exc: Exception | None) -> None:
        """Close the entry's connection (the pool opens a new one when it is next
        needed) and return the entry."""
        try:
            entry.invalidate(exc)
        finally:
            entry.checkin(_fairy_was_created=False)

    def is_disconnect(self, exc: Exception) -> bool:
        """A driver error saying the server dropped the connection."""
        return isinstance(exc, self._dbapi_error) and self.engine.dialect.is_disconnect(
            cast(Any, exc), None, None
        )


class _Lease:
    """Connections.connection(). A class rather than a generator, and a pool entry
    rather than SQLAlchemy's proxy for it, because it wraps every fast call: the proxy
    (weakref finalizer, reset, events) costs about as much as a SQLite read by key.
    Nobody can tell the difference: observed() sends every call through SQLAlchemy
    while anyone listens to the pool's checkout/checkin/reset events."""

    __slots__ = ("_connections", "_entry", "_observed")
    _entry: Any  # the pool's _ConnectionRecord (its _do_get() is typed as the interface)
    _observed: AbstractContextManager[Connection] | None

    def __init__(self, connections: Connections) -> None:
        self._connections = connections

    def __enter__(self) -> DriverConnection:
        connections = self._connections
        connections.check_open()
        connections.lock.__enter__()
        try:
            if connections.observed():
                self._observed = connections.autocommit_connection()
                return ObservedConnection(self._observed.__enter__())
            self._observed = None
            # one kept idle, else the pool's next idle connection or a new one within pool_size +
            # max_overflow, else wait pool_timeout and raise TimeoutError
            self._entry = connections._checkout()
            return connections.take(self._entry)
        except BaseException:
            connections.lock.__exit__(None, None, None)
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        connections = self._connections
        try:
            if self._observed is not None:  # SQLAlchemy looks after its own connection
                self._observed.__exit__(exc_type, exc, tb)
                return
            if exc is None:
                connections.give_back(self._entry)
            else:
                connections.after_error(self._entry, exc)
        finally:
            connections.lock.__exit__(None, None, None)


def _log_rerun(exc: Exception) -> None:
    """A recovered connection failure is worth a WARNING: it is how an outage begins."""
    log.warning("database connection lost (%s); running the read once more", type(exc).__name__)


def _lost(exc: Exception) -> bool:
    """The connection was lost and thrown away (ConnectionLost, or SQLAlchemy's
    DBAPIError that invalidated it): a read may run once more."""
    return bool(getattr(exc, "connection_invalidated", False))


def _rerun_once_if_lost(read: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`read(*args)`, run once more when the first run lost its connection: the one
    rerun rule of every read (a write is never run twice)."""
    try:
        return read(*args, **kwargs)
    except Exception as exc:
        if not _lost(exc):
            raise
        _log_rerun(exc)
    return read(*args, **kwargs)


def observed(engine: Engine, own_checkout_hooks: int = 0) -> bool:
    """True while someone listens to `engine`'s statements or its pool (beyond the
    `own_checkout_hooks` checkout listeners the dialect installed), or it logs SQL: then
    every statement must go through SQLAlchemy to be seen (both faces' fast paths ask)."""
    events, pool_events = engine.dispatch, engine.pool.dispatch
    before, after = events.before_cursor_execute, events.after_cursor_execute
    checkout, checkin, reset = pool_events.checkout, pool_events.checkin, pool_events.reset
    # each collection's own listeners and its class's: what its __bool__ reads, without
    # five Python calls (the check ran at 1.4 us a call, now 0.3 us)
    return bool(
        before.listeners
        or before.parent_listeners
        or after.listeners
        or after.parent_listeners
        or len(checkout.listeners) + len(checkout.parent_listeners) > own_checkout_hooks
        or checkin.listeners
        or checkin.parent_listeners
        or reset.listeners
        or reset.parent_listeners
        or engine.logger.isEnabledFor(logging.INFO)
    )
