"""Every operation on an Askar store, written once, as coroutines: both faces run them.

An operation is an `Op`: the coroutine to run against the open store (`work`), and what
turns its result into the caller's answer (`finish`, e.g. decoding an entry). The sync
face (`backend.AskarBackend`) runs `work` on its private loop thread and `finish` in the
calling thread; the async face (`async_backend.AsyncAskarBackend`) awaits `work` in the
caller's own event loop. Each face owns an `AskarOperations` state of its own (store,
idle sessions, open scans), because aries-askar objects belong to the loop that opened
them. `Reruns` is the one policy both faces follow when a call fails without effect.

Order: Askar row ids grow with each insert and `replace` keeps them, so
`order_by="id"` is creation order exactly as the SQL backend's ordering contract needs.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, ClassVar, Generic, TypeVar

from aries_askar import AskarError, Store  # type: ignore[import-untyped]

from storage_core import codec
from storage_core.codec import format_timestamp
from storage_core.errors import ConflictError, StorageError, StorageIOError
from storage_core.interface import Capability
from storage_core.kinds import KindSpec
from storage_core.validation import Filters
from webvh_storage_askar import layout
from webvh_storage_askar.config import AskarConfig
from webvh_storage_askar.errors import Code, is_code, is_lost, is_stale_connection, translate
from webvh_storage_askar.lifecycle import open_store
from webvh_storage_askar.scans import free_scan
from webvh_storage_askar.sessions import IdleSessions
from webvh_storage_askar.streams import OpenScans, StreamCursor
from webvh_storage_askar.unique import refuse_clash

log = logging.getLogger(__name__)

T = TypeVar("T")
V = TypeVar("V")
#: Transactions on one SQLite file can collide (BUSY); such a write is retried.
BUSY_RETRIES = 20
BUSY_BACKOFF = 0.005
#: Re-runs of an operation that failed without effect: its error was lost by the Askar
#: wrapper (errors.is_lost) or it met a dead pooled connection (errors.is_stale_connection;
#: a pool can hold several, each fails at once).
RERUNS = 5
FAST_FAILURE_SECONDS = 0.5
HEALTH_CATEGORY = "webvh:log_entry"
Work = Callable[[Store], Coroutine[Any, Any, T]]


class StoreSlot:
    """The open store and its live scans. Shared with the sync face's finalizer, which
    must not reference the backend itself."""

    def __init__(self) -> None:
        self.store: Store | None = None
        self.scans: set[Any] = set()
        self.scans_lock = threading.Lock()
        self.open_lock: asyncio.Lock | None = None
        self.streams = OpenScans()
        self.readers = IdleSessions(may_keep=lambda: not self.scans and not self.streams.any_open())

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
        self.streams.close_all()
        await self.readers.close()
        store, self.store = self.store, None
        if store is not None:
            await store.close()


@dataclass(frozen=True, slots=True)
class Op(Generic[T, V]):
    """One operation: `work(store)` on the store's loop, then `finish(result)`."""

    action: str
    work: Work[T]
    finish: Callable[[T], V]
    spec: KindSpec[Any] | None = None
    key: str | None = None
    rerun_if_lost: bool = True


def _same(value: T) -> T:
    return value


class Reruns:
    """Whether a failed attempt runs again. Every operation here is all-or-nothing, so
    a failure that had no effect (lost error, dead pooled connection) is re-run, except
    scan steps, which cannot be repeated.

    A dead pooled connection fails at once and is re-run freely. A slow failure means an
    outage: re-running it would multiply the caller's wait by the connect timeout, so
    only a lost error (which says nothing) gets one more slow try to find out."""

    def __init__(self, rerun_if_lost: bool) -> None:
        self.attempts = 1 + (RERUNS if rerun_if_lost else 0)
        self._slow_reruns = 0

    def again(self, exc: AskarError, started: float, attempt: int, action: str) -> bool:
        failed_fast = time.monotonic() - started < FAST_FAILURE_SECONDS
        retry = is_lost(exc) or (failed_fast and is_stale_connection(exc))
        if retry and not failed_fast:
            self._slow_reruns += 1
            retry = self._slow_reruns <= 1
        if retry and attempt < self.attempts - 1:
            # the code only: the message may name the store
            log.warning("askar %s: connection lost (%s); running it again", action, exc.code)
            return True
        return False


