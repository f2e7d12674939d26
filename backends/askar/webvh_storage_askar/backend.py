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
import builtins
import logging
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from datetime import datetime
from functools import partial
from operator import itemgetter
from typing import Any, ClassVar, Generic, TypeVar

from aries_askar import AskarError, Store  # type: ignore[import-untyped]

from storage_core import codec
from storage_core.codec import format_timestamp
from storage_core.config import Settings
from storage_core.errors import (
    BackendUnavailableError,
    ConflictError,
    StorageError,
    StorageIOError,
)
from storage_core.interface import ArchivedEntry, ArchiveStore, Capability, StorageBackend
from storage_core.kinds import KindSpec
from storage_core.loop import BackgroundLoop, LoopClosedError
from storage_core.validation import Filters
from webvh_storage_askar import layout
from webvh_storage_askar.config import AskarConfig
from webvh_storage_askar.errors import Code, is_code, is_lost, is_stale_connection, translate
from webvh_storage_askar.lifecycle import open_store
from webvh_storage_askar.scans import free_scan
from webvh_storage_askar.sessions import IdleSessions
from webvh_storage_askar.streams import OpenScans, StreamCursor

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
#: archive_stream orders this many keys per batch of values with one scan.
ARCHIVE_KEY_WINDOW = 64


class _StoreSlot:
    """The open store and its live scans. Shared with the finalizer, which must not
    reference the backend itself."""

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


def _shutdown(loop: BackgroundLoop, slot: _StoreSlot) -> None:
    loop.close(before_stop=slot.close_store)


