"""Concurrency on real stores: no lost updates, no stray errors, no leaked connections.

A did:webvh log is an append-only history; one lost or duplicated line breaks the DID
for good. These tests hammer every backend variant from many threads and then compare
the store with a replay of what was acknowledged. The PostgreSQL variants run more
threads than the pool holds, so callers queue for connections.

Reproduce: `uv run pytest tests/test_reliability_concurrency.py -q`
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from storage_core import ConflictError, StorageManager
from storage_core.config import Settings
from tests.conftest import VARIANTS

PG_VARIANTS = {"postgres", "askar-postgres"}
#: (threads, operations per thread). PostgreSQL: 32 threads against 10 (5 + 5) SQL pool
#: connections or 4 Askar connections, so the pool is exhausted and callers queue.
LOAD = {"default": (8, 60), "pg": (32, 30)}
APPEND_THREADS = 8
APPENDS_PER_THREAD = 8
SQL_POOL = {"pool_size": 5, "max_overflow": 5}
ASKAR_PG_MAX_CONNECTIONS = "4"


def open_variant(variant: str, request: pytest.FixtureRequest, tmp_path: Path) -> StorageManager:
    """A provisioned, empty store; PostgreSQL variants get their own database and a
    deliberately small pool."""
    overrides: dict[str, Any] = {}
    if variant == "postgres":
        from tests.pg import require_pg

        pg = request.getfixturevalue("pg_server")
        require_pg(pg)
        url = pg.sqlalchemy_url(pg.create_database("webvh_rel_conc"))
        backend = "sqlalchemy"
        overrides = dict(SQL_POOL)
    elif variant == "askar-postgres":
        from tests.pg import require_pg

        pg = request.getfixturevalue("pg_server")
        require_pg(pg)
        db = pg.create_database("webvh_rel_conc_askar")
        url = pg.askar_uri(db, max_connections=ASKAR_PG_MAX_CONNECTIONS)
        backend = "askar"
    else:
        from tests.conftest import variant_config

        config = variant_config(variant, request, tmp_path)
        backend, url = config["backend"], config["url"]
    manager = StorageManager(Settings.from_env(backend=backend, url=url, **overrides))
    manager.init_db(recreate=True)
    return manager


@pytest.fixture(params=VARIANTS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, StorageManager]]:
    manager = open_variant(request.param, request, tmp_path)
    try:
        yield request.param, manager
    finally:
        manager.close()


def assert_no_connection_left(manager: StorageManager) -> None:
    """SQL: the pool reports nothing checked out but the few entries the fast paths keep
    idle for their next call. Otherwise: 50 more calls finish fast, which they could not
    if earlier calls had leaked every connection."""
    pool = getattr(getattr(manager.backend, "engine", None), "pool", None)
    if hasattr(pool, "checkedout"):  # QueuePool; a :memory: StaticPool has one connection
        kept = manager.backend._connections.idle_count  # type: ignore[attr-defined]
        assert kept <= pool.size(), pool.status()
        assert pool.checkedout() == kept, pool.status()
    started = time.monotonic()
    for _ in range(50):
        manager.count_tasks()
    assert time.monotonic() - started < 10


@dataclass
class Ledger:
    """What one thread was told succeeded: its own tasks and its shared-task writes."""

    own: dict[str, dict[str, Any]] = field(default_factory=dict)
    shared_writes: list[tuple[str, int, str]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    operations: int = 0


SHARED_TASKS = [f"shared-{n}" for n in range(4)]


def run_mixed_workload(manager: StorageManager, thread_no: int, ops: int) -> Ledger:
    """Create/get/update/delete/list on the thread's own tasks plus last-writer-wins
    updates of shared tasks. Every check against the thread's own keys is exact,
    because no other thread touches them."""
    ledger = Ledger()
    rng = random.Random(thread_no)
    task_type = f"type-{thread_no}"
    serial = 0
    for step in range(ops):
        choice = rng.random()
        try:
            if choice < 0.30 or not ledger.own:
                task_id = f"t{thread_no}-{serial}"
                serial += 1
                progress = {"step": step, "thread": thread_no}
                manager.create_task(task_id, task_type, "started", progress=progress)
                ledger.own[task_id] = {"status": "started", "progress": progress, "version": 1}
            elif choice < 0.45:
                task_id = rng.choice(sorted(ledger.own))
                got = manager.get_task(task_id)
                expected = ledger.own[task_id]
                assert got is not None, task_id
                assert (got.status, got.progress, got.record_version) == (
                    expected["status"],
                    expected["progress"],
                    expected["version"],
                )
            elif choice < 0.60:
                task_id = rng.choice(sorted(ledger.own))
                status = f"status-{step}"
                updated = manager.update_task(task_id, status=status)
                assert updated is not None
                ledger.own[task_id]["status"] = status
                ledger.own[task_id]["version"] += 1
                assert updated.record_version == ledger.own[task_id]["version"]
            elif choice < 0.70:
                task_id = rng.choice(sorted(ledger.own))
                assert manager.delete_task(task_id) is True
                del ledger.own[task_id]
                assert manager.get_task(task_id) is None
            elif choice < 0.80:
                listed = manager.get_tasks({"task_type": task_type})
                assert [t.task_id for t in listed] == list(ledger.own), "own tasks, in order"
                assert manager.count_tasks({"task_type": task_type}) == len(ledger.own)
            else:
                task_id = rng.choice(SHARED_TASKS)
                message = f"{thread_no}:{step}"
                updated = manager.update_task(task_id, message=message)
                assert updated is not None
                ledger.shared_writes.append((task_id, updated.record_version, message))
            ledger.operations += 1
        except BaseException as exc:
            ledger.errors.append(exc)
    return ledger


def run_threads(count: int, target: Callable[[int], Any]) -> list[Any]:
    """Start `count` workers at the same moment (a barrier) and return their results."""
    barrier = threading.Barrier(count)

    def start(n: int) -> Any:
        barrier.wait()
        return target(n)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(start, range(count)))


@pytest.mark.timeout(120)
def test_mixed_workload_matches_a_replay_of_acknowledged_operations(store):
    """Zero errors; the final store equals the acknowledged history; shared records show
    every concurrent update exactly once (versions 2..N+1, each handed out once)."""
    variant, manager = store
    threads, ops = LOAD["pg" if variant in PG_VARIANTS else "default"]
    for task_id in SHARED_TASKS:
        manager.create_task(task_id, "shared", "started")
    peak = watch_pool_peak(manager)

    ledgers = run_threads(threads, lambda n: run_mixed_workload(manager, n, ops))

    errors = [repr(e) for ledger in ledgers for e in ledger.errors]
    assert errors == [], f"{len(errors)} errors, first: {errors[:3]}"
    assert sum(ledger.operations for ledger in ledgers) == threads * ops

    expected = {tid: rec for ledger in ledgers for tid, rec in ledger.own.items()}
    stored = {
        t.task_id: t
        for t in manager.get_tasks({"task_type": [f"type-{n}" for n in range(threads)]})
    }
    assert set(stored) == set(expected), "rows lost or resurrected"
    for task_id, rec in expected.items():
        got = stored[task_id]
        assert (got.status, got.progress, got.record_version) == (
            rec["status"],
            rec["progress"],
            rec["version"],
        ), task_id

    for task_id in SHARED_TASKS:
        writes = [(v, m) for ledger in ledgers for t, v, m in ledger.shared_writes if t == task_id]
        versions = sorted(v for v, _ in writes)
        assert versions == list(range(2, len(writes) + 2)), "a concurrent update was lost"
        final = manager.get_task(task_id)
        assert final.record_version == len(writes) + 1
        if writes:
            assert final.message == max(writes)[1], "last writer (highest version) wins"
    assert_no_connection_left(manager)
    if variant == "postgres":  # 32 threads really queued on the 5 + 5 pool
        assert peak["max"] == SQL_POOL["pool_size"] + SQL_POOL["max_overflow"], peak


def watch_pool_peak(manager: StorageManager) -> dict[str, int]:
    """Track the most connections checked out at once (SQL backends), to prove the
    workload saturated the pool rather than running on a few idle connections."""
    from sqlalchemy import event

    peak = {"now": 0, "max": 0}
    engine = getattr(manager.backend, "engine", None)
    if engine is None:
        return peak
    lock = threading.Lock()
    # Entries the fast paths hold idle were checked out before these listeners existed:
    # hand them back first, so every checkin counted here has its checkout counted too.
    manager.backend._connections.release_idle()  # type: ignore[attr-defined]

    @event.listens_for(engine, "checkout")
    def _out(*_: Any) -> None:
        with lock:
            peak["now"] += 1
            peak["max"] = max(peak["max"], peak["now"])

    @event.listens_for(engine, "checkin")
    def _in(*_: Any) -> None:
        with lock:
            peak["now"] -= 1

    return peak


def append_lines(manager: StorageManager, scid: str, thread_no: int) -> dict[str, int]:
    """Append this thread's lines with optimistic concurrency, retrying on conflict."""
    appended = conflicts = 0
    for line_no in range(APPENDS_PER_THREAD):
        line = {"versionId": f"{thread_no}-{line_no}", "thread": thread_no}
        while True:
            current = manager.get_log_entry(scid)
            try:
                manager.update_log_entry(
                    scid, expected_version=current.record_version, logs=[*current.logs, line]
                )
                appended += 1
                break
            except ConflictError:
                conflicts += 1
    return {"appended": appended, "conflicts": conflicts}


