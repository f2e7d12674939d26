"""storage_core.loop: the one sync-over-async bridge, and the guards that keep it from
deadlocking, leaking coroutines or leaving a thread behind."""

from __future__ import annotations

import asyncio
import gc
import inspect
import threading
import uuid
import warnings
from collections.abc import Iterator

import pytest

from storage_core.loop import BackgroundLoop, LoopClosedError, run_sync

pytestmark = pytest.mark.timeout(60)  # a broken guard hangs: fail instead


async def answer() -> int:
    return 42


async def thread_name() -> str:
    return threading.current_thread().name


def unique_name() -> str:
    return f"test-loop-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def loop() -> Iterator[BackgroundLoop]:
    background = BackgroundLoop(name=unique_name())
    yield background
    background.close()


def never_awaited_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if "never awaited" in str(w.message)]


def test_run_returns_the_result_on_the_loop_thread(loop: BackgroundLoop) -> None:
    assert loop.run(answer()) == 42
    assert loop.run(thread_name()) != threading.current_thread().name

    async def fails() -> None:
        raise ValueError("from the loop")

    with pytest.raises(ValueError, match="from the loop"):
        loop.run(fails())
    assert loop.run(answer()) == 42  # still usable


def test_run_from_the_loop_thread_raises_instead_of_deadlocking(loop: BackgroundLoop) -> None:
    inner = answer()

    async def nested() -> int:
        assert loop.in_loop_thread()
        return loop.run(inner)  # would wait for itself forever

    with pytest.raises(RuntimeError, match="deadlock"):
        loop.run(nested())
    assert inspect.getcoroutinestate(inner) == inspect.CORO_CLOSED
    assert loop.run(answer()) == 42


def test_run_after_close_raises_and_closes_the_coroutine() -> None:
    loop = BackgroundLoop(name=unique_name())
    loop.close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        coro = answer()
        with pytest.raises(LoopClosedError):
            loop.run(coro)
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
        later = answer()
        with pytest.raises(LoopClosedError):
            asyncio.run(loop.run_async(later))
        assert inspect.getcoroutinestate(later) == inspect.CORO_CLOSED
        del coro, later
        gc.collect()
    assert never_awaited_warnings(caught) == []


def test_an_unclosed_coroutine_would_be_reported() -> None:
    """The check above can fail: a coroutine dropped unawaited does warn."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        coro = answer()
        del coro
        gc.collect()
    assert never_awaited_warnings(caught) != []


def test_call_soon_from_the_loop_thread_runs_inline(loop: BackgroundLoop) -> None:
    order: list[str] = []

    async def on_the_loop() -> None:
        loop.call_soon(lambda: order.append(f"callback on {threading.current_thread().name}"))
        order.append("after call_soon")

    loop.run(on_the_loop())
    assert order == [f"callback on {loop.run(thread_name())}", "after call_soon"]


def test_call_soon_from_another_thread_runs_on_the_loop_thread(loop: BackgroundLoop) -> None:
    ran_on: list[str] = []
    loop.call_soon(lambda: ran_on.append(threading.current_thread().name))
    loop_thread = loop.run(thread_name())  # queued after the callback, so it ran first
    assert ran_on == [loop_thread]
    assert loop_thread != threading.current_thread().name


def test_call_soon_after_close_runs_inline() -> None:
    loop = BackgroundLoop(name=unique_name())
    loop.close()
    ran_on: list[str] = []
    loop.call_soon(lambda: ran_on.append(threading.current_thread().name))
    assert ran_on == [threading.current_thread().name]


def test_close_is_idempotent_and_joins_the_thread() -> None:
    name = unique_name()
    loop = BackgroundLoop(name=name)
    (thread,) = [t for t in threading.enumerate() if t.name == name]
    assert thread.is_alive() and not loop.closed
    last_ran_on: list[str] = []

    async def last() -> None:
        last_ran_on.append(threading.current_thread().name)

    loop.close(before_stop=last)
    assert last_ran_on == [name]
    assert loop.closed and not thread.is_alive()
    loop.close()
    loop.close(before_stop=last)  # a closed loop runs nothing more
    assert last_ran_on == [name] and not thread.is_alive()


def test_run_sync_from_plain_sync_code() -> None:
    assert run_sync(answer()) == 42
    assert run_sync(thread_name()) != threading.current_thread().name


async def test_run_sync_inside_a_running_event_loop() -> None:
    """Where asyncio.run() would refuse (a loop is running), run_sync still works."""
    refused = answer()
    with pytest.raises(RuntimeError, match="running event loop"):
        asyncio.run(refused)  # the reason run_sync exists
    refused.close()
    assert run_sync(answer()) == 42
    assert run_sync(thread_name()) != threading.current_thread().name
    await asyncio.sleep(0)  # this loop was not blocked for good


def test_a_run_that_times_out_raises_and_cancels_the_coroutine(loop: BackgroundLoop) -> None:
    started = threading.Event()
    cancelled = threading.Event()

    async def waits_forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(TimeoutError):
        loop.run(waits_forever(), timeout=0.2)
    assert started.wait(10), "the coroutine never started"
    assert cancelled.wait(10), "the timed-out coroutine was left running"
    assert loop.run(answer()) == 42  # the loop itself is unharmed


def test_run_async_from_the_loop_thread_awaits_in_the_same_task(loop: BackgroundLoop) -> None:
    """No hop through the loop's queue (which needs a second task): the caller's task
    runs the coroutine itself."""

    async def current_task() -> asyncio.Task[object] | None:
        return asyncio.current_task()

    async def on_the_loop() -> tuple[object, object]:
        return asyncio.current_task(), await loop.run_async(current_task())

    outer, inner = loop.run(on_the_loop())
    assert outer is not None and inner is outer


async def test_run_async_from_another_event_loop_runs_on_the_loop_thread(
    loop: BackgroundLoop,
) -> None:
    assert await loop.run_async(thread_name()) == loop.run(thread_name())
    assert loop.run(thread_name()) != threading.current_thread().name


def test_tasks_still_pending_at_close_are_cancelled_and_finish() -> None:
    loop = BackgroundLoop(name=unique_name())
    outcome: list[str] = []

    async def holds_a_resource() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise
        finally:
            outcome.append("released")

    async def start_in_background() -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(holds_a_resource())
        await asyncio.sleep(0)  # let it start and reach its wait
        return task

    task = loop.run(start_in_background())
    assert outcome == [] and not task.done()
    loop.close()
    assert outcome == ["cancelled", "released"]
    assert task.cancelled()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_loop_that_stopped_on_its_own_is_closed() -> None:
    """asyncio lets SystemExit/KeyboardInterrupt from a coroutine end the loop, and so
    the loop thread: later calls must fail as on a closed loop (not with a bare
    RuntimeError, leaking the coroutine), and close() must still work."""
    name = unique_name()
    loop = BackgroundLoop(name=name)
    (thread,) = [t for t in threading.enumerate() if t.name == name]

    async def exits() -> None:
        raise SystemExit("stop")

    with pytest.raises(SystemExit):
        loop.run(exits(), timeout=30)
    assert loop.closed  # at once: the error reached us after the loop said so

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        coro = answer()
        with pytest.raises(LoopClosedError):
            loop.run(coro)
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
        del coro
        gc.collect()
    assert never_awaited_warnings(caught) == []
    ran_on: list[str] = []
    loop.call_soon(lambda: ran_on.append(threading.current_thread().name))
    assert ran_on == [threading.current_thread().name]
    loop.close()
    assert not thread.is_alive()
    loop.close()
    assert loop.closed
