"""`AskarBackend`: the nine kinds of record in an aries-askar store, sync face.

The backend modules (this one, operations, async_backend) are the only ones that import
aries_askar, and only when the registry builds the backend, so a missing package fails
here (the plugin registry turns that into MissingDependencyError) and nowhere else.

Askar is async; this face's API is sync and thread-safe. Every call runs one operation of
`operations.AskarOperations` as a coroutine on a private loop thread
(`loop.BackgroundLoop`); entries come back to the calling thread and are decoded there,
so the loop thread only waits on Askar. `native_async()` gives the async face, which
runs the same operations in the caller's own event loop, with no loop thread.
"""

from __future__ import annotations

import builtins
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from datetime import datetime
from typing import Any, TypeVar

from aries_askar import AskarError, Store  # type: ignore[import-untyped]

from storage_core.config import Settings
from storage_core.errors import BackendUnavailableError, StorageError
from storage_core.interface import ArchivedEntry, ArchiveStore, AsyncStorageBackend, StorageBackend
from storage_core.kinds import KindSpec
from storage_core.loop import BackgroundLoop, LoopClosedError
from storage_core.ordering import OrderBy
from storage_core.validation import Filters
from webvh_storage_askar import archive, layout
from webvh_storage_askar.archive import ArchiveOperations
from webvh_storage_askar.config import AskarConfig
from webvh_storage_askar.operations import Op, Reruns, StoreSlot, Work
from webvh_storage_askar.streams import StreamCursor

T = TypeVar("T")
V = TypeVar("V")


def _shutdown(loop: BackgroundLoop, slot: StoreSlot) -> None:
    loop.close(before_stop=slot.close_store)