@pytest.mark.timeout(120)
def test_concurrent_appends_to_one_did_log_keep_every_line_once(store):
    """8 writers append to one DID log with expected_version and retry on ConflictError:
    every line is there exactly once and record_version counts every append."""
    _, manager = store
    scid = "QmSharedLog"
    genesis = {"versionId": "genesis"}
    manager.create_log_entry(
        scid, f"did:webvh:{scid}:example.com", "example.com", "ns", "id", [genesis]
    )

    results = run_threads(APPEND_THREADS, lambda n: append_lines(manager, scid, n))

    appended = sum(r["appended"] for r in results)
    assert appended == APPEND_THREADS * APPENDS_PER_THREAD
    final = manager.get_log_entry(scid)
    expected_lines = {f"{t}-{n}" for t in range(APPEND_THREADS) for n in range(APPENDS_PER_THREAD)}
    version_ids = [line["versionId"] for line in final.logs]
    assert version_ids[0] == "genesis"
    assert sorted(version_ids[1:]) == sorted(expected_lines), "a line was lost or duplicated"
    assert final.record_version == 1 + appended
    for t in range(APPEND_THREADS):  # each writer's own lines stay in its order
        own = [v for v in version_ids if v.startswith(f"{t}-")]
        assert own == [f"{t}-{n}" for n in range(APPENDS_PER_THREAD)]
    assert_no_connection_left(manager)


