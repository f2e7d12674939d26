"""Issue 14, start-up race: every worker of a server provisions the store at start-up.

"Six processes provisioning a fresh PostgreSQL database at the same moment: in 5 of 10 runs
at least one worker died with `duplicate key value violates unique constraint
"pg_type_typname_nsp_index"`." Here 8 real processes (spawned, released together by a
barrier) provision the same fresh store in each of 10 rounds, on every persistent
variant: none may fail, and the store ends at head.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from storage_core import open_storage
from storage_core.errors import BackendUnavailableError
from storage_core.filelock import FileLock
from storage_core.records import LogEntry
from tests.pg import PgServer, require_pg
from webvh_storage_sqlalchemy.migrations import head_revision

PROCESSES = 8
ROUNDS = 10
_PRELOAD = [
    "storage_core.plugins",
    "webvh_storage_sqlalchemy.backend",
    "webvh_storage_askar.config",
    "psycopg2",
    "tests.test_deployment_provision",
]


def _provision_each(backend: str, urls: list[str], barrier: Any, results: Any) -> None:
    """One worker: for each round's store, open it, wait for every other worker, then
    provision it at the same moment as they do."""
    failures: list[str] = []
    for url in urls:
        store = open_storage(backend, url)
        try:
            barrier.wait(timeout=120)
            store.init_db()
        except Exception as exc:  # reported by the test
            failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            store.close()
    results.put(failures)


def _race(backend: str, urls: list[str]) -> list[str]:
    # forkserver: each worker is forked from a server that imported the library once
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    workers = [
        ctx.Process(target=_provision_each, args=(backend, urls, barrier, results))
        for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    failures: list[str] = []
    for _ in workers:
        failures += results.get(timeout=300)
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    return failures


def _entry(scid: str) -> LogEntry:
    return LogEntry(
        scid=scid,
        did=f"did:webvh:{scid}:x",
        domain="x",
        namespace="n",
        identifier=scid,
        logs=[{"v": scid}],
    )


def _assert_ready(backend: str, url: str) -> None:
    """The store is provisioned at head: it opens, and takes and returns a record."""
    store = open_storage(backend, url)
    try:
        if backend == "sqlalchemy":
            assert store.info()["schema_revision"] == head_revision()
        store.create_record(_entry("after"))
        assert store.count_log_entries() == 1
    finally:
        store.close()


def _fresh_stores(variant: str, tmp_path: Path, pg_server: PgServer | None) -> list[str]:
    if variant == "sqlite-file":
        return [f"sqlite:///{tmp_path}/r{n}/store.db" for n in range(ROUNDS)]
    if variant == "askar-sqlite":
        return [f"sqlite://{tmp_path}/r{n}/askar.db" for n in range(ROUNDS)]
    assert pg_server is not None
    if variant == "postgres":
        return [
            pg_server.sqlalchemy_url(pg_server.create_database("webvh_race")) for _ in range(ROUNDS)
        ]
    # askar-postgres: half the rounds start with no database at all (Askar creates it)
    urls = []
    for n in range(ROUNDS):
        if n % 2:
            name = pg_server.create_database("webvh_race_askar")
        else:
            # unique per run: a run killed before its clean-up leaves its databases behind
            name = f"webvh_race_askar_missing_{os.getpid()}_{uuid.uuid4().hex[:8]}"
            pg_server.created.append(name)
        urls.append(pg_server.askar_uri(name))
    return urls


@pytest.mark.timeout(600)
@pytest.mark.parametrize("variant", ["sqlite-file", "postgres", "askar-sqlite", "askar-postgres"])
def test_workers_provisioning_one_fresh_store_at_once_all_succeed(
    variant: str, tmp_path: Path, request: pytest.FixtureRequest
):
    pg_server = None
    if variant.endswith("postgres"):
        pg_server = request.getfixturevalue("pg_server")
        require_pg(pg_server)
    for n in range(ROUNDS):
        (tmp_path / f"r{n}").mkdir()
    backend = "askar" if variant.startswith("askar") else "sqlalchemy"
    urls = _fresh_stores(variant, tmp_path, pg_server)
    failures = _race(backend, urls)
    assert failures == [], f"{len(failures)} of {PROCESSES * ROUNDS} failed: {failures[:3]}"
    for url in urls:
        _assert_ready(backend, url)


@pytest.mark.parametrize("backend", ["sqlalchemy", "askar"])
def test_threads_recreating_one_store_at_once_all_succeed(backend: str, tmp_path: Path):
    """recreate=True is serialised the same way (here by threads of one process, each
    with its own store object): every one succeeds and the store ends empty at head."""
    url = f"sqlite:///{tmp_path}/t.db" if backend == "sqlalchemy" else f"sqlite://{tmp_path}/t.db"
    stores = [open_storage(backend, url) for _ in range(4)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(stores))

    def recreate(store: Any) -> None:
        try:
            start.wait()
            store.init_db(recreate=True)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=recreate, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    assert errors == []
    _assert_ready(backend, url)


def test_the_lock_file_sits_beside_the_database_owner_only(tmp_path: Path):
    store = open_storage("sqlalchemy", f"sqlite:///{tmp_path}/a.db")
    store.init_db()
    store.close()
    lock = tmp_path / "a.db.lock"
    assert lock.exists()
    assert lock.stat().st_mode & 0o777 == 0o600
    with FileLock(tmp_path / "a.db"):  # free again once provisioning is done
        pass


def test_an_askar_store_in_a_missing_directory_is_unavailable(tmp_path: Path):
    """The lock file cannot be made: BackendUnavailableError naming the store's file."""
    store = open_storage("askar", f"sqlite://{tmp_path}/no/such/a.db")
    try:
        with pytest.raises(BackendUnavailableError, match=r"a\.db"):
            store.init_db()
    finally:
        store.close()