class AskarBackend(ArchiveOperations, StorageBackend, ArchiveStore):
    def __init__(self, settings: Settings) -> None:
        super().__init__(AskarConfig.from_settings(settings))
        self._loop = BackgroundLoop(name="askar-backend")
        self._finalizer = weakref.finalize(self, _shutdown, self._loop, self._slot)

    @staticmethod
    def absent_database(settings: Settings) -> str | None:
        """The SQLite file the settings name when it does not exist (read-only tools ask
        before opening, which would create it); None for existing files and servers."""
        path = AskarConfig.from_settings(settings).sqlite_path
        return None if path is None or path.exists() else str(path)

    def native_async(self) -> AsyncStorageBackend:
        """The async face: the same operations awaited in the caller's event loop, on
        a store of its own opened there (aries-askar stores belong to one loop). Both
        open the same file or database; an in-memory store is one per face."""
        from webvh_storage_askar.async_backend import AsyncAskarBackend

        return AsyncAskarBackend(self.config, owner=self)

    # --- lifecycle -------------------------------------------------------------------
    async def provision(self, recreate: bool = False) -> None:
        try:
            await self._loop.run_async(self._reopen(recreate))
        except AskarError as exc:
            raise self._error(exc, "provisioning") from None
        except LoopClosedError:
            raise BackendUnavailableError("the Askar backend is closed") from None

    def close(self) -> None:
        self._finalizer()

    def health_check(self) -> bool:
        try:
            self._run(self._health_op())
        except StorageError:
            return False
        return True

    def refuse_writes_for_testing(self, spec: KindSpec[Any], key: str) -> bool:
        return self._refuse(spec, key)

    def __repr__(self) -> str:
        config = self.config
        return f"AskarBackend(url={config.masked_uri!r}, key_method={config.key_method!r})"

    # --- running calls on the loop ------------------------------------------------------
    def _store(self) -> Store:
        store = self._slot.store
        if store is not None:
            return store
        if self._loop.closed:
            raise BackendUnavailableError("the Askar backend is closed")
        try:
            return self._loop.run(self._open_if_needed())
        except AskarError as exc:
            raise self._error(exc, "opening") from None

    def _run(self, op: Op[T, V]) -> V:
        """Run an operation: its work on the loop, its finish in the calling thread."""
        done = self._call(op.action, op.work, op.spec, op.key, rerun_if_lost=op.rerun_if_lost)
        return op.finish(done)

    def _call(
        self,
        action: str,
        work: Work[T],
        spec: KindSpec[Any] | None = None,
        key: str | None = None,
        *,
        rerun_if_lost: bool = True,
    ) -> T:
        """Run `work(store)` on the loop; AskarErrors become StorageErrors, and a failure
        without effect is re-run (see operations.Reruns)."""
        store = self._store()
        reruns = Reruns(rerun_if_lost)
        for attempt in range(reruns.attempts):
            started = time.monotonic()
            try:
                return self._loop.run(work(store))
            except AskarError as exc:
                if reruns.again(exc, started, attempt, action):
                    continue
                error = self._error(exc, action, spec, key)
                if not self._keeps_store_after(error):
                    self._discard_store()
                raise error from None
            except LoopClosedError:
                raise BackendUnavailableError("the Askar backend is closed") from None
        raise AssertionError("unreachable")

    def _discard_store(self) -> None:
        """Close the store (see operations.AskarOperations._keeps_store_after)."""
        if self._loop.closed:
            return
        try:
            self._loop.run(self._slot.close_store())
        except (AskarError, LoopClosedError):
            self._slot.store = None

    # --- records -----------------------------------------------------------------------
    def create(self, spec: KindSpec[Any], record: Any) -> Any:
        return self._run(self._create_op(spec, record))

    def get(self, spec: KindSpec[Any], key: str) -> Any | None:
        return self._run(self._get_op(spec, key))

    def update(
        self,
        spec: KindSpec[Any],
        key: str,
        changes: dict[str, Any],
        now: datetime,
        expected_version: int | None = None,
    ) -> Any | None:
        return self._run(self._update_op(spec, key, changes, now, expected_version))

    def upsert(self, spec: KindSpec[Any], record: Any, expected_version: int | None = None) -> Any:
        return self._run(self._upsert_op(spec, record, expected_version))

    def delete(self, spec: KindSpec[Any], key: str) -> bool:
        return self._run(self._delete_op(spec, key))

    def list(
        self,
        spec: KindSpec[Any],
        filters: Filters,
        limit: int | None,
        offset: int,
        order_by: OrderBy | None = None,
    ) -> builtins.list[Any]:
        if order_by is not None:
            found = self._run(self._sorted_op(spec, filters, order_by))
            return found[offset : None if limit is None else offset + limit]
        return self._run(self._list_op(spec, filters, limit, offset))

    def count(self, spec: KindSpec[Any], filters: Filters) -> int:
        return self._run(self._count_op(spec, filters))

    def stream(
        self,
        spec: KindSpec[Any],
        filters: Filters,
        batch_size: int,
        order_by: OrderBy | None = None,
    ) -> Iterator[Any]:
        if order_by is not None:  # sorted in memory (operations: max_sorted records)
            found: builtins.list[Any] = self._run(self._sorted_op(spec, filters, order_by))
            return iter(found)
        return self._stream(spec, layout.tag_filter(filters), batch_size)

    def _stream(
        self, spec: KindSpec[Any], wql: layout.Wql | None, batch_size: int
    ) -> Iterator[Any]:
        """Pages of the stream's scan (operations.AskarOperations._page_op)."""
        cursor = StreamCursor(spec.category, wql)
        streams = self._slot.streams
        try:
            while True:
                page = self._run(self._page_op(spec, cursor, batch_size))
                for entry in page:
                    yield layout.decode(spec, entry.raw_value)
                if len(page) < batch_size:
                    return
        finally:
            self._loop.call_soon(lambda: streams.discard(cursor))

    def bulk_upsert(self, spec: KindSpec[Any], records: Sequence[Any]) -> int:
        return self._run(self._bulk_op(spec, records))

    def transaction(self) -> AbstractContextManager[None]:
        """One Askar transaction for this thread's calls inside the block (see
        operations: the block's session serves them)."""
        return self._transaction()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        if self._block.get() is not None:  # joins the open block
            yield
            return
        block = self._run(self._begin_op())
        self._block.set(block)
        try:
            yield
        except BaseException:
            self._block.set(None)
            with suppress(StorageError):  # the caller's error is the one that matters
                self._run(self._end_op(block, commit=False))
            raise
        self._block.set(None)
        self._run(self._end_op(block, commit=True))

    # --- archive (Capability.ARCHIVE: the migration's verbatim entries, archive.py) -----
    def archive_upsert(self, entries: Sequence[ArchivedEntry]) -> int:
        return self._run(self._archive_upsert_op(entries))

    def archive_get(self, category: str, names: Sequence[str]) -> dict[str, ArchivedEntry]:
        found = self._run(self._archive_fetch_op([(category, name) for name in names]))
        return {entry.name: entry for entry in found}

    def archive_stream(
        self, category: str | None = None, batch_size: int = 500
    ) -> Iterator[ArchivedEntry]:
        """In (category, name) order, a window of keys per scan (see archive.py)."""
        after: tuple[str, str] | None = None
        while True:
            keys, first = self._run(self._archive_window_op(category, after, batch_size))
            yield from first
            for batch in archive.rest_of_window(keys, batch_size):
                yield from self._run(self._archive_fetch_op(batch))
            if archive.window_done(keys, batch_size):
                return
            after = keys[-1]

    def archive_count(self, category: str | None = None) -> int:
        return self._run(self._archive_count_op(category))
