"""`AskarBackend`: the nine kinds of record in an aries-askar store.

The only module that imports aries_askar at import time, so a missing package fails
here (the plugin registry turns that into MissingDependencyError) and nowhere else.

Askar is async; this backend's API is sync and thread-safe. Every call runs as one
coroutine on a private loop thread (`loop.BackgroundLoop`); entries come back to the
calling thread and are decoded there, so the loop thread only waits on Askar.
Order: Askar row ids grow with each insert and `replace` keeps them, so
`order_by="id"` is creation order exactly as the SQL backend's ordering contract needs.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, ClassVar, TypeVar

from aries_askar import AskarError, Store

from storage_core import codec
from storage_core.codec import format_timestamp
from storage_core.config import Settings
from storage_core.errors import (
    BackendUnavailableError,
    ConflictError,
    StorageError,
    StorageIOError,
)
from storage_core.interface import Capability, StorageBackend
from storage_core.kinds import KindSpec
from storage_core.loop import BackgroundLoop, LoopClosedError
from storage_core.validation import Filters
from webvh_storage_askar import layout
from webvh_storage_askar.config import AskarConfig
from webvh_storage_askar.errors import Code, is_code, is_lost, is_stale_connection, translate
from webvh_storage_askar.lifecycle import open_store
from webvh_storage_askar.scans import free_scan
from webvh_storage_askar.sessions import IdleSessions

T = TypeVar("T")
#: Transactions on one SQLite file can collide (BUSY); such a write is retried.
BUSY_RETRIES = 20
BUSY_BACKOFF = 0.005
#: Re-runs of an operation that failed without effect: its error was lost by the Askar
#: wrapper (errors.is_lost) or it met a dead pooled connection (errors.is_stale_connection;
#: a pool can hold several, each fails at once).
RERUNS = 5
FAST_FAILURE_SECONDS = 0.5
HEALTH_CATEGORY = "webvh:log_entry"


class _StoreSlot:
    """The open store and its live scans. Shared with the finalizer, which must not
    reference the backend itself."""

    def __init__(self) -> None:
        self.store: Store | None = None
        self.scans: set[Any] = set()
        self.scans_lock = threading.Lock()
        self.open_lock: asyncio.Lock | None = None
        self.readers = IdleSessions(may_keep=lambda: not self.scans)

    def track(self, scan: Any) -> None:
        with self.scans_lock:
            self.scans.add(scan)

    def release(self, scan: Any) -> None:
        """Free a scan now: its pool connection goes back to the pool."""
        with self.scans_lock:
            self.scans.discard(scan)
        free_scan(scan)

    async def close_store(self) -> None:
        with self.scans_lock:
            scans, self.scans = list(self.scans), set()
        for scan in scans:
            free_scan(scan)
        await self.readers.close()
        store, self.store = self.store, None
        if store is not None:
            await store.close()


def _shutdown(loop: BackgroundLoop, slot: _StoreSlot) -> None:
    loop.close(before_stop=slot.close_store)


class AskarBackend(StorageBackend):
    capabilities: ClassVar[frozenset[str]] = frozenset({Capability.PERSISTENT})

    def __init__(self, settings: Settings) -> None:
        self.config = AskarConfig.from_settings(settings)
        self._secrets = list(dict.fromkeys([*self.config.secrets, *settings.secrets]))
        self._profile = self.config.profile
        if self.config.in_memory:
            self.capabilities = frozenset()  # each instance has its own, lost on close
        self._slot = _StoreSlot()
        self._loop = BackgroundLoop(name="askar-backend")
        self._finalizer = weakref.finalize(self, _shutdown, self._loop, self._slot)

    # --- lifecycle -------------------------------------------------------------------
    async def provision(self, recreate: bool = False) -> None:
        try:
            await self._loop.run_async(self._reopen(recreate))
        except AskarError as exc:
            raise self._error(exc, "provisioning") from None
        except LoopClosedError:
            raise BackendUnavailableError("the Askar backend is closed") from None

    async def _reopen(self, recreate: bool) -> None:
        async with self._open_lock():
            if not recreate and self._slot.store is not None:
                return  # already open: keep it (an in-memory store would lose its data)
            await self._slot.close_store()
            self._slot.store = await open_store(self.config, recreate=recreate)

    async def _open_if_needed(self) -> Store:
        async with self._open_lock():
            if self._slot.store is None:
                self._slot.store = await open_store(self.config)
            return self._slot.store

    def _open_lock(self) -> asyncio.Lock:
        # Created lazily on the loop thread, where it is always used.
        if self._slot.open_lock is None:
            self._slot.open_lock = asyncio.Lock()
        return self._slot.open_lock

    def close(self) -> None:
        self._finalizer()

    def health_check(self) -> bool:
        try:
            self._call("health check", lambda s: self._count(s, HEALTH_CATEGORY, None))
        except StorageError:
            return False
        return True

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "askar",
            "url": self.config.masked_uri,
            "key_method": self.config.key_method,
            "profile": self.config.profile,
        }

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

    def _call(
        self,
        action: str,
        work: Callable[[Store], Awaitable[T]],
        spec: KindSpec | None = None,
        key: str | None = None,
        *,
        rerun_if_lost: bool = True,
    ) -> T:
        """Run `work(store)` on the loop; AskarErrors become StorageErrors. A failure that
        had no effect (lost error, dead pooled connection) is re-run - every operation here
        is all-or-nothing - except scan steps, which cannot be repeated."""
        store = self._store()
        attempts = 1 + (RERUNS if rerun_if_lost else 0)
        slow_reruns = 0
        for attempt in range(attempts):
            started = time.monotonic()
            try:
                return self._loop.run(work(store))
            except AskarError as exc:
                # A dead pooled connection fails at once and is re-run freely. A slow
                # failure means an outage: re-running it would multiply the caller's wait
                # by the connect timeout, so only a lost error (which says nothing) gets
                # one more slow try to find out what happened.
                failed_fast = time.monotonic() - started < FAST_FAILURE_SECONDS
                retry = is_lost(exc) or (failed_fast and is_stale_connection(exc))
                if retry and not failed_fast:
                    slow_reruns += 1
                    retry = slow_reruns <= 1
                if retry and attempt < attempts - 1:
                    continue
                error = self._error(exc, action, spec, key)
                if isinstance(error, StorageIOError):
                    self._discard_store()
                raise error from None
            except LoopClosedError:
                raise BackendUnavailableError("the Askar backend is closed") from None
        raise AssertionError("unreachable")

    def _discard_store(self) -> None:
        """Drop the store after the disk refused a write (full, read-only, I/O error).

        A COMMIT that failed that way can leave a pooled SQLite connection inside its
        transaction; later writes would join it, report success, and vanish on close
        (seen with aries-askar 0.5.0). Closing the store rolls that back; the next call
        opens fresh connections. An in-memory store is kept: closing it loses its data.
        """
        if self.config.in_memory or self._loop.closed:
            return
        try:
            self._loop.run(self._slot.close_store())
        except (AskarError, LoopClosedError):
            self._slot.store = None

    def _error(
        self, exc: AskarError, action: str, spec: KindSpec | None = None, key: str | None = None
    ) -> StorageError:
        return translate(
            exc,
            self._secrets,
            action=action if spec is None else f"{action} {spec.name}",
            store=self.config.masked_uri,
            kind=spec.name if spec else None,
            key=key,
        )

    async def _write_retrying(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run a transaction, again if SQLite reports the database busy."""
        for attempt in range(BUSY_RETRIES):
            try:
                return await work()
            except AskarError as exc:
                if not is_code(exc, Code.BUSY) or attempt == BUSY_RETRIES - 1:
                    raise
            await asyncio.sleep(BUSY_BACKOFF * (attempt + 1))
        raise AssertionError("unreachable")

    # --- single records --------------------------------------------------------------
    def create(self, spec: KindSpec, record: Any) -> Any:
        key = spec.key_of(record)
        value, tags = layout.encode(spec, record)

        async def insert(store: Store) -> None:
            async with store.session(self._profile) as session:
                await session.insert(spec.category, key, value, tags)

        self._call("create", insert, spec, key)
        return layout.decode(spec, value)

    def get(self, spec: KindSpec, key: str) -> Any | None:
        async def fetch(store: Store) -> Any:
            return await self._slot.readers.run(
                store, self._profile, lambda session: session.fetch(spec.category, key)
            )

        entry = self._call("get", fetch, spec)
        return None if entry is None else layout.decode(spec, entry.raw_value)

    def update(
        self,
        spec: KindSpec,
        key: str,
        changes: dict[str, Any],
        now: datetime,
        expected_version: int | None = None,
    ) -> Any | None:
        async def read_modify_write(store: Store) -> bytes | None:
            async with store.transaction(self._profile) as txn:
                entry = await txn.fetch(spec.category, key, for_update=True)
                if entry is None:
                    return None
                data = layout.decode_dict(entry.raw_value)
                _check_version(spec, key, expected_version, data["record_version"])
                data.update(changes)
                if spec.timestamps:
                    data["updated_at"] = format_timestamp(now)
                data["record_version"] += 1
                value, tags = layout.encode_dict(spec, data)
                await txn.replace(spec.category, key, value, tags)
                await txn.commit()
                return value

        stored = self._call(
            "update", lambda s: self._write_retrying(lambda: read_modify_write(s)), spec, key
        )
        return None if stored is None else layout.decode(spec, stored)

    def upsert(self, spec: KindSpec, record: Any, expected_version: int | None = None) -> Any:
        key = spec.key_of(record)
        fresh = codec.record_to_dict(spec, record)

        async def create_or_replace(store: Store) -> bytes:
            async with store.transaction(self._profile) as txn:
                entry = await txn.fetch(spec.category, key, for_update=True)
                if entry is None:
                    if expected_version not in (None, 0):
                        raise ConflictError(spec.name, key, expected_version, None)
                    data = fresh
                    value, tags = layout.encode_dict(spec, data)
                    await txn.insert(spec.category, key, value, tags)
                else:
                    current = layout.decode_dict(entry.raw_value)
                    _check_version(spec, key, expected_version, current["record_version"])
                    data = {**fresh, "record_version": current["record_version"] + 1}
                    if spec.timestamps:
                        data["created_at"] = current["created_at"]
                    value, tags = layout.encode_dict(spec, data)
                    await txn.replace(spec.category, key, value, tags)
                await txn.commit()
                return value

        async def with_retry(store: Store) -> bytes:
            try:
                return await self._write_retrying(lambda: create_or_replace(store))
            except AskarError as exc:
                # Another writer created the key between our fetch and insert.
                if not is_code(exc, Code.DUPLICATE):
                    raise
                if expected_version == 0:
                    raise ConflictError(spec.name, key, 0, None) from None
                return await self._write_retrying(lambda: create_or_replace(store))

        return layout.decode(spec, self._call("upsert", with_retry, spec))

    def delete(self, spec: KindSpec, key: str) -> bool:
        async def remove(store: Store) -> bool:
            async with store.session(self._profile) as session:
                try:
                    await session.remove(spec.category, key)
                except AskarError as exc:
                    if is_code(exc, Code.NOT_FOUND):
                        return False
                    raise
                return True

        return self._call("delete", remove, spec)

    # --- many records ----------------------------------------------------------------
    def list(self, spec: KindSpec, filters: Filters, limit: int | None, offset: int) -> list[Any]:
        if limit == 0 or _matches_nothing(filters):
            return []
        wql = layout.tag_filter(filters)

        async def page(store: Store) -> Sequence[Any]:
            if offset == 0:  # one round trip; fetch_all has no offset
                async with store.session(self._profile) as session:
                    return await session.fetch_all(spec.category, wql, limit, order_by="id")
            scan = store.scan(
                spec.category, wql, offset, limit, profile=self._profile, order_by="id"
            )
            try:
                return await scan.fetch_all()
            finally:
                free_scan(scan)

        entries = self._call("list", page, spec)
        return [layout.decode(spec, entry.raw_value) for entry in entries]

    def count(self, spec: KindSpec, filters: Filters) -> int:
        if _matches_nothing(filters):
            return 0
        wql = layout.tag_filter(filters)
        return self._call("count", lambda s: self._count(s, spec.category, wql), spec)

    async def _count(self, store: Store, category: str, wql: layout.Wql | None) -> int:
        return await self._slot.readers.run(
            store, self._profile, lambda session: session.count(category, wql)
        )

    def stream(self, spec: KindSpec, filters: Filters, batch_size: int) -> Iterator[Any]:
        if _matches_nothing(filters):
            return iter(())
        return self._stream(spec, layout.tag_filter(filters), batch_size)

    def _stream(self, spec: KindSpec, wql: layout.Wql | None, batch_size: int) -> Iterator[Any]:
        """Pull `batch_size` entries per loop call from one Askar scan; the scan (and its
        pool connection) is freed when the generator finishes, fails or is closed."""
        scan = self._store().scan(spec.category, wql, profile=self._profile, order_by="id")
        self._slot.track(scan)
        try:
            while True:
                batch = self._call(
                    "stream",
                    lambda _s: self._next_batch(scan, batch_size),
                    spec,
                    rerun_if_lost=False,
                )
                for entry in batch:
                    yield layout.decode(spec, entry.raw_value)
                if len(batch) < batch_size:
                    return
        finally:
            self._loop.call_soon(lambda: self._slot.release(scan))

    async def _next_batch(self, scan: Any, size: int) -> list[Any]:
        if scan.handle is None:  # about to take a pool connection: give back idle ones
            await self._slot.readers.close()
        batch: list[Any] = []
        async for entry in scan:
            batch.append(entry)
            if len(batch) >= size:
                break
        return batch

    def bulk_upsert(self, spec: KindSpec, records: Sequence[Any]) -> int:
        items = [(spec.key_of(rec), *layout.encode(spec, rec)) for rec in records]
        if not items:
            return 0

        async def write_all(store: Store) -> None:
            async with store.transaction(self._profile) as txn:
                for key, value, tags in items:
                    try:
                        await txn.insert(spec.category, key, value, tags)
                    except AskarError as exc:
                        if not is_code(exc, Code.DUPLICATE):
                            raise
                        # replace keeps the row id, so an existing key keeps its place
                        await txn.replace(spec.category, key, value, tags)
                await txn.commit()

        self._call("bulk upsert", lambda s: self._write_retrying(lambda: write_all(s)), spec)
        return len(items)


def _check_version(spec: KindSpec, key: str, expected: int | None, actual: int) -> None:
    if expected is not None and expected != actual:
        raise ConflictError(spec.name, key, expected, actual)


def _matches_nothing(filters: Filters) -> bool:
    return any(len(values) == 0 for values in filters.values())