class AskarOperations:
    """One face's store state and every operation on it."""

    capabilities: ClassVar[frozenset[str]] = frozenset({Capability.PERSISTENT, Capability.ARCHIVE})

    def __init__(self, config: AskarConfig) -> None:
        self.config = config
        self._profile = config.profile
        if config.in_memory:  # each instance has its own store, lost on close
            self.capabilities = type(self).capabilities - {Capability.PERSISTENT}  # type: ignore[misc]
        self._slot = StoreSlot()
        self._refused: set[tuple[str, str]] = set()  # the suite's test hook

    # --- facts -----------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {
            "backend": "askar",
            "url": self.config.masked_uri,
            "key_method": self.config.key_method,
            "profile": self.config.profile,
        }

    @property
    def secrets(self) -> Sequence[str]:
        """The pass key and the URI's password (see AskarConfig.secrets)."""
        return self.config.secrets

    def _refuse(self, spec: KindSpec[Any], key: str) -> bool:
        """The suite's hook (see StorageBackend): a bulk write of this record now fails
        inside the Askar transaction, which must then leave nothing written."""
        self._refused.add((spec.category, layout.entry_name(key)))
        return True

    # --- opening (on the face's loop) ------------------------------------------------------
    async def _reopen(self, recreate: bool) -> None:
        async with self._open_lock():
            if not recreate and self._slot.store is not None:
                return  # already open: keep it (an in-memory store would lose its data)
            await self._slot.close_store()
            self._slot.store = await open_store(Store, self.config, recreate=recreate)
            self._refused.clear()

    async def _open_if_needed(self) -> Store:
        async with self._open_lock():
            if self._slot.store is None:
                self._slot.store = await open_store(Store, self.config)
            return self._slot.store

    def _open_lock(self) -> asyncio.Lock:
        # Created lazily on the face's loop, where it is always used.
        if self._slot.open_lock is None:
            self._slot.open_lock = asyncio.Lock()
        return self._slot.open_lock

    def _error(
        self,
        exc: AskarError,
        action: str,
        spec: KindSpec[Any] | None = None,
        key: str | None = None,
    ) -> StorageError:
        return translate(
            exc,
            self.secrets,
            action=action if spec is None else f"{action} {spec.name}",
            store=self.config.masked_uri,
            kind=spec.name if spec else None,
            key=key,
        )

    def _keeps_store_after(self, error: StorageError) -> bool:
        """Whether the store stays open after `error`. Not after the disk refused a
        write (full, read-only, I/O error): a COMMIT that failed that way can leave a
        pooled SQLite connection inside its transaction; later writes would join it,
        report success, and vanish on close (seen with aries-askar 0.5.0). Closing the
        store rolls that back; the next call opens fresh connections. An in-memory store
        is kept: closing it loses its data."""
        return not isinstance(error, StorageIOError) or self.config.in_memory

    async def _write_retrying(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run a transaction, again if SQLite reports the database busy."""
        for attempt in range(BUSY_RETRIES):
            try:
                return await work()
            except AskarError as exc:
                if not is_code(exc, Code.BUSY) or attempt == BUSY_RETRIES - 1:
                    raise
                log.warning("askar write: database busy; retrying (attempt %d)", attempt + 2)
            await asyncio.sleep(BUSY_BACKOFF * (attempt + 1))
        raise AssertionError("unreachable")

    # --- the operations ----------------------------------------------------------------
    def _health_op(self) -> Op[int, int]:
        return Op("health check", lambda s: self._count(s, HEALTH_CATEGORY, None), _same)

    def _create_op(self, spec: KindSpec[Any], record: Any) -> Op[None, Any]:
        key = spec.key_of(record)
        name = layout.entry_name(key)
        value, tags = layout.encode(spec, record)

        async def insert(store: Store) -> None:
            if spec.unique:  # checked and written in one transaction
                async with store.transaction(self._profile) as txn:
                    await refuse_clash(txn, spec, name, tags)
                    await txn.insert(spec.category, name, value, tags)
                    await txn.commit()
                return
            async with store.session(self._profile) as session:
                await session.insert(spec.category, name, value, tags)

        return Op("create", insert, lambda _: layout.decode(spec, value), spec, key)

    def _get_op(self, spec: KindSpec[Any], key: str) -> Op[Any, Any]:
        name = layout.entry_name(key)

        async def fetch(store: Store) -> Any:
            return await self._slot.readers.run(
                store, self._profile, lambda session: session.fetch(spec.category, name)
            )

        return Op(
            "get",
            fetch,
            lambda entry: None if entry is None else layout.decode(spec, entry.raw_value),
            spec,
        )

    def _update_op(
        self,
        spec: KindSpec[Any],
        key: str,
        changes: dict[str, Any],
        now: datetime,
        expected_version: int | None,
    ) -> Op[bytes | None, Any]:
        name = layout.entry_name(key)

        async def read_modify_write(store: Store) -> bytes | None:
            async with store.transaction(self._profile) as txn:
                entry = await txn.fetch(spec.category, name, for_update=True)
                if entry is None:
                    return None
                data = layout.decode_dict(entry.raw_value)
                check_version(spec, key, expected_version, data["record_version"])
                data.update(changes)
                if spec.timestamps:
                    data["updated_at"] = format_timestamp(now)
                data["record_version"] += 1
                value, tags = layout.encode_dict(spec, data)
                await refuse_clash(txn, spec, name, tags)
                await txn.replace(spec.category, name, value, tags)
                await txn.commit()
                return value

        return Op(
            "update",
            lambda s: self._write_retrying(lambda: read_modify_write(s)),
            lambda stored: None if stored is None else layout.decode(spec, stored),
            spec,
            key,
        )

    def _upsert_op(
        self, spec: KindSpec[Any], record: Any, expected_version: int | None
    ) -> Op[bytes, Any]:
        key = spec.key_of(record)
        name = layout.entry_name(key)
        fresh = codec.record_to_dict(spec, record)

        async def create_or_replace(store: Store) -> bytes:
            async with store.transaction(self._profile) as txn:
                entry = await txn.fetch(spec.category, name, for_update=True)
                if entry is None:
                    if expected_version not in (None, 0):
                        raise ConflictError(spec.name, key, expected_version, None)
                    data = fresh
                    value, tags = layout.encode_dict(spec, data)
                    await refuse_clash(txn, spec, name, tags)
                    await txn.insert(spec.category, name, value, tags)
                else:
                    current = layout.decode_dict(entry.raw_value)
                    check_version(spec, key, expected_version, current["record_version"])
                    data = {**fresh, "record_version": current["record_version"] + 1}
                    if spec.timestamps:
                        data["created_at"] = current["created_at"]
                    value, tags = layout.encode_dict(spec, data)
                    await refuse_clash(txn, spec, name, tags)
                    await txn.replace(spec.category, name, value, tags)
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

        return Op("upsert", with_retry, lambda stored: layout.decode(spec, stored), spec)

    def _delete_op(self, spec: KindSpec[Any], key: str) -> Op[bool, bool]:
        async def remove(store: Store) -> bool:
            async with store.session(self._profile) as session:
                try:
                    await session.remove(spec.category, layout.entry_name(key))
                except AskarError as exc:
                    if is_code(exc, Code.NOT_FOUND):
                        return False
                    raise
                return True

        return Op("delete", remove, _same, spec)

    def _list_op(
        self, spec: KindSpec[Any], filters: Filters, limit: int | None, offset: int
    ) -> Op[builtins.list[Any], builtins.list[Any]]:
        wql = layout.tag_filter(filters)
        return Op(
            "list",
            lambda s: self._read_page(s, spec.category, wql, offset, limit),
            lambda entries: [layout.decode(spec, entry.raw_value) for entry in entries],
            spec,
        )

    async def _read_page(
        self, store: Store, category: str, wql: layout.Wql | None, offset: int, limit: int | None
    ) -> builtins.list[Any]:
        """Entries offset.. offset+limit in insertion order; no connection kept after."""
        if limit == 0:
            return []
        if offset == 0:  # one round trip; fetch_all has no offset
            async with store.session(self._profile) as session:
                return builtins.list(await session.fetch_all(category, wql, limit, order_by="id"))
        scan = store.scan(category, wql, offset, limit, profile=self._profile, order_by="id")
        try:
            return builtins.list(await scan.fetch_all())
        finally:
            free_scan(scan)

    def _count_op(self, spec: KindSpec[Any], filters: Filters) -> Op[int, int]:
        wql = layout.tag_filter(filters)
        return Op("count", lambda s: self._count(s, spec.category, wql), _same, spec)

    async def _count(self, store: Store, category: str, wql: layout.Wql | None) -> int:
        count: int = await self._slot.readers.run(
            store, self._profile, lambda session: session.count(category, wql)
        )
        return count

    def _page_op(
        self, spec: KindSpec[Any], cursor: StreamCursor, batch_size: int
    ) -> Op[builtins.list[Any], builtins.list[Any]]:
        """The next page of a stream (streams.py): at most MAX_OPEN_SCANS scans stay open
        between pages, so streams dropped anywhere, even in reference cycles the garbage
        collector reaches late, cannot use up the pool. A page that fails on a dead
        pooled connection is read again from where the stream stood."""
        work = partial(
            self._slot.streams.next_page,
            profile=self._profile,
            cursor=cursor,
            size=batch_size,
            kind=spec.name,
        )
        return Op("stream", work, _same, spec)

    def _bulk_op(self, spec: KindSpec[Any], records: Sequence[Any]) -> Op[None, int]:
        items = [
            (layout.entry_name(spec.key_of(rec)), *layout.encode(spec, rec)) for rec in records
        ]
        return Op(
            "bulk upsert",
            lambda s: self._write_retrying(lambda: self._write_all(s, spec.category, items, spec)),
            lambda _: len(items),
            spec,
        )

    async def _write_all(
        self,
        store: Store,
        category: str,
        items: Sequence[tuple[str, bytes, dict[str, str]]],
        spec: KindSpec[Any] | None = None,
    ) -> None:
        """Insert or replace every (name, value, tags) in one transaction."""
        if not items:
            return
        async with store.transaction(self._profile) as txn:
            for name, value, tags in items:
                if (category, name) in self._refused:  # the suite's test hook
                    raise StorageIOError(f"the store refused to write {category} {name!r}")
                if spec is not None and spec.unique:
                    await refuse_clash(txn, spec, name, tags)
                try:
                    await txn.insert(category, name, value, tags)
                except AskarError as exc:
                    if not is_code(exc, Code.DUPLICATE):
                        raise
                    # replace keeps the row id, so an existing key keeps its place
                    await txn.replace(category, name, value, tags)
            await txn.commit()


def check_version(spec: KindSpec[Any], key: str, expected: int | None, actual: int) -> None:
    if expected is not None and expected != actual:
        raise ConflictError(spec.name, key, expected, actual)
