"""Each backend serves both faces: the framework adapts the face a backend lacks.

* A sync `StorageBackend` gets its async face from `ThreadedAsyncBackend`: every call
  runs on a thread pool of the store's own, bounded by the store's pool size, so an
  event loop never waits on the database and never opens more threads than the store
  has connections to give them.
* An async `AsyncStorageBackend` gets its sync face from `LoopThreadBackend`: its
  coroutines run on a `storage_core.loop.BackgroundLoop`, the one sync-over-async bridge.

`as_async` / `as_sync` pick the adapter (or none: a backend's native face wins).

Blocks (`transaction()`, `primary()`) cross the adapters with the caller's context
variables: a backend keeps its open block in a context variable of the caller (thread or
task), so the adapter enters and leaves the other face's block in one
`contextvars.Context`, copies what entering set there into the caller's context for the
block's duration, and runs the calls inside the block with the caller's context (a
thread pool does not carry it by itself; a loop thread does: `run_coroutine_threadsafe`
copies it). The archive (`Capability.ARCHIVE`) crosses when the adapted face has it.
"""

from __future__ import annotations

import asyncio
import builtins
import contextvars
import functools
import itertools
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
    nullcontext,
)
from datetime import datetime
from typing import Any, TypeVar, cast

from storage_core.errors import BackendUnavailableError
from storage_core.interface import (
    ArchivedEntry,
    ArchiveStore,
    AsyncArchiveStore,
    AsyncStorageBackend,
    Capability,
    StorageBackend,
)
from storage_core.kinds import KindSpec, R
from storage_core.loop import BackgroundLoop, LoopClosedError, run_sync
from storage_core.ordering import OrderBy
from storage_core.validation import Filters

T = TypeVar("T")
#: Threads of a sync store's async face when its settings name no pool size.
DEFAULT_WORKERS = 10
#: Abilities of the sync face only: an adapted async face has no SQL sessions.
SYNC_FACE_ONLY = frozenset({Capability.SQL_SESSIONS})


def as_async(backend: StorageBackend | AsyncStorageBackend, workers: int) -> AsyncStorageBackend:
    """The async face of `backend`: itself, its native face, or the thread-pool adapter."""
    if isinstance(backend, AsyncStorageBackend):
        return backend
    if isinstance(backend, LoopThreadBackend):
        return backend.native
    native = backend.native_async()
    return native if native is not None else ThreadedAsyncBackend(backend, workers)


def as_sync(backend: StorageBackend | AsyncStorageBackend) -> StorageBackend:
    """The sync face of `backend`: itself, or its coroutines on a loop thread."""
    if isinstance(backend, StorageBackend):
        return backend
    if isinstance(backend, ThreadedAsyncBackend):
        return backend.sync
    return LoopThreadBackend(backend)


