"""Record streams over Askar scans that never pin pool connections on the garbage
collector's schedule.

A stream reads pages from one open scan (fast: an Askar scan with an offset re-reads
every skipped entry, so paging by offset alone is quadratic). But an open scan holds a
pool connection, and a stream dropped inside a reference cycle stays alive until the
cyclic garbage collector runs. So at most MAX_OPEN_SCANS scans stay open between pages:
a stream that needs one more closes the least recently used idle one. A stream whose scan
was closed reopens it where it stood (offset = entries served) when it is next advanced,
and checks that the entry it served last is still there; if entries before it were
deleted meanwhile it finds its place again by the names of its last page.

Everything here runs on the backend's loop thread, one coroutine at a time, so no lock
is needed; `busy` keeps a scan that is being read from being closed under it.
"""

from __future__ import annotations

import builtins
import itertools
import weakref
from typing import Any

from storage_core.errors import StorageError
from webvh_storage_askar.scans import free_scan

#: Scans kept open between pages, over all streams of one backend. Two lets two streams
#: advance in turn without reopening; the rest of the pool stays free for everything else.
MAX_OPEN_SCANS = 2


class StreamCursor:
    """Where one stream stands: its open scan (None when closed), how many entries of
    the category's order it has passed, and the names of the last page it read."""

    __slots__ = ("__weakref__", "anchors", "busy", "category", "scan", "served", "used", "wql")

    def __init__(self, category: str, wql: Any) -> None:
        self.category = category
        self.wql = wql
        self.scan: Any = None
        self.served = 0
        self.anchors: builtins.list[str] = []
        self.busy = False
        self.used = 0


class OpenScans:
    """The cursors of one backend's live streams (weakly held: a dropped stream's cursor
    goes with it) and the budget of scans they may keep open."""

    def __init__(self) -> None:
        self._cursors: weakref.WeakSet[StreamCursor] = weakref.WeakSet()
        self._clock = itertools.count(1)

    def any_open(self) -> bool:
        # Asked after every read (may an idle session stay?): no live stream, no walk.
        if not self._cursors:
            return False
        return any(cursor.scan is not None for cursor in list(self._cursors))

    def close(self, cursor: StreamCursor) -> None:
        """Free the cursor's scan now (its pool connection goes back)."""
        scan, cursor.scan = cursor.scan, None
        if scan is not None:
            free_scan(scan)

    def discard(self, cursor: StreamCursor) -> None:
        """The stream finished, failed or was closed."""
        self.close(cursor)
        self._cursors.discard(cursor)

    def close_all(self) -> None:
        for cursor in list(self._cursors):
            self.close(cursor)

    def _make_room(self) -> None:
        """Close the least recently used idle scans until one more fits the budget."""
        open_ = [c for c in list(self._cursors) if c.scan is not None]
        idle = sorted((c for c in open_ if not c.busy), key=lambda c: c.used)
        for cursor in idle[: max(0, len(open_) - (MAX_OPEN_SCANS - 1))]:
            self.close(cursor)

    async def next_page(
        self, store: Any, profile: str | None, cursor: StreamCursor, size: int, kind: str
    ) -> builtins.list[Any]:
        """The next `size` entries of the cursor's stream (fewer at the end). A failure
        closes the scan, so running this again resumes where the stream stood."""
        cursor.busy = True
        try:
            if cursor.scan is None:
                self._cursors.add(cursor)
                self._make_room()
                await self._reopen(store, profile, cursor, kind)
            page: builtins.list[Any] = []
            async for entry in cursor.scan:
                page.append(entry)
                if len(page) >= size:
                    break
        except BaseException:
            self.close(cursor)
            raise
        finally:
            cursor.busy = False
        cursor.used = next(self._clock)
        cursor.served += len(page)
        if page:
            cursor.anchors = [entry.name for entry in page]
        return page

    async def _reopen(
        self, store: Any, profile: str | None, cursor: StreamCursor, kind: str
    ) -> None:
        """Open the cursor's scan just past the entries it has served."""
        if not cursor.anchors:  # nothing served yet
            cursor.scan = _scan(store, profile, cursor, cursor.served)
            return
        cursor.scan = _scan(store, profile, cursor, cursor.served - 1)
        first = await _next_or_none(cursor.scan)
        if first is not None and first.name == cursor.anchors[-1]:
            return  # still in place: the scan now stands just past it
        self.close(cursor)
        cursor.served = await _place_after(store, profile, cursor, kind)
        cursor.scan = _scan(store, profile, cursor, cursor.served)


def _scan(store: Any, profile: str | None, cursor: StreamCursor, offset: int) -> Any:
    return store.scan(cursor.category, cursor.wql, offset, profile=profile, order_by="id")


async def _next_or_none(scan: Any) -> Any:
    async for entry in scan:
        return entry
    return None


async def _place_after(store: Any, profile: str | None, cursor: StreamCursor, kind: str) -> int:
    """Entries before the stream's place after others were deleted: up to the last of
    its anchors still stored. Deletes only move entries toward the front (row ids grow;
    replace keeps them), so it is among the first `served`. With every anchor gone the
    place is lost: StorageError, rather than skip or repeat records."""
    wanted = set(cursor.anchors)
    scan = store.scan(cursor.category, cursor.wql, 0, cursor.served, profile=profile, order_by="id")
    found: int | None = None
    try:
        index = 0
        async for entry in scan:
            index += 1
            if entry.name in wanted:
                found = index
    finally:
        free_scan(scan)
    if found is None:
        raise StorageError(
            f"stream of {kind} lost its place: every record of the page it served last "
            "was deleted meanwhile; start the stream again"
        )
    return found
