"""`MemoryBackend`: every record in process memory, behind one lock.

It is the smallest complete backend, written to be read: the template for a new
backend and a fast store for tests. Data lives only as long as the object.

How it honours the contract:

* Ordering - each kind is a `dict`, which keeps insertion order: replacing a value
  keeps its place, deleting then re-inserting moves the key to the end. `order_by`
  sorts the matches with `storage_core.ordering.sort_records`, the reference order.
* Transactions - one re-entrant lock guards every read and write, so each call (a bulk
  upsert included) is atomic and isolated. Blocks of several calls are not: it lacks
  `Capability.TRANSACTIONS`, so `transaction()` is refused rather than pretended.
* Isolation from callers - records are frozen, but their JSON fields (lists, dicts) are
  mutable, so records are deep-copied on the way in and on the way out.
* Archive (`Capability.ARCHIVE`) - verbatim entries in a dict of their own keyed by
  (category, name), apart from every record; streamed in sorted key order.
"""

from __future__ import annotations

import builtins
import copy
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, ClassVar

from storage_core.config import Settings
from storage_core.errors import (
    BackendUnavailableError,
    ConflictError,
    DuplicateRecordError,
    StorageIOError,
)
from storage_core.interface import ArchivedEntry, ArchiveStore, Capability, StorageBackend
from storage_core.kinds import KindSpec, registered_kinds
from storage_core.ordering import OrderBy, sort_records
from storage_core.validation import Filters