class AskarBackend(StorageBackend, ArchiveStore):
    capabilities: ClassVar[frozenset[str]] = frozenset({Capability.PERSISTENT, Capability.ARCHIVE})

    def __init__(self, settings: Settings) -> None:
        self.config = AskarConfig.from_settings(settings)
        self._profile = self.config.profile
        if self.config.in_memory:  # each instance has its own store, lost on close
            self.capabilities = type(self).capabilities - {Capability.PERSISTENT}  # type: ignore[misc]
        self._slot = _StoreSlot()
        self._refused: set[tuple[str, str]] = set()  # the suite's test hook
        self._loop = BackgroundLoop(name="askar-backend")
        self._finalizer = weakref.finalize(self, _shutdown, self._loop, self._slot)

    @staticmethod
    def absent_database(settings: Settings) -> str | None:
        """The SQLite file the settings name when it does not exist (read-only tools ask
        before opening, which would create it); None for existing files and servers."""
        path = AskarConfig.from_settings(settings).sqlite_path
        return None if path is None or path.exists() else str(path)

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
            self._slot.store = await open_store(Store, self.config, recreate=recreate)
            self._refused.clear()

    async def _open_if_needed(self) -> Store:
        async with self._open_lock():
            if self._slot.store is None:
                self._slot.store = await open_store(Store, self.config)
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

    def refuse_writes_for_testing(self, spec: KindSpec[Any], key: str) -> bool:
        """The suite's hook (see StorageBackend): a bulk write of this record now fails
        inside the Askar transaction, which must then leave nothing written."""
        self._refused.add((spec.category, key))
        return True

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
        work: Callable[[Store], Coroutine[Any, Any, T]],
        spec: KindSpec[Any] | None = None,
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
                    log.warning(  # the code only: the message may name the store
                        "askar %s: connection lost (%s); running it again", action, exc.code
                    )
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

    # --- single records --------------------------------------------------------------
    def create(self, spec: KindSpec[Any], record: Any) -> Any:
        key = spec.key_of(record)
        value, tags = layout.encode(spec, record)

        async def insert(store: Store) -> None:
            async with store.session(self._profile) as session:
                await session.insert(spec.category, key, value, tags)

        self._call("create", insert, spec, key)
        return layout.decode(spec, value)

    def get(self, spec: KindSpec[Any], key: str) -> Any | None:
        async def fetch(store: Store) -> Any:
            return await self._slot.readers.run(
                store, self._profile, lambda session: session.fetch(spec.category, key)
            )

        entry = self._call("get", fetch, spec)
        return None if entry is None else layout.decode(spec, entry.raw_value)

    def update(
        self,
        spec: KindSpec[Any],
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

    def upsert(self, spec: KindSpec[Any], record: Any, expected_version: int | None = None) -> Any:
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

    def delete(self, spec: KindSpec[Any], key: str) -> bool:
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
    def list(
        self, spec: KindSpec[Any], filters: Filters, limit: int | None, offset: int
    ) -> builtins.list[Any]:
        if limit == 0:
            return []
        wql = layout.tag_filter(filters)
        entries = self._call(
            "list", lambda s: self._read_page(s, spec.category, wql, offset, limit), spec
        )
        return [layout.decode(spec, entry.raw_value) for entry in entries]

    async def _read_page(
        self, store: Store, category: str, wql: layout.Wql | None, offset: int, limit: int | None
    ) -> builtins.list[Any]:
        """Entries offset.. offset+limit in insertion order; no connection kept after."""
        if offset == 0:  # one round trip; fetch_all has no offset
            async with store.session(self._profile) as session:
                return builtins.list(await session.fetch_all(category, wql, limit, order_by="id"))
        scan = store.scan(category, wql, offset, limit, profile=self._profile, order_by="id")
        try:
            return builtins.list(await scan.fetch_all())
        finally:
            free_scan(scan)

    def count(self, spec: KindSpec[Any], filters: Filters) -> int:
        wql = layout.tag_filter(filters)
        return self._call("count", lambda s: self._count(s, spec.category, wql), spec)

    async def _count(self, store: Store, category: str, wql: layout.Wql | None) -> int:
        count: int = await self._slot.readers.run(
            store, self._profile, lambda session: session.count(category, wql)
        )
        return count

    def stream(self, spec: KindSpec[Any], filters: Filters, batch_size: int) -> Iterator[Any]:
        return self._stream(spec, layout.tag_filter(filters), batch_size)

    def _stream(
        self, spec: KindSpec[Any], wql: layout.Wql | None, batch_size: int
    ) -> Iterator[Any]:
        """Pages of `batch_size` entries from the stream's scan (streams.py): at most
        MAX_OPEN_SCANS scans stay open between pages, so streams dropped anywhere, even in
        reference cycles the garbage collector reaches late, cannot use up the pool. A page
        that fails on a dead pooled connection is read again from where the stream stood."""
        cursor = StreamCursor(spec.category, wql)
        streams = self._slot.streams
        try:
            while True:
                page = self._call(
                    "stream",
                    partial(
                        streams.next_page,
                        profile=self._profile,
                        cursor=cursor,
                        size=batch_size,
                        kind=spec.name,
                    ),
                    spec,
                )
                for entry in page:
                    yield layout.decode(spec, entry.raw_value)
                if len(page) < batch_size:
                    return
        finally:
            self._loop.call_soon(lambda: streams.discard(cursor))

    def bulk_upsert(self, spec: KindSpec[Any], records: Sequence[Any]) -> int:
        items = [(spec.key_of(rec), *layout.encode(spec, rec)) for rec in records]
        if not items:
            return 0

        self._call(
            "bulk upsert",
            lambda s: self._write_retrying(lambda: self._write_all(s, spec.category, items)),
            spec,
        )
        return len(items)

    async def _write_all(
        self, store: Store, category: str, items: Sequence[tuple[str, bytes, dict[str, str]]]
    ) -> None:
        """Insert or replace every (name, value, tags) in one transaction."""
        async with store.transaction(self._profile) as txn:
            for name, value, tags in items:
                if (category, name) in self._refused:  # the suite's test hook
                    raise StorageIOError(f"the store refused to write {category} {name!r}")
                try:
                    await txn.insert(category, name, value, tags)
                except AskarError as exc:
                    if not is_code(exc, Code.DUPLICATE):
                        raise
                    # replace keeps the row id, so an existing key keeps its place
                    await txn.replace(category, name, value, tags)
            await txn.commit()

    # --- archive (Capability.ARCHIVE: the migration's verbatim entries) -----------------
    def archive_upsert(self, entries: Sequence[ArchivedEntry]) -> int:
        items = [layout.encode_archived(entry) for entry in entries]
        if items:
            self._call(
                "archiving entries",
                lambda s: self._write_retrying(
                    lambda: self._write_all(s, layout.ARCHIVE_CATEGORY, items)
                ),
            )
        return len(items)

    def archive_get(self, category: str, names: Sequence[str]) -> dict[str, ArchivedEntry]:
        found = self._fetch_archived([(category, name) for name in names])
        return {entry.name: entry for entry in found}

    def archive_stream(
        self, category: str | None = None, batch_size: int = 500
    ) -> Iterator[ArchivedEntry]:
        """Askar scans order by row id only, and names and tags are encrypted (no range
        filter), so the order is made here. One scan keeps the smallest
        ARCHIVE_KEY_WINDOW * batch_size keys after the last one served, and the values
        of the first batch_size of them; the values of the rest are fetched by name, a
        batch at a time. Memory stays bounded by batch_size (small keys, one batch of
        values); an archive larger than the window costs one more scan per window, and
        one no larger than batch_size is a single scan. Nothing is held between calls,
        so closing the iterator early has nothing to release."""
        wql = None if category is None else layout.archive_tags(category)
        window = batch_size * ARCHIVE_KEY_WINDOW
        after: tuple[str, str] | None = None
        while True:
            keys, first = self._call(
                "reading the archive",
                partial(self._archive_window, wql=wql, after=after, size=window, values=batch_size),
            )
            yield from (layout.decode_archived(raw) for raw in first)
            for start in range(batch_size, len(keys), batch_size):
                yield from self._fetch_archived(keys[start : start + batch_size])
            if len(keys) < window:
                return
            after = keys[-1]

    async def _archive_window(
        self,
        store: Store,
        wql: layout.Wql | None,
        after: tuple[str, str] | None,
        size: int,
        values: int,
    ) -> tuple[builtins.list[tuple[str, str]], builtins.list[bytes]]:
        """The `size` smallest keys after `after` in order, and the values of the first
        `values` of them."""
        await self._slot.readers.close()  # the scan takes a pool connection: free idle ones
        scan = store.scan(layout.ARCHIVE_CATEGORY, wql, profile=self._profile)
        self._slot.track(scan)
        keys: _Smallest[None] = _Smallest(size)
        first: _Smallest[bytes] = _Smallest(values)
        try:
            async for entry in scan:
                key = layout.archive_key(entry.name)
                if after is not None and key <= after:
                    continue
                if keys.wants(key):
                    keys.add(key, None)
                if first.wants(key):
                    first.add(key, bytes(entry.raw_value))
        finally:
            self._slot.release(scan)
        return [key for key, _ in keys.in_order()], [raw for _, raw in first.in_order()]

    def _fetch_archived(self, keys: Sequence[tuple[str, str]]) -> builtins.list[ArchivedEntry]:
        """The archived entries with these (category, name) keys, in that order, missing
        ones left out. One fetch by entry name each: an index lookup, where a tag filter
        with many values can take seconds on PostgreSQL."""

        async def fetch(session: Any) -> builtins.list[Any]:
            found: builtins.list[Any] = []
            for category, name in keys:
                entry = await session.fetch(
                    layout.ARCHIVE_CATEGORY, layout.archive_name(category, name)
                )
                if entry is not None:
                    found.append(entry)
            return found

        if not keys:
            return []
        entries = self._call(
            "reading the archive", lambda s: self._slot.readers.run(s, self._profile, fetch)
        )
        return [layout.decode_archived(entry.raw_value) for entry in entries]

    def archive_count(self, category: str | None = None) -> int:
        wql = None if category is None else layout.archive_tags(category)
        return self._call(
            "counting the archive", lambda s: self._count(s, layout.ARCHIVE_CATEGORY, wql)
        )


def _check_version(spec: KindSpec[Any], key: str, expected: int | None, actual: int) -> None:
    if expected is not None and expected != actual:
        raise ConflictError(spec.name, key, expected, actual)


class _Smallest(Generic[V]):
    """The `size` (key, value) pairs with the smallest keys among those added, holding
    at most 2 * size: sorted and cut back to `size` whenever that fills up."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._pairs: list[tuple[tuple[str, str], V]] = []
        self._largest_kept: tuple[str, str] | None = None

    def wants(self, key: tuple[str, str]) -> bool:
        return self._largest_kept is None or key < self._largest_kept

    def add(self, key: tuple[str, str], value: V) -> None:
        self._pairs.append((key, value))
        if len(self._pairs) >= 2 * self.size:
            self._cut()

    def in_order(self) -> list[tuple[tuple[str, str], V]]:
        self._cut()
        return self._pairs

    def _cut(self) -> None:
        self._pairs.sort(key=itemgetter(0))
        del self._pairs[self.size :]
        if len(self._pairs) == self.size:
            self._largest_kept = self._pairs[-1][0]