def test_askar_on_a_server_that_refuses_the_lock_connection_is_unavailable(
    pg_server: PgServer,
):
    """The lock's own connection fails (no such role): a masked BackendUnavailableError."""
    require_pg(pg_server)
    url = pg_server.askar_uri("postgres").replace("postgres@", "nobody_here:s3cret@")
    store = open_storage("askar", url)
    try:
        with pytest.raises(BackendUnavailableError) as info:
            store.init_db()
        assert "s3cret" not in str(info.value)
    finally:
        store.close()


def test_a_sqlite_uri_filename_is_locked_beside_its_file(tmp_path: Path):
    store = open_storage("sqlalchemy", f"sqlite:///file:{tmp_path}/u.db?uri=true")
    try:
        store.init_db()
    finally:
        store.close()
    assert (tmp_path / "u.db.lock").exists()
    assert not Path("file:").exists()


@pytest.mark.timeout(60)
async def test_a_cancelled_wait_for_the_provisioning_lock_never_keeps_it(tmp_path: Path):
    """An Askar open cancelled while it waits for another process's lock: once the lock
    comes free, it is taken and released at once, so nobody waits for it forever."""
    import asyncio

    from webvh_storage_askar.lifecycle import _waiting_aside

    other = FileLock(tmp_path / "s.db").acquire()
    waiting = asyncio.ensure_future(_waiting_aside(FileLock(tmp_path / "s.db")))
    await asyncio.sleep(0.05)  # let it start waiting (correct either way)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    other.release()
    later = FileLock(tmp_path / "s.db")
    await asyncio.to_thread(later.acquire)  # would hang if the cancelled wait kept it
    later.release()


@pytest.mark.parametrize(
    "target",
    ["loop", "missing-dir"],
    ids=["symlink-loop", "dangling-symlink"],
)
def test_an_askar_store_path_that_is_a_broken_symlink_is_unavailable(target: str, tmp_path: Path):
    """The lock beside it is fine, the store file itself cannot be made or opened."""
    path = tmp_path / "s.db"
    path.symlink_to(path if target == "loop" else tmp_path / "no" / "such.db")
    store = open_storage("askar", f"sqlite://{path}")
    try:
        with pytest.raises(BackendUnavailableError, match=r"s\.db"):
            store.init_db()
    finally:
        store.close()


@pytest.mark.timeout(60)
def test_a_wait_for_the_file_lock_interrupted_leaks_no_descriptor(tmp_path: Path):
    """A signal handler raising while flock waits (e.g. a worker's shutdown): the error
    propagates and the lock file's descriptor is closed."""
    import contextlib
    import os
    import signal

    def interrupt(_signum: int, _frame: object) -> None:
        raise InterruptedError("shutting down")

    def open_on_lock_file() -> int:
        lock_file = str(tmp_path / "s.db.lock")
        found = 0
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):  # listdir's own descriptor, gone by now
                found += os.readlink(f"/proc/self/fd/{fd}") == lock_file
        return found

    other = FileLock(tmp_path / "s.db").acquire()
    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(InterruptedError):
            FileLock(tmp_path / "s.db").acquire()
        assert open_on_lock_file() == 1  # the other holder's only
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        other.release()
    assert open_on_lock_file() == 0
