"""Issue 14, connection budget: a worker process never holds more than
`pool_size + max_overflow` connections to the database, whatever its threads do at once
(the fast paths keep a few pool entries checked out between calls: they count too), and a
caller that cannot get one waits STORAGE_POOL_TIMEOUT and gets BackendUnavailableError.

The server counts the connections (pg_stat_activity). The async-task variant waits for the
async API (another issue).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from storage_core import open_storage
from storage_core.errors import BackendUnavailableError
from tests.deployment import entry as _entry
from tests.pg import PgServer, require_pg
from tests.test_sqlalchemy_pool import ConnectionSampler

THREADS = 16
ROUNDS = 15


@pytest.fixture
def database(pg_server: PgServer) -> Iterator[str]:
    require_pg(pg_server)
    yield pg_server.create_database("webvh_budget")


def _gets_writes_and_streams(store, worker: int, errors: list[BaseException]) -> None:
    try:
        for n in range(ROUNDS):
            key = f"w{worker}-{n}"
            store.create_record(_entry(key))
            assert store.get_log_entry(key) is not None
            store.update_log_entry(key, logs=[n, n], expected_version=1)
            assert sum(1 for _ in store.stream_records("log_entry", batch_size=5)) > 0
            store.get_log_entries({"namespace": "people"}, limit=10)
            store.count_log_entries()
    except BaseException as exc:  # reported by the test
        errors.append(exc)


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("pool_size", "max_overflow"), [(2, 1), (3, 0)])
def test_threads_never_hold_more_than_pool_size_plus_max_overflow(
    pg_server: PgServer,
    database: str,
    pool_size: int,
    max_overflow: int,
    monkeypatch: pytest.MonkeyPatch,
):
    """16 threads, far more than the pool: they queue for it, and all succeed."""
    monkeypatch.setenv("STORAGE_POOL_SIZE", str(pool_size))
    monkeypatch.setenv("STORAGE_MAX_OVERFLOW", str(max_overflow))
    store = open_storage("sqlalchemy", pg_server.sqlalchemy_url(database))
    try:
        store.init_db()
        errors: list[BaseException] = []
        threads = [
            threading.Thread(target=_gets_writes_and_streams, args=(store, w, errors))
            for w in range(THREADS)
        ]
        with ConnectionSampler(pg_server, database) as sampler:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert errors == [], errors[:3]
        assert store.count_log_entries() == THREADS * ROUNDS
    finally:
        store.close()
    budget = pool_size + max_overflow
    assert 1 <= max(sampler.samples) <= budget, f"{max(sampler.samples)} > {budget}"


def test_a_caller_that_finds_the_budget_spent_gets_backend_unavailable(
    pg_server: PgServer, database: str, monkeypatch: pytest.MonkeyPatch
):
    """Both connections of a 1 + 1 pool are held (two slow SQLAlchemy-path callers; streams
    hold none between pages): a get, a write and a stream each wait STORAGE_POOL_TIMEOUT
    (1 s) and are told so; once they are given back everything works again."""
    monkeypatch.setenv("STORAGE_POOL_SIZE", "1")
    monkeypatch.setenv("STORAGE_MAX_OVERFLOW", "1")
    monkeypatch.setenv("STORAGE_POOL_TIMEOUT", "1")
    store = open_storage("sqlalchemy", pg_server.sqlalchemy_url(database))
    try:
        store.init_db()
        store.bulk_upsert("log_entry", [_entry(f"e{n}") for n in range(10)])
        connections = store.backend._connections
        with ExitStack() as held, ConnectionSampler(pg_server, database) as sampler:
            for _ in range(2):
                held.enter_context(connections.autocommit_connection())
            for call in (
                lambda: store.get_log_entry("e1"),
                lambda: store.create_record(_entry("late")),
                lambda: next(iter(store.stream_records("log_entry"))),
            ):
                with pytest.raises(BackendUnavailableError, match="no pooled connection"):
                    call()
        assert max(sampler.samples) <= 2
        assert store.get_log_entry("e1") is not None
        store.create_record(_entry("late"))
        assert sum(1 for _ in store.stream_records("log_entry", batch_size=2)) == 11
    finally:
        store.close()


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("pool_size", "max_overflow"), [(2, 1), (3, 0)])
async def test_async_tasks_never_hold_more_than_pool_size_plus_max_overflow(
    pg_server: PgServer,
    database: str,
    pool_size: int,
    max_overflow: int,
    monkeypatch: pytest.MonkeyPatch,
):
    """The async face: 64 tasks of gets, writes and streams at once, far more than the
    pool, on one event loop; they queue for it and all succeed."""
    from storage_core import open_async_storage

    monkeypatch.setenv("STORAGE_POOL_SIZE", str(pool_size))
    monkeypatch.setenv("STORAGE_MAX_OVERFLOW", str(max_overflow))
    tasks = 64

    async def work(storage: Any, worker: int) -> None:
        for n in range(5):
            scid = f"a{worker}-{n}"
            await storage.create_record(_entry(scid))
            assert (await storage.get_log_entry(scid)).scid == scid
            async for _ in storage.stream_records("log_entry", batch_size=7):
                pass

    async with open_async_storage("sqlalchemy", pg_server.sqlalchemy_url(database)) as storage:
        await storage.provision()
        with ConnectionSampler(pg_server, database) as sampler:
            await asyncio.gather(*(work(storage, w) for w in range(tasks)))
        assert await storage.count_log_entries() == tasks * 5
    budget = pool_size + max_overflow
    assert 1 <= max(sampler.samples) <= budget, f"{max(sampler.samples)} > {budget}"
