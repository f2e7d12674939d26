"""The one sync-over-async bridge: an asyncio event loop on a daemon thread.

Sync code that must drive a coroutine (the sync API over aries-askar, `init_db()` over
the async `provision()`, the migration's Askar reads) cannot use `asyncio.run` inside a
running loop (async tests, FastAPI handlers), and futures of some drivers must complete
on the loop that started them. A long-lived loop on its own thread serves both: callers
from any thread submit a coroutine and wait for it. A backend that keeps futures on its
loop owns a `BackgroundLoop`; everything else uses `run_sync`, on one shared loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Callable, Coroutine
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

T = TypeVar("T")
SHUTDOWN_TIMEOUT = 10.0


class LoopClosedError(RuntimeError):
    """The loop was shut down; the backend that owned it is closed."""


class BackgroundLoop:
    """An event loop running forever on its own daemon thread until `close()`.

    `close()` also runs at interpreter exit (weakref.finalize), so no thread is left
    spinning even when the owner forgets to close it.
    """

    def __init__(self, name: str = "storage-loop") -> None:
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        self._ended = threading.Event()
        self._thread = threading.Thread(
            target=_run_forever,
            args=(self._loop, started, self._ended),
            name=name,
            daemon=True,
        )
        self._thread.start()
        started.wait()
        self._finalizer = weakref.finalize(self, _stop_loop, self._loop, self._thread, self._ended)

    @property
    def closed(self) -> bool:
        """Closed by `close()`, or the loop ended on its own: asyncio lets a SystemExit
        or KeyboardInterrupt raised by a coroutine stop it (the caller gets the error)."""
        return not self._finalizer.alive or self._ended.is_set()

    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coro` on the loop and block until it finishes; its exception propagates."""
        if self.closed:
            coro.close()
            raise LoopClosedError("the store that owned this event loop is closed")
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError("BackgroundLoop.run() called from its own thread would deadlock")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except FutureTimeout:
            future.cancel()
            raise

    async def run_async(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` run on this loop from another event loop (e.g. `provision`)."""
        if self.closed:
            coro.close()
            raise LoopClosedError("the store that owned this event loop is closed")
        if self.in_loop_thread():
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def call_soon(self, func: Callable[[], Any]) -> None:
        """Run a quick sync function on the loop thread without waiting for it.

        Safe from any thread, including the loop thread itself (e.g. a generator
        finalised by the garbage collector there); runs inline once the loop is closed.
        """
        if self.closed or self.in_loop_thread():
            func()
            return
        try:
            self._loop.call_soon_threadsafe(func)
        except RuntimeError:  # the loop closed between the check and the call
            func()

    def close(self, before_stop: Callable[[], Coroutine[Any, Any, Any]] | None = None) -> None:
        """Optionally run a last coroutine (closing the store), then stop and join the
        thread. Idempotent."""
        if not self._finalizer.alive:
            return
        if before_stop is not None and not self.in_loop_thread():
            with contextlib.suppress(Exception):  # shutdown must finish regardless
                self.run(before_stop(), timeout=SHUTDOWN_TIMEOUT)
        self._finalizer()


def _run_forever(
    loop: asyncio.AbstractEventLoop, started: threading.Event, ended: threading.Event
) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(started.set)
    try:
        loop.run_forever()
    finally:
        ended.set()  # before the futures below resolve, so their callers see `closed`
        try:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


def _stop_loop(
    loop: asyncio.AbstractEventLoop, thread: threading.Thread, ended: threading.Event
) -> None:
    """Stop the loop and wait for its thread (never joins from the loop thread itself).

    A loop that ended on its own is not stopped again (that would cut its cleanup
    short), but its thread is still joined."""
    if not ended.is_set():
        with contextlib.suppress(RuntimeError):  # it closed meanwhile: nothing to stop
            loop.call_soon_threadsafe(loop.stop)
    if threading.current_thread() is not thread:
        thread.join(SHUTDOWN_TIMEOUT)


_shared: BackgroundLoop | None = None
_shared_lock = threading.Lock()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion from sync code, even inside a running event loop, on
    one process-wide loop thread (started on first use)."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared.closed:
            _shared = BackgroundLoop(name="storage-sync")
        loop = _shared
    return loop.run(coro)
