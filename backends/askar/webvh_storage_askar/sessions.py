"""Reuse of idle Askar sessions for plain reads (get, count, a list's first page).

Opening and closing a session costs two native round trips, as much as the fetch
itself: keeping a few idle sessions roughly doubles get-by-key throughput (see
benchmarks/bench_askar_basic.py) and brings a first page to the raw driver's rate
(benchmarks/bench_async.py). Only plain reads use them; writes run in their own
transactions. All methods run on the face's own loop thread, so no lock is needed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")
#: Each idle session pins one pool connection: keep few, so scans keep the rest.
DEFAULT_MAX_IDLE = 1


class IdleSessions:
    """`may_keep()` says whether a finished session may stay open: the backend refuses
    while streams hold connections, so an idle session never starves a small pool."""

    def __init__(
        self, may_keep: Callable[[], bool] = lambda: True, max_idle: int = DEFAULT_MAX_IDLE
    ) -> None:
        self.max_idle = max_idle
        self._may_keep = may_keep
        self._idle: list[Any] = []

    async def run(self, store: Any, profile: str | None, work: Callable[[Any], Awaitable[T]]) -> T:
        """Run `work(session)` on an idle session (or a new one) and keep it for reuse.
        A session that saw an error is closed, never reused."""
        session = self._idle.pop() if self._idle else await store.session(profile)
        try:
            result = await work(session)
        except BaseException:
            await _close_quietly(session)
            raise
        if len(self._idle) < self.max_idle and self._may_keep():
            self._idle.append(session)
        else:
            await session.close()
        return result

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for session in idle:
            await _close_quietly(session)


async def _close_quietly(session: Any) -> None:
    with contextlib.suppress(Exception):  # the session is being discarded anyway
        await session.close()
