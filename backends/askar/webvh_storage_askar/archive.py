"""The archive (Capability.ARCHIVE) as operations both Askar faces run: the sync face on
its loop thread, the async face in the caller's loop (see operations.Op).

Askar scans order by row id only, and names and tags are encrypted (no range filter), so
a stream's order is made here. One scan keeps the smallest ARCHIVE_KEY_WINDOW *
batch_size keys after the last one served, and the values of the first batch_size of
them; the values of the rest are fetched by name, a batch at a time. Memory stays
bounded by batch_size (small keys, one batch of values); an archive larger than the
window costs one more scan per window, and one no larger than batch_size is a single
scan. Nothing is held between calls, so leaving a stream early has nothing to release.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from operator import itemgetter
from typing import Any, Generic, TypeVar

from aries_askar import Store  # type: ignore[import-untyped]

from storage_core.interface import ArchivedEntry
from webvh_storage_askar import layout
from webvh_storage_askar.operations import AskarOperations, Op

V = TypeVar("V")
#: archive_stream orders this many keys per batch of values with one scan.
ARCHIVE_KEY_WINDOW = 64
Keys = builtins.list[tuple[str, str]]
#: One window of a stream: its keys in order, and the first batch's entries.
Window = tuple[Keys, builtins.list[ArchivedEntry]]


def _same(value: V) -> V:
    return value


class ArchiveOperations(AskarOperations):
    """The archive's operations; each face runs them as it runs every other one."""

    def _archive_upsert_op(self, entries: Sequence[ArchivedEntry]) -> Op[None, int]:
        items = [layout.encode_archived(entry) for entry in entries]

        def write(store: Store) -> Any:
            return self._write_retrying(
                lambda: self._write_all(store, layout.ARCHIVE_CATEGORY, items)
            )

        return Op("archiving entries", write, lambda _: len(items))

    def _archive_fetch_op(
        self, keys: Sequence[tuple[str, str]]
    ) -> Op[builtins.list[Any], builtins.list[ArchivedEntry]]:
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

        def decode(entries: builtins.list[Any]) -> builtins.list[ArchivedEntry]:
            return [layout.decode_archived(entry.raw_value) for entry in entries]

        readers, profile = self._slot.readers, self._profile
        return Op("reading the archive", lambda s: readers.run(s, profile, fetch), decode)

    def _archive_window_op(
        self, category: str | None, after: tuple[str, str] | None, batch_size: int
    ) -> Op[tuple[Keys, builtins.list[bytes]], Window]:
        """The window of a stream after the key `after` (see the module docstring)."""
        wql = None if category is None else layout.archive_tags(category)
        size = batch_size * ARCHIVE_KEY_WINDOW

        async def window(store: Store) -> tuple[Keys, builtins.list[bytes]]:
            await self._slot.readers.close()  # the scan takes a pool connection: free idle ones
            scan = store.scan(layout.ARCHIVE_CATEGORY, wql, profile=self._profile)
            self._slot.track(scan)
            keys: _Smallest[None] = _Smallest(size)
            first: _Smallest[bytes] = _Smallest(batch_size)
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

        def decode(found: tuple[Keys, builtins.list[bytes]]) -> Window:
            keys, first = found
            return keys, [layout.decode_archived(raw) for raw in first]

        return Op("reading the archive", window, decode)

    def _archive_count_op(self, category: str | None) -> Op[int, int]:
        wql = None if category is None else layout.archive_tags(category)
        return Op(
            "counting the archive",
            lambda s: self._count(s, layout.ARCHIVE_CATEGORY, wql),
            _same,
        )


def window_done(keys: Keys, batch_size: int) -> bool:
    """The window held every key left: the stream ends with it."""
    return len(keys) < batch_size * ARCHIVE_KEY_WINDOW


def rest_of_window(keys: Keys, batch_size: int) -> builtins.list[Keys]:
    """The window's keys after its first batch, a batch of keys per fetch."""
    return [keys[start : start + batch_size] for start in range(batch_size, len(keys), batch_size)]


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