class ThreadedAsyncBackend(AsyncStorageBackend, AsyncArchiveStore):
    """A sync backend's calls on a bounded thread pool (one executor per store)."""

    def __init__(self, backend: StorageBackend, workers: int = DEFAULT_WORKERS) -> None:
        self.sync = backend
        self.name = backend.name
        lacks = SYNC_FACE_ONLY | _archive_unless(isinstance(backend, ArchiveStore))
        self.capabilities = backend.capabilities - lacks  # type: ignore[misc]  # per store
        self._executor = ThreadPoolExecutor(
            max_workers=max(1, workers), thread_name_prefix=f"storage-{backend.name}"
        )
        self._closed = False

    async def _run(self, func: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise BackendUnavailableError(f"the {self.name!r} store is closed")
        loop = asyncio.get_running_loop()
        # In the caller's context, as asyncio.to_thread: the manager's encode-once scope
        # (storage_core.encoded) and an open transaction() block reach the sync backend.
        call = functools.partial(contextvars.copy_context().run, func, *args)
        return await loop.run_in_executor(self._executor, call)

    async def _run_in(self, context: contextvars.Context, func: Callable[..., T], *args: Any) -> T:
        return await self._run(context.run, func, *args)

    def transaction(self) -> AbstractAsyncContextManager[None]:
        """The sync face's transaction(), entered and left on pool threads in one
        context; the calls of this task inside it carry that context along."""
        return self._carried(self.sync.transaction)

    def primary(self) -> AbstractAsyncContextManager[None]:
        """The sync face's primary() (reads go to the primary), carried like a
        transaction; a no-op for a backend without one."""
        primary = getattr(self.sync, "primary", None)
        return self._carried(primary) if callable(primary) else nullcontext()

    @asynccontextmanager
    async def _carried(
        self, open_block: Callable[[], AbstractContextManager[None]]
    ) -> AsyncIterator[None]:
        block = open_block()
        context = contextvars.copy_context()
        await self._run_in(context, block.__enter__)
        adopted = adopt(context)
        try:
            yield
        except BaseException as exc:
            restore(adopted)
            await self._run_in(context, block.__exit__, type(exc), exc, exc.__traceback__)
            raise
        restore(adopted)
        await self._run_in(context, block.__exit__, None, None, None)

    # --- lifecycle -------------------------------------------------------------------
    async def provision(self, recreate: bool = False) -> None:
        # A sync backend's provision may block inside its coroutine: run it off the loop.
        await self._run(lambda: run_sync(self.sync.provision(recreate=recreate)))

    async def aclose(self) -> None:
        if self._closed:  # idempotent
            return
        try:
            await self._run(self.sync.close)
        finally:
            self._closed = True
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def health_check(self) -> bool:
        try:
            return bool(await self._run(self.sync.health_check))
        except Exception:
            return False

    def describe(self) -> dict[str, Any]:
        return self.sync.describe()

    @property
    def secrets(self) -> Sequence[str]:
        return self.sync.secrets

    async def refuse_writes_for_testing(self, spec: KindSpec[Any], key: str) -> bool:
        return await self._run(self.sync.refuse_writes_for_testing, spec, key)

    async def flush(self) -> None:
        await self._run(self.sync.flush)

    # --- records ---------------------------------------------------------------------
    async def create(self, spec: KindSpec[R], record: R) -> R:
        return await self._run(self.sync.create, spec, record)

    async def get(self, spec: KindSpec[R], key: str) -> R | None:
        return await self._run(self.sync.get, spec, key)

    async def update(
        self,
        spec: KindSpec[R],
        key: str,
        changes: dict[str, Any],
        now: datetime,
        expected_version: int | None = None,
    ) -> R | None:
        return await self._run(self.sync.update, spec, key, changes, now, expected_version)

    async def upsert(self, spec: KindSpec[R], record: R, expected_version: int | None = None) -> R:
        return await self._run(self.sync.upsert, spec, record, expected_version)

    async def delete(self, spec: KindSpec[Any], key: str) -> bool:
        return await self._run(self.sync.delete, spec, key)

    async def list(
        self,
        spec: KindSpec[R],
        filters: Filters,
        limit: int | None,
        offset: int,
        order_by: OrderBy | None = None,
    ) -> builtins.list[R]:
        return await self._run(self.sync.list, spec, filters, limit, offset, *_given(order_by))

    async def count(self, spec: KindSpec[Any], filters: Filters) -> int:
        return await self._run(self.sync.count, spec, filters)

    def stream(
        self,
        spec: KindSpec[R],
        filters: Filters,
        batch_size: int,
        order_by: OrderBy | None = None,
    ) -> AsyncIterator[R]:
        opened = functools.partial(self.sync.stream, spec, filters, batch_size, *_given(order_by))
        return self._drain(opened, batch_size)

    async def _drain(self, open_: Callable[[], Iterator[T]], batch_size: int) -> AsyncIterator[T]:
        """A sync iterator opened and read on pool threads, a batch per hand-off;
        leaving early closes it on a pool thread (closing may block: it returns a
        cursor and its connection). A lock keeps the close from meeting a batch still
        being read (its awaiting task cancelled)."""
        iterator = await self._run(open_)
        lock = threading.Lock()

        def take() -> builtins.list[T]:
            with lock:
                return builtins.list(itertools.islice(iterator, batch_size))

        def close() -> None:
            with lock:
                closer = getattr(iterator, "close", None)
                if closer is not None:
                    closer()

        try:
            while True:
                batch = await self._run(take)
                for record in batch:
                    yield record
                if len(batch) < batch_size:
                    return
        finally:
            await self._run(close)

    async def bulk_upsert(self, spec: KindSpec[R], records: Sequence[R]) -> int:
        return await self._run(self.sync.bulk_upsert, spec, records)

    # --- archive (Capability.ARCHIVE: only when the sync face is an ArchiveStore) --------
    def _archive(self) -> ArchiveStore:
        return cast(ArchiveStore, self.sync)  # the manager checked the capability

    async def archive_upsert(self, entries: Sequence[ArchivedEntry]) -> int:
        return await self._run(self._archive().archive_upsert, entries)

    async def archive_get(self, category: str, names: Sequence[str]) -> dict[str, ArchivedEntry]:
        return await self._run(self._archive().archive_get, category, names)

    def archive_stream(
        self, category: str | None = None, batch_size: int = 500
    ) -> AsyncIterator[ArchivedEntry]:
        opened = functools.partial(self._archive().archive_stream, category, batch_size)
        return self._drain(opened, batch_size)

    async def archive_count(self, category: str | None = None) -> int:
        return await self._run(self._archive().archive_count, category)


class LoopThreadBackend(StorageBackend, ArchiveStore):
    """An async backend's coroutines run from sync code on a loop thread of its own
    (drivers' objects are bound to the loop they were opened on: always the same one)."""

    def __init__(self, backend: AsyncStorageBackend) -> None:
        self.native = backend
        self.name = backend.name
        # an async face's SQL sessions are async ones: this sync face has none
        lacks = {Capability.SQL_SESSIONS} | _archive_unless(isinstance(backend, AsyncArchiveStore))
        self.capabilities = backend.capabilities - lacks  # type: ignore[misc]
        self._loop = BackgroundLoop(name=f"storage-{backend.name}")

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return self._loop.run(coro)
        except LoopClosedError:
            raise BackendUnavailableError("the store is closed") from None

    async def provision(self, recreate: bool = False) -> None:
        try:
            await self._loop.run_async(self.native.provision(recreate=recreate))
        except LoopClosedError:
            raise BackendUnavailableError("the store is closed") from None

    def close(self) -> None:
        self._loop.close(before_stop=self.native.aclose)

    def health_check(self) -> bool:
        try:
            return bool(self._run(self.native.health_check()))
        except Exception:
            return False

    def describe(self) -> dict[str, Any]:
        return self.native.describe()

    @property
    def secrets(self) -> Sequence[str]:
        return self.native.secrets

    def refuse_writes_for_testing(self, spec: KindSpec[Any], key: str) -> bool:
        return self._run(self.native.refuse_writes_for_testing(spec, key))

    def transaction(self) -> AbstractContextManager[None]:
        """The async face's transaction(), entered and left on the loop in one context;
        the caller's later calls carry it to the loop (run_coroutine_threadsafe copies
        the calling thread's context)."""
        return self._carried(self.native.transaction)

    def primary(self) -> AbstractContextManager[None]:
        """The async face's primary(), carried like a transaction; a no-op for a face
        without one."""
        primary = getattr(self.native, "primary", None)
        return self._carried(primary) if callable(primary) else nullcontext()

    @contextmanager
    def _carried(
        self, open_block: Callable[[], AbstractAsyncContextManager[None]]
    ) -> Iterator[None]:
        block = open_block()
        context = contextvars.copy_context()
        self._run(_in_context(context, block.__aenter__()))
        adopted = adopt(context)
        try:
            yield
        except BaseException as exc:
            restore(adopted)
            self._run(_in_context(context, block.__aexit__(type(exc), exc, exc.__traceback__)))
            raise
        restore(adopted)
        self._run(_in_context(context, block.__aexit__(None, None, None)))

    def flush(self) -> None:
        self._run(self.native.flush())

    def create(self, spec: KindSpec[R], record: R) -> R:
        return self._run(self.native.create(spec, record))

    def get(self, spec: KindSpec[R], key: str) -> R | None:
        return self._run(self.native.get(spec, key))

    def update(
        self,
        spec: KindSpec[R],
        key: str,
        changes: dict[str, Any],
        now: datetime,
        expected_version: int | None = None,
    ) -> R | None:
        return self._run(self.native.update(spec, key, changes, now, expected_version))

    def upsert(self, spec: KindSpec[R], record: R, expected_version: int | None = None) -> R:
        return self._run(self.native.upsert(spec, record, expected_version))

    def delete(self, spec: KindSpec[Any], key: str) -> bool:
        return self._run(self.native.delete(spec, key))

    def list(
        self,
        spec: KindSpec[R],
        filters: Filters,
        limit: int | None,
        offset: int,
        order_by: OrderBy | None = None,
    ) -> builtins.list[R]:
        return self._run(self.native.list(spec, filters, limit, offset, *_given(order_by)))

    def count(self, spec: KindSpec[Any], filters: Filters) -> int:
        return self._run(self.native.count(spec, filters))

    def stream(
        self,
        spec: KindSpec[R],
        filters: Filters,
        batch_size: int,
        order_by: OrderBy | None = None,
    ) -> Iterator[R]:
        opened = functools.partial(self.native.stream, spec, filters, batch_size, *_given(order_by))
        return self._drain(opened, batch_size)

    def _drain(self, open_: Callable[[], AsyncIterator[T]], batch_size: int) -> Iterator[T]:
        """An async iterator read from the loop, a batch per hand-off; closing early
        closes it on its loop."""
        inner = open_()

        async def batch() -> builtins.list[T]:
            return [record async for record in _first(inner, batch_size)]

        try:
            while True:
                page = self._run(batch())
                yield from page
                if len(page) < batch_size:
                    return
        finally:
            aclose = getattr(inner, "aclose", None)
            if aclose is not None and not self._loop.closed:
                self._loop.run(aclose())

    def bulk_upsert(self, spec: KindSpec[R], records: Sequence[R]) -> int:
        return self._run(self.native.bulk_upsert(spec, records))

    # --- archive (Capability.ARCHIVE: only when the async face is an AsyncArchiveStore) ---
    def _archive(self) -> AsyncArchiveStore:
        return cast(AsyncArchiveStore, self.native)  # the manager checked the capability

    def archive_upsert(self, entries: Sequence[ArchivedEntry]) -> int:
        return self._run(self._archive().archive_upsert(entries))

    def archive_get(self, category: str, names: Sequence[str]) -> dict[str, ArchivedEntry]:
        return self._run(self._archive().archive_get(category, names))

    def archive_stream(
        self, category: str | None = None, batch_size: int = 500
    ) -> Iterator[ArchivedEntry]:
        opened = functools.partial(self._archive().archive_stream, category, batch_size)
        return self._drain(opened, batch_size)

    def archive_count(self, category: str | None = None) -> int:
        return self._run(self._archive().archive_count(category))


def _archive_unless(archives: bool) -> frozenset[str]:
    """Capability.ARCHIVE to take away from a face that cannot serve it."""
    return frozenset() if archives else frozenset({Capability.ARCHIVE})


_Adopted = builtins.list[tuple[contextvars.ContextVar[Any], contextvars.Token[Any]]]
_MISSING = object()


def adopt(source: contextvars.Context) -> _Adopted:
    """Set in the current context every variable `source` holds with another value
    (what entering a block set there); `restore` undoes it."""
    adopted: _Adopted = []
    for var, value in source.items():
        if var.get(_MISSING) is not value:
            adopted.append((var, var.set(value)))
    return adopted


def restore(adopted: _Adopted) -> None:
    for var, token in reversed(adopted):
        var.reset(token)


async def _in_context(context: contextvars.Context, coro: Coroutine[Any, Any, T]) -> T:
    """Await `coro` as a task running in `context` itself (not a copy of it)."""
    return await asyncio.get_running_loop().create_task(coro, context=context)


def _given(order_by: OrderBy | None) -> tuple[OrderBy, ...]:
    """`order_by` as the extra argument to pass on, or none at all for the default
    order, so a backend written before `order_by` existed serves it unchanged."""
    return () if order_by is None else (order_by,)


async def _first(iterator: AsyncIterator[T], count: int) -> AsyncIterator[T]:
    """The next `count` items of `iterator` (fewer at its end), leaving it open."""
    for _ in range(count):
        try:
            yield await anext(iterator)
        except StopAsyncIteration:
            return
