"""`AsyncAskarBackend`: the Askar backend's native async face.

aries-askar is async, so this face simply awaits the operations of
`operations.AskarOperations` in the caller's event loop: no loop thread, no hand-off.
aries-askar objects belong to the loop that opened them, so this face opens a store of
its own, lazily in the loop of its first call, and refuses calls from any other loop
(they would hang or fail inside the driver) with a clear error instead.
"""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from aries_askar import AskarError, Store  # type: ignore[import-untyped]

from storage_core.adapters import SYNC_FACE_ONLY
from storage_core.errors import BackendUnavailableError, StorageError
from storage_core.interface import ArchivedEntry, AsyncArchiveStore, AsyncStorageBackend
from storage_core.kinds import KindSpec
from storage_core.ordering import OrderBy
from storage_core.validation import Filters
from webvh_storage_askar import archive, layout
from webvh_storage_askar.archive import ArchiveOperations
from webvh_storage_askar.config import AskarConfig
from webvh_storage_askar.operations import Op, Reruns
from webvh_storage_askar.streams import StreamCursor

if TYPE_CHECKING:
    from webvh_storage_askar.backend import AskarBackend

T = TypeVar("T")
V = TypeVar("V")


class AsyncAskarBackend(ArchiveOperations, AsyncStorageBackend, AsyncArchiveStore):
    """Built by `AskarBackend.native_async()`; closing it closes that sync face too."""

    def __init__(self, config: AskarConfig, owner: AskarBackend | None = None) -> None:
        super().__init__(config)
        self.capabilities = self.capabilities - SYNC_FACE_ONLY  # type: ignore[misc]  # per store
        self.name = "askar" if owner is None else owner.name
        self._owner = owner
        self._bound: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def __repr__(self) -> str:
        config = self.config
        return f"AsyncAskarBackend(url={config.masked_uri!r}, key_method={config.key_method!r})"

    # --- the store, in the caller's loop ------------------------------------------------
    def _check_loop(self) -> None:
        if self._closed:
            raise BackendUnavailableError("the Askar backend is closed")
        loop = asyncio.get_running_loop()
        if self._bound is None:
            self._bound = loop
        elif loop is not self._bound:
            raise BackendUnavailableError(
                "this async Askar store was opened in another event loop; open one store "
                "per event loop (e.g. in the application's lifespan)"
            )

    async def _store(self) -> Store:
        self._check_loop()
        store = self._slot.store
        if store is not None:
            return store
        try:
            return await self._open_if_needed()
        except AskarError as exc:
            raise self._error(exc, "opening") from None

    async def _run(self, op: Op[T, V]) -> V:
        """Await an operation in this loop; AskarErrors become StorageErrors, and a
        failure without effect is re-run (see operations.Reruns). The common case, an
        open store and a first attempt that succeeds, awaits nothing but the work."""
        self._check_loop()
        store = self._slot.store
        if store is None:
            store = await self._store()
        started = time.monotonic()
        try:
            return op.finish(await op.work(store))
        except AskarError as exc:
            return await self._after_failure(op, store, exc, started)

    async def _after_failure(
        self, op: Op[T, V], store: Store, exc: AskarError, started: float
    ) -> V:
        """The first attempt failed with `exc`: run again while `Reruns` allows, then
        raise the StorageError of the last failure."""
        reruns = Reruns(op.rerun_if_lost)
        attempt = 0
        while reruns.again(exc, started, attempt, op.action):
            attempt += 1
            started = time.monotonic()
            try:
                return op.finish(await op.work(store))
            except AskarError as again:
                exc = again
        error = self._error(exc, op.action, op.spec, op.key)
        if not self._keeps_store_after(error):
            await self._discard_store()
        raise error from None

    async def _discard_store(self) -> None:
        try:
            await self._slot.close_store()
        except AskarError:
            self._slot.store = None

    # --- lifecycle -------------------------------------------------------------------
    async def provision(self, recreate: bool = False) -> None:
        self._check_loop()
        try:
            await self._reopen(recreate)
        except AskarError as exc:
            raise self._error(exc, "provisioning") from None

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._slot.close_store()
        finally:
            if self._owner is not None:  # its idle loop thread: join it off this loop
                await asyncio.to_thread(self._owner.close)

    async def health_check(self) -> bool:
        try:
            await self._run(self._health_op())
        except StorageError:
            return False
        return True

    async def refuse_writes_for_testing(self, spec: KindSpec[Any], key: str) -> bool:
        return self._refuse(spec, key)

    # --- records -----------------------------------------------------------------------
    async def create(self, spec: KindSpec[Any], record: Any) -> Any:
        return await self._run(self._create_op(spec, record))

    async def get(self, spec: KindSpec[Any], key: str) -> Any | None:
        return await self._run(self._get_op(spec, key))

    async def update(
        self,
        spec: KindSpec[Any],
        key: str,
        changes: dict[str, Any],
        now: datetime,
        expected_version: int | None = None,
    ) -> Any | None:
        return await self._run(self._update_op(spec, key, changes, now, expected_version))

    async def upsert(
        self, spec: KindSpec[Any], record: Any, expected_version: int | None = None
    ) -> Any:
        return await self._run(self._upsert_op(spec, record, expected_version))

    async def delete(self, spec: KindSpec[Any], key: str) -> bool:
        return await self._run(self._delete_op(spec, key))

    async def list(
        self,
        spec: KindSpec[Any],
        filters: Filters,
        limit: int | None,
        offset: int,
        order_by: OrderBy | None = None,
    ) -> builtins.list[Any]:
        if order_by is not None:
            found = await self._run(self._sorted_op(spec, filters, order_by))
            return found[offset : None if limit is None else offset + limit]
        return await self._run(self._list_op(spec, filters, limit, offset))

    async def count(self, spec: KindSpec[Any], filters: Filters) -> int:
        return await self._run(self._count_op(spec, filters))

    async def stream(
        self,
        spec: KindSpec[Any],
        filters: Filters,
        batch_size: int,
        order_by: OrderBy | None = None,
    ) -> AsyncIterator[Any]:
        """Pages of the stream's scan (operations.AskarOperations._page_op); leaving
        early frees the scan and its pool connection at once. With `order_by`, every
        match sorted in memory (operations: at most max_sorted records)."""
        if order_by is not None:
            for record in await self._run(self._sorted_op(spec, filters, order_by)):
                yield record
            return
        cursor = StreamCursor(spec.category, layout.tag_filter(filters))
        try:
            while True:
                page = await self._run(self._page_op(spec, cursor, batch_size))
                for entry in page:
                    yield layout.decode(spec, entry.raw_value)
                if len(page) < batch_size:
                    return
        finally:
            self._slot.streams.discard(cursor)

    async def bulk_upsert(self, spec: KindSpec[Any], records: Sequence[Any]) -> int:
        return await self._run(self._bulk_op(spec, records))

    def transaction(self) -> AbstractAsyncContextManager[None]:
        """One Askar transaction for this task's calls inside the block (see
        operations: the block's session serves them)."""
        return self._transaction()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        if self._block.get() is not None:  # joins the open block
            yield
            return
        block = await self._run(self._begin_op())
        self._block.set(block)
        try:
            yield
        except BaseException:
            self._block.set(None)
            with suppress(StorageError):  # the caller's error is the one that matters
                await self._run(self._end_op(block, commit=False))
            raise
        self._block.set(None)
        await self._run(self._end_op(block, commit=True))

    # --- archive (Capability.ARCHIVE: the sync face's operations, archive.py) ----------
    async def archive_upsert(self, entries: Sequence[ArchivedEntry]) -> int:
        return await self._run(self._archive_upsert_op(entries))

    async def archive_get(self, category: str, names: Sequence[str]) -> dict[str, ArchivedEntry]:
        found = await self._run(self._archive_fetch_op([(category, name) for name in names]))
        return {entry.name: entry for entry in found}

    async def archive_stream(
        self, category: str | None = None, batch_size: int = 500
    ) -> AsyncIterator[ArchivedEntry]:
        """In (category, name) order, a window of keys per scan (see archive.py)."""
        after: tuple[str, str] | None = None
        while True:
            keys, first = await self._run(self._archive_window_op(category, after, batch_size))
            for entry in first:
                yield entry
            for batch in archive.rest_of_window(keys, batch_size):
                for entry in await self._run(self._archive_fetch_op(batch)):
                    yield entry
            if archive.window_done(keys, batch_size):
                return
            after = keys[-1]

    async def archive_count(self, category: str | None = None) -> int:
        return await self._run(self._archive_count_op(category))