@pytest.mark.timeout(60)
def test_stale_expected_version_writes_nothing(store):
    """The loser of a race gets ConflictError and the winner's data stays intact."""
    _, manager = store
    manager.create_log_entry("QmRace", "did:webvh:QmRace:x", "x", "ns", "id", [{"v": 1}])
    manager.update_log_entry("QmRace", expected_version=1, logs=[{"v": 1}, {"v": 2}])
    with pytest.raises(ConflictError):
        manager.update_log_entry("QmRace", expected_version=1, logs=[{"v": "stale"}])
    with pytest.raises(ConflictError):
        manager.create_or_update_witness_file("QmRace", [], expected_version=3)
    after = manager.get_log_entry("QmRace")
    assert after.logs == [{"v": 1}, {"v": 2}]
    assert after.record_version == 2
    assert manager.get_witness_file("QmRace") is None


# --- the record_version column arrives by migration (Alembic 0002) ------------------------


def _legacy_rows(conn: Any, dialect: str) -> None:
    """Rows as a pre-0002 server wrote them: no record_version column exists yet."""
    from sqlalchemy import text

    seq = "" if dialect == "postgresql" else ", seq"
    seq_values = "" if dialect == "postgresql" else ", :seq"
    for n in range(3):
        conn.execute(
            text(
                "INSERT INTO log_entries (scid, did, domain, namespace, identifier, logs, "
                f"deactivated, created_at, updated_at{seq}) VALUES (:scid, :did, 'example.com',"
                f" 'ns', :scid, :logs, false, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP{seq_values})"
            ),
            {
                "scid": f"legacy-{n}",
                "did": f"did:webvh:legacy-{n}",
                "seq": n + 1,
                "logs": f'[{{"versionId": "1-legacy-{n}"}}]',
            },
        )
    conn.execute(
        text(
            "INSERT INTO tasks (task_id, task_type, status, progress, message, created_at, "
            f"updated_at{seq}) VALUES ('legacy-task', 't', 's', '{{}}', NULL, "
            f"CURRENT_TIMESTAMP, CURRENT_TIMESTAMP{seq_values})"
        ),
        {"seq": 1},
    )


@pytest.mark.parametrize("variant", ["sqlite-file", "postgres"])
@pytest.mark.timeout(60)
def test_rows_from_revision_0001_get_record_version_1_and_keep_their_order(
    variant, request, tmp_path
):
    """A database created by 0001 (before optimistic concurrency) with data in it is
    provisioned (upgraded to head): every old row has record_version 1, optimistic
    updates work on it, and new rows sort after the old ones."""
    from alembic import command
    from sqlalchemy import create_engine

    from webvh_storage_sqlalchemy.migrations import alembic_config

    if variant == "postgres":
        from tests.pg import require_pg

        pg = request.getfixturevalue("pg_server")
        require_pg(pg)
        url = pg.sqlalchemy_url(pg.create_database("webvh_rel_legacy"))
    else:
        url = f"sqlite:///{tmp_path}/legacy.db"
    engine = create_engine(url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0001_initial")
        _legacy_rows(conn, engine.dialect.name)
    engine.dispose()

    manager = StorageManager(Settings.from_env(backend="sqlalchemy", url=url))
    try:
        manager.init_db()  # no recreate: upgrade in place, keep the data
        assert manager.info()["schema_revision"] != "0001_initial"
        legacy = manager.get_log_entries()
        assert [e.scid for e in legacy] == [f"legacy-{n}" for n in range(3)]
        assert {e.record_version for e in legacy} == {1}
        assert legacy[0].logs == [{"versionId": "1-legacy-0"}]
        assert manager.get_task("legacy-task").record_version == 1
        with pytest.raises(ConflictError):
            manager.update_log_entry("legacy-0", expected_version=2, deactivated=True)
        updated = manager.update_log_entry("legacy-0", expected_version=1, deactivated=True)
        assert updated.record_version == 2
        manager.create_log_entry("new", "did:webvh:new", "example.com", "ns", "new", [])
        assert [e.scid for e in manager.get_log_entries()][-1] == "new"
    finally:
        manager.close()