class MemoryBackend(StorageBackend, ArchiveStore):
    """A thread-safe, non-persistent store that also keeps an archive."""

    capabilities: ClassVar[frozenset[str]] = frozenset({Capability.ARCHIVE})

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings
        self._lock = threading.RLock()
        self._tables: dict[str, dict[str, Any]] = {}
        self._archive: dict[tuple[str, str], ArchivedEntry] = {}
        self._refused: set[tuple[str, str]] = set()  # the suite's test hook
        self._closed = False

    # --- lifecycle -------------------------------------------------------------------
    async def provision(self, recreate: bool = False) -> None:
        with self._lock:
            for name in registered_kinds():  # any kind declared later appears on first use
                if recreate or name not in self._tables:
                    self._tables[name] = {}
            if recreate:
                self._archive = {}
                self._refused = set()
            self._closed = False

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def health_check(self) -> bool:
        return not self._closed

    def describe(self) -> dict[str, Any]:
        with self._lock:
            rows = {name: len(table) for name, table in self._tables.items()}
            rows["archive"] = len(self._archive)
        return {"backend": self.name, "url": None, "persistent": False, "rows": rows}

    # --- single records --------------------------------------------------------------
    def create(self, spec: KindSpec[Any], record: Any) -> Any:
        key = spec.key_of(record)
        with self._lock:
            table = self._table(spec)
            if key in table:
                raise DuplicateRecordError(spec.name, key)
            _refuse_clash(spec, table, key, record)
            table[key] = copy.deepcopy(record)
            return copy.deepcopy(table[key])

    def get(self, spec: KindSpec[Any], key: str) -> Any | None:
        with self._lock:
            return copy.deepcopy(self._table(spec).get(key))

    def update(
        self,
        spec: KindSpec[Any],
        key: str,
        changes: dict[str, Any],
        now: datetime,
        expected_version: int | None = None,
    ) -> Any | None:
        with self._lock:
            table = self._table(spec)
            current = table.get(key)
            if current is None:
                return None
            _check_version(spec, key, expected_version, current.record_version)
            fields = copy.deepcopy(changes)
            fields["record_version"] = current.record_version + 1
            if spec.timestamps:
                fields["updated_at"] = now
            changed = replace(current, **fields)
            _refuse_clash(spec, table, key, changed)
            table[key] = changed  # same key: keeps its place
            return copy.deepcopy(table[key])

    def upsert(self, spec: KindSpec[Any], record: Any, expected_version: int | None = None) -> Any:
        key = spec.key_of(record)
        with self._lock:
            table = self._table(spec)
            current = table.get(key)
            actual = None if current is None else current.record_version
            if expected_version is not None and expected_version != (actual or 0):
                raise ConflictError(spec.name, key, expected_version, actual)
            stored = copy.deepcopy(record)
            if current is not None:
                kept: dict[str, Any] = {"record_version": current.record_version + 1}
                if spec.timestamps:
                    kept["created_at"] = current.created_at
                stored = replace(stored, **kept)
            _refuse_clash(spec, table, key, stored)
            table[key] = stored
            return copy.deepcopy(stored)

    def delete(self, spec: KindSpec[Any], key: str) -> bool:
        with self._lock:
            return self._table(spec).pop(key, None) is not None

    # --- many records ----------------------------------------------------------------
    def list(
        self,
        spec: KindSpec[Any],
        filters: Filters,
        limit: int | None,
        offset: int,
        order_by: OrderBy | None = None,
    ) -> builtins.list[Any]:
        with self._lock:
            matching = [r for r in self._table(spec).values() if _matches(r, filters)]
            if order_by is not None:
                matching = sort_records(matching, order_by)
            end = None if limit is None else offset + limit
            return copy.deepcopy(matching[offset:end])

    def count(self, spec: KindSpec[Any], filters: Filters) -> int:
        with self._lock:
            return sum(1 for r in self._table(spec).values() if _matches(r, filters))

    def stream(
        self,
        spec: KindSpec[Any],
        filters: Filters,
        batch_size: int,
        order_by: OrderBy | None = None,
    ) -> Iterator[Any]:
        """Pages by position under the lock, so no lock is held between batches.

        A snapshot of the keys (sorted by `order_by`, if given) is taken up front:
        records deleted meanwhile are skipped, records created meanwhile are not seen.
        Nothing needs releasing.
        """
        with self._lock:
            matching = [r for r in self._table(spec).values() if _matches(r, filters)]
            if order_by is not None:
                matching = sort_records(matching, order_by)
            keys = [spec.key_of(r) for r in matching]
        for start in range(0, len(keys), batch_size):
            with self._lock:
                table = self._table(spec)
                batch = [
                    copy.deepcopy(table[k]) for k in keys[start : start + batch_size] if k in table
                ]
            yield from batch

    def bulk_upsert(self, spec: KindSpec[Any], records: Sequence[Any]) -> int:
        """Records are stored exactly as given; existing keys keep their place. They are
        written to a copy of the table that replaces it only once every write succeeded,
        so a write failing mid-way leaves the table as it was."""
        copies = copy.deepcopy(list(records))
        with self._lock:
            staged = dict(self._table(spec))
            for record in copies:
                key = spec.key_of(record)
                if (spec.name, key) in self._refused:
                    raise StorageIOError(f"the memory store refused to write {spec.name} {key!r}")
                _refuse_clash(spec, staged, key, record)
                staged[key] = record
            self._tables[spec.name] = staged
        return len(copies)

    def refuse_writes_for_testing(self, spec: KindSpec[Any], key: str) -> bool:
        """The suite's hook (see StorageBackend): bulk writes of this record now fail."""
        with self._lock:
            self._refused.add((spec.name, key))
        return True

    # --- archive ---------------------------------------------------------------------
    def archive_upsert(self, entries: Sequence[ArchivedEntry]) -> int:
        copies = [_copy_entry(entry) for entry in entries]
        with self._lock:
            self._check_open()
            for entry in copies:
                self._archive[(entry.category, entry.name)] = entry
        return len(copies)

    def archive_get(self, category: str, names: Sequence[str]) -> dict[str, ArchivedEntry]:
        with self._lock:
            self._check_open()
            found = [self._archive.get((category, name)) for name in names]
        return {entry.name: _copy_entry(entry) for entry in found if entry is not None}

    def archive_stream(
        self, category: str | None = None, batch_size: int = 500
    ) -> Iterator[ArchivedEntry]:
        """Like `stream`: a sorted snapshot of the keys, then pages under the lock."""
        with self._lock:
            self._check_open()
            keys = sorted(k for k in self._archive if category in (None, k[0]))
        for start in range(0, len(keys), batch_size):
            with self._lock:
                self._check_open()
                batch = [self._archive.get(k) for k in keys[start : start + batch_size]]
            yield from (_copy_entry(entry) for entry in batch if entry is not None)

    def archive_count(self, category: str | None = None) -> int:
        with self._lock:
            self._check_open()
            if category is None:
                return len(self._archive)
            return sum(1 for cat, _ in self._archive if cat == category)

    # --- helpers ---------------------------------------------------------------------
    def _table(self, spec: KindSpec[Any]) -> dict[str, Any]:
        """The kind's dict; a store used before `provision` behaves as provisioned."""
        self._check_open()
        return self._tables.setdefault(spec.name, {})

    def _check_open(self) -> None:
        """A closed store refuses every call, like a real one whose connections are gone."""
        if self._closed:
            raise BackendUnavailableError("the memory store is closed")


def _check_version(spec: KindSpec[Any], key: str, expected: int | None, actual: int) -> None:
    if expected is not None and expected != actual:
        raise ConflictError(spec.name, key, expected, actual)


def _refuse_clash(spec: KindSpec[Any], table: dict[str, Any], key: str, record: Any) -> None:
    """The kind's `unique=` tuples: no other record may have the same values (None never
    clashes, as NULLs in a SQL UNIQUE index)."""
    for fields in spec.unique:
        values = tuple(getattr(record, f) for f in fields)
        if None in values:
            continue
        for other_key, other in table.items():
            if other_key != key and tuple(getattr(other, f) for f in fields) == values:
                raise DuplicateRecordError(spec.name, key, fields)


def _matches(record: Any, filters: Filters) -> bool:
    return all(getattr(record, name) in allowed for name, allowed in filters.items())


def _copy_entry(entry: ArchivedEntry) -> ArchivedEntry:
    """Entries are frozen, but their tags may be a caller's mutable dict."""
    return ArchivedEntry(entry.category, entry.name, entry.value, dict(entry.tags))
