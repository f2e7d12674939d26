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
Askar scans cannot sort by a tag, so a list or stream with a caller's `order_by` reads
every matching entry (in row-id order), sorts them in memory with
`storage_core.ordering.sort_records` (the reference order) and serves the page: at most
`max_sorted` matching entries (MAX_SORTED_IN_MEMORY); beyond that the call is refused
with UnsupportedOperationError (narrow it with a filter), never answered partly.

Transactions: inside `transaction()` (Capability.TRANSACTIONS) every operation of the
caller (thread or task: a context variable carries the block) runs on the block's one
Askar transaction session instead of a session or transaction of its own, and is never
re-run (a lost connection loses the transaction). Askar sessions have no offset, so a
list inside a block fetches offset + limit entries and a stream re-reads what it served
for each page: fine for a block's few records, slow for big pages.
"""

from __future__ import annotations

import asyncio
import builtins
import contextvars
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
from storage_core.errors import (
    ConflictError,
    StorageError,
    StorageIOError,
    UnsupportedOperationError,
)
from storage_core.interface import Capability
from storage_core.kinds import KindSpec
from storage_core.ordering import OrderBy, sort_records
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
#: Most matching entries a list or stream with `order_by` sorts in memory (see above).
MAX_SORTED_IN_MEMORY = 10_000
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
        self.blocks = 0  # open transaction() blocks: no idle session is kept meanwhile
        self.readers = IdleSessions(
            may_keep=lambda: not self.blocks and not self.scans and not self.streams.any_open()
        )

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

    capabilities: ClassVar[frozenset[str]] = frozenset(
        {Capability.PERSISTENT, Capability.ARCHIVE, Capability.TRANSACTIONS}
    )
    #: Most matching entries an `order_by` call sorts in memory (per store: tests lower it).
    max_sorted: int = MAX_SORTED_IN_MEMORY

    def __init__(self, config: AskarConfig) -> None:
        self.config = config
        self._profile = config.profile
        if config.in_memory:  # each instance has its own store, lost on close
            self.capabilities = type(self).capabilities - {Capability.PERSISTENT}  # type: ignore[misc]
        self._slot = StoreSlot()
        self._refused: set[tuple[str, str]] = set()  # the suite's test hook
        #: The caller's open transaction() block (per thread / async task), if any.
        self._block: contextvars.ContextVar[AskarBlock | None] = contextvars.ContextVar(
            "webvh_storage_askar_transaction", default=None
        )

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

    # --- transaction blocks ---------------------------------------------------------------
    def _begin_op(self) -> Op[Any, AskarBlock]:
        async def begin(store: Store) -> Any:
            # An idle read session pins a connection and, on SQLite, reads through the
            # block's table locks: others must open their own while a block is open.
            await self._slot.readers.close()
            session = await store.transaction(self._profile)
            self._slot.blocks += 1
            return session

        return Op("starting a transaction", begin, AskarBlock)

    def _end_op(self, block: AskarBlock, commit: bool) -> Op[None, None]:
        async def end(store: Store) -> None:
            try:
                await (block.session.commit() if commit else block.session.rollback())
            finally:
                self._slot.blocks -= 1

        action = "committing a transaction" if commit else "rolling back a transaction"
        return Op(action, end, _same, rerun_if_lost=False)

    # --- the operations ----------------------------------------------------------------
    def _health_op(self) -> Op[int, int]:
        return Op("health check", lambda s: self._count(s, HEALTH_CATEGORY, None), _same)

    def _create_op(self, spec: KindSpec[Any], record: Any) -> Op[None, Any]:
        key = spec.key_of(record)
        name = layout.entry_name(key)
        value, tags = layout.encode(spec, record)
        block = self._block.get()

        async def insert(store: Store) -> None:
            if block is not None:
                if spec.unique:
                    await refuse_clash(block.session, spec, name, tags)
                await block.session.insert(spec.category, name, value, tags)
                return
            if spec.unique:  # checked and written in one transaction
                async with store.transaction(self._profile) as txn:
                    await refuse_clash(txn, spec, name, tags)
                    await txn.insert(spec.category, name, value, tags)
                    await txn.commit()
                return
            async with store.session(self._profile) as session:
                await session.insert(spec.category, name, value, tags)

        return Op("create", insert, lambda _: layout.decode(spec, value), spec, key, block is None)

    def _get_op(self, spec: KindSpec[Any], key: str) -> Op[Any, Any]:
        def decode(entry: Any) -> Any:
            return None if entry is None else layout.decode(spec, entry.raw_value)

        name = layout.entry_name(key)
        block = self._block.get()
        if block is not None:
            session, category = block.session, spec.category
            return Op(
                "get", lambda _: session.fetch(category, name), decode, spec, rerun_if_lost=False
            )
        # The hottest path of all: `work` hands back the reader's coroutine itself rather
        # than wrapping it in one more (benchmarks/bench_async.py, Askar get).
        readers, profile, category = self._slot.readers, self._profile, spec.category
        return Op(
            "get",
            lambda store: readers.run(store, profile, lambda s: s.fetch(category, name)),
            decode,
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

        async def modify(txn: Any) -> bytes | None:
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
            return value

        async def read_modify_write(store: Store) -> bytes | None:
            async with store.transaction(self._profile) as txn:
                value = await modify(txn)
                if value is not None:
                    await txn.commit()
                return value

        block = self._block.get()
        return Op(
            "update",
            (
                (lambda s: self._write_retrying(lambda: read_modify_write(s)))
                if block is None
                else (lambda s: modify(block.session))
            ),
            lambda stored: None if stored is None else layout.decode(spec, stored),
            spec,
            key,
            block is None,
        )

    def _upsert_op(
        self, spec: KindSpec[Any], record: Any, expected_version: int | None
    ) -> Op[bytes, Any]:
        key = spec.key_of(record)
        name = layout.entry_name(key)
        fresh = codec.record_to_dict(spec, record)

        async def put(txn: Any) -> bytes:
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
            return value

        async def create_or_replace(store: Store) -> bytes:
            async with store.transaction(self._profile) as txn:
                value = await put(txn)
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

        block = self._block.get()
        if block is not None:
            return Op(
                "upsert",
                lambda s: put(block.session),
                lambda stored: layout.decode(spec, stored),
                spec,
                rerun_if_lost=False,
            )
        return Op("upsert", with_retry, lambda stored: layout.decode(spec, stored), spec)

    def _delete_op(self, spec: KindSpec[Any], key: str) -> Op[bool, bool]:
        block = self._block.get()
        name = layout.entry_name(key)

        async def remove_from(session: Any) -> bool:
            try:
                await session.remove(spec.category, name)
            except AskarError as exc:
                if is_code(exc, Code.NOT_FOUND):
                    return False
                raise
            return True

        async def remove(store: Store) -> bool:
            if block is not None:
                return await remove_from(block.session)
            async with store.session(self._profile) as session:
                return await remove_from(session)

        return Op("delete", remove, _same, spec, rerun_if_lost=block is None)

    def _list_op(
        self, spec: KindSpec[Any], filters: Filters, limit: int | None, offset: int
    ) -> Op[builtins.list[Any], builtins.list[Any]]:
        wql = layout.tag_filter(filters)
        block = self._block.get()
        return Op(
            "list",
            lambda s: self._read_page(s, spec.category, wql, offset, limit, block),
            lambda entries: [layout.decode(spec, entry.raw_value) for entry in entries],
            spec,
            rerun_if_lost=block is None,
        )

    def _sorted_op(
        self, spec: KindSpec[Any], filters: Filters, order_by: OrderBy
    ) -> Op[builtins.list[Any], builtins.list[Any]]:
        """Every matching record in `order_by` (see the module docstring): read in one
        round trip, decoded and sorted in the calling thread."""
        wql = layout.tag_filter(filters)
        most = self.max_sorted
        block = self._block.get()

        async def read_all(store: Store) -> builtins.list[Any]:
            entries = await self._read_page(store, spec.category, wql, 0, most + 1, block)
            if len(entries) > most:
                raise UnsupportedOperationError(
                    f"askar sorts at most {most} matching {spec.name} records for order_by "
                    "(its scans cannot sort by a tag); add a filter, or drop order_by"
                )
            return entries

        def finish(entries: builtins.list[Any]) -> builtins.list[Any]:
            return sort_records([layout.decode(spec, e.raw_value) for e in entries], order_by)

        return Op("list", read_all, finish, spec, rerun_if_lost=block is None)

    async def _read_page(
        self,
        store: Store,
        category: str,
        wql: layout.Wql | None,
        offset: int,
        limit: int | None,
        block: AskarBlock | None = None,
    ) -> builtins.list[Any]:
        """Entries offset.. offset+limit in insertion order; no connection kept after.
        Inside a block, from its session (which has no offset: the first ones skipped)."""
        if limit == 0:
            return []
        if block is not None:
            end = None if limit is None else offset + limit
            found = await block.session.fetch_all(category, wql, end, order_by="id")
            return builtins.list(found)[offset:]
        if offset == 0:  # one round trip on an idle session; fetch_all has no offset
            entries = await self._slot.readers.run(
                store,
                self._profile,
                lambda session: session.fetch_all(category, wql, limit, order_by="id"),
            )
            return builtins.list(entries)
        scan = store.scan(category, wql, offset, limit, profile=self._profile, order_by="id")
        try:
            return builtins.list(await scan.fetch_all())
        finally:
            free_scan(scan)

    def _count_op(self, spec: KindSpec[Any], filters: Filters) -> Op[int, int]:
        wql = layout.tag_filter(filters)
        block = self._block.get()
        if block is not None:
            return Op(
                "count",
                lambda s: block.session.count(spec.category, wql),
                _same,
                spec,
                rerun_if_lost=False,
            )
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
        block = self._block.get()
        if block is not None:

            async def page_in_block(store: Store) -> builtins.list[Any]:
                served = cursor.served
                found = await block.session.fetch_all(
                    cursor.category, cursor.wql, served + batch_size, order_by="id"
                )
                page = builtins.list(found)[served:]
                cursor.served += len(page)
                return page

            return Op("stream", page_in_block, _same, spec, rerun_if_lost=False)
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
        block = self._block.get()
        if block is not None:
            return Op(
                "bulk upsert",
                lambda s: self._put_all(block.session, spec.category, items, spec),
                lambda _: len(items),
                spec,
                rerun_if_lost=False,
            )
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
            await self._put_all(txn, category, items, spec)
            await txn.commit()

    async def _put_all(
        self,
        txn: Any,
        category: str,
        items: Sequence[tuple[str, bytes, dict[str, str]]],
        spec: KindSpec[Any] | None = None,
    ) -> None:
        """Insert or replace every (name, value, tags) in the transaction `txn`."""
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


class AskarBlock:
    """One transaction() block: its open Askar transaction session."""

    __slots__ = ("session",)

    def __init__(self, session: Any) -> None:
        self.session = session


def check_version(spec: KindSpec[Any], key: str, expected: int | None, actual: int) -> None:
    if expected is not None and expected != actual:
        raise ConflictError(spec.name, key, expected, actual)
