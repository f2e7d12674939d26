"""Threads sharing one StorageManager, as a web server's worker threads do.

Each write is atomic: concurrent updates are never lost (record_version counts every
one) and exactly one of several racing conditional writes wins.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from storage_core.errors import ConflictError, DuplicateRecordError
from storage_core.manager import StorageManager
from storage_core.testing.samples import present, sample_record

WRITERS = 8
OWN_KEYS = 6
SHARED_KEYS = ("shared-0", "shared-1", "shared-2")
UPDATES_PER_SHARED_KEY = 4


def _run_together(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Start `count` threads at one barrier; return results or exceptions, in order."""
    barrier = threading.Barrier(count)

    def start(i: int) -> Any:
        barrier.wait(timeout=30)
        try:
            return work(i)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(start, range(count)))


class TestConcurrency:
    def test_writers_creating_and_updating_lose_nothing(
        self, storage_manager: StorageManager
    ) -> None:
        sm = storage_manager
        for key in SHARED_KEYS:
            sm.create_task(key, "shared", "new", progress={"n": 0})

        def writer(i: int) -> None:
            for n in range(OWN_KEYS):
                sm.create_task(f"w{i}-{n}", "own", "new", progress={"writer": i})
                for key in SHARED_KEYS[: 1 + n % len(SHARED_KEYS)]:
                    if n < UPDATES_PER_SHARED_KEY:
                        sm.update_task(key, status=f"w{i}")
                sm.count_tasks({"task_type": "own"})
                sm.get_tasks(limit=5)

        errors = [r for r in _run_together(WRITERS, writer) if r is not None]
        assert errors == []
        own = sm.get_tasks({"task_type": "own"})
        assert len(own) == WRITERS * OWN_KEYS
        assert {t.task_id for t in own} == {
            f"w{i}-{n}" for i in range(WRITERS) for n in range(OWN_KEYS)
        }
        for index, key in enumerate(SHARED_KEYS):
            updates = sum(
                1 for n in range(UPDATES_PER_SHARED_KEY) if index < 1 + n % len(SHARED_KEYS)
            )
            assert present(sm.get_task(key)).record_version == 1 + WRITERS * updates, key

    def test_exactly_one_conditional_update_wins(self, storage_manager: StorageManager) -> None:
        sm = storage_manager
        sm.create_task("race", "t", "new")
        results = _run_together(
            WRITERS, lambda i: sm.update_task("race", expected_version=1, status=f"w{i}")
        )
        winners = [r for r in results if not isinstance(r, Exception)]
        assert len(winners) == 1, results
        assert all(isinstance(r, ConflictError) for r in results if r not in winners), results
        final = present(sm.get_task("race"))
        assert (final.status, final.record_version) == (winners[0].status, 2)

    def test_racing_creates_of_one_key_leave_one_record(
        self, storage_manager: StorageManager
    ) -> None:
        sm = storage_manager
        creates = _run_together(
            WRITERS,
            lambda i: sm.create_record(sample_record("log_entry", "same", identifier=f"{i}")),
        )
        assert sum(not isinstance(r, Exception) for r in creates) == 1, creates
        assert all(
            isinstance(r, DuplicateRecordError) for r in creates if isinstance(r, Exception)
        ), creates
        upserts = _run_together(
            WRITERS, lambda i: sm.create_or_update_whois("fresh", {"i": i}, expected_version=0)
        )
        assert sum(not isinstance(r, Exception) for r in upserts) == 1, upserts
        assert all(isinstance(r, ConflictError) for r in upserts if isinstance(r, Exception)), (
            upserts
        )
        assert sm.count_log_entries() == 1
        assert present(sm.get_whois("fresh")).record_version == 1
