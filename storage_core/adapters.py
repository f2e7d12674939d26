"""Each backend serves both faces: the framework adapts the face a backend lacks.

* A sync `StorageBackend` gets its async face from `ThreadedAsyncBackend`: every call
  runs on a thread pool of the store's own, bounded by the store's pool size, so an
  event loop never waits on the database and never opens more threads than the store
  has connections to give them.
* An async `AsyncStorageBackend` gets its sync face from `LoopThreadBackend`: its
  coroutines run on a `storage_core.loop.BackgroundLoop`, the one sync-over-async bridge.

`as_async` / `as_sync` pick the adapter (or none: a backend's native face wins).
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import itertools
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

from storage_core.errors import BackendUnavailableError
from storage_core.interface import AsyncStorageBackend, Capability, StorageBackend
from storage_core.kinds import KindSpec, R
from storage_core.loop import BackgroundLoop, LoopClosedError, run_sync
from storage_core.validation import Filters

T = TypeVar("T")
#: Threads of a sync store's async face when its settings name no pool size.
DEFAULT_WORKERS = 10
#: Abilities of the sync face only: the async face has no SQL sessions or archive yet.
SYNC_FACE_ONLY = frozenset({Capability.SQL_SESSIONS, Capability.ARCHIVE})


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


class ThreadedAsyncBackend(AsyncStorageBackend):
    """A sync backend's calls on a bounded thread pool (one executor per store)."""

    def __init__(self, backend: StorageBackend, workers: int = DEFAULT_WORKERS) -> None:
        self.sync = backend
        self.name = backend.name
        self.capabilities = backend.capabilities - SYNC_FACE_ONLY  # type: ignore[misc]  # per store
        self._executor = ThreadPoolExecutor(
            max_workers=max(1, workers), thread_name_prefix=f"storage-{backend.name}"
        )
        self._closed = False

    async def _run(self, func: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise BackendUnavailableError(f"the {self.name!r} store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(func, *args))

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
        self, spec: KindSpec[R], filters: Filters, limit: int | None, offset: int
    ) -> builtins.list[R]:
        return await self._run(self.sync.list, spec, filters, limit, offset)

    async def count(self, spec: KindSpec[Any], filters: Filters) -> int:
        return await self._run(self.sync.count, spec, filters)

    async def stream(
        self, spec: KindSpec[R], filters: Filters, batch_size: int
    ) -> AsyncIterator[R]:
        """A batch per thread hand-off; leaving early closes the sync iterator on a pool
        thread (closing may block: it returns a cursor and its connection). A lock keeps
        the close from meeting a batch still being read (its awaiting task cancelled)."""
        iterator = await self._run(self.sync.stream, spec, filters, batch_size)
        lock = threading.Lock()

        def take() -> builtins.list[R]:
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


class LoopThreadBackend(StorageBackend):
    """An async backend's coroutines run from sync code on a loop thread of its own
    (drivers' objects are bound to the loop they were opened on: always the same one)."""

    def __init__(self, backend: AsyncStorageBackend) -> None:
        self.native = backend
        self.name = backend.name
        # an async face's SQL sessions are async ones: this sync face has none
        self.capabilities = backend.capabilities - {Capability.SQL_SESSIONS}  # type: ignore[misc]
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
        self, spec: KindSpec[R], filters: Filters, limit: int | None, offset: int
    ) -> builtins.list[R]:
        return self._run(self.native.list(spec, filters, limit, offset))

    def count(self, spec: KindSpec[Any], filters: Filters) -> int:
        return self._run(self.native.count(spec, filters))

    def stream(self, spec: KindSpec[R], filters: Filters, batch_size: int) -> Iterator[R]:
        """A batch per loop hand-off; closing early closes the async iterator on its loop."""
        inner = self.native.stream(spec, filters, batch_size)

        async def batch() -> builtins.list[R]:
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


async def _first(iterator: AsyncIterator[T], count: int) -> AsyncIterator[T]:
    """The next `count` items of `iterator` (fewer at its end), leaving it open."""
    for _ in range(count):
        try:
            yield await anext(iterator)
        except StopAsyncIteration:
            return
