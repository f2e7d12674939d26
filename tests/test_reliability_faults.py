"""Faults on real infrastructure: a cut network path, a killed writer, a read-only,
missing or full filesystem, a wrong encryption key.

For each: the caller gets a StorageError that names the cause (never a raw driver error
and never a hang), nothing is half-written, and the store works again once the fault is
gone, without restarting the process.

Reproduce: `uv run pytest tests/test_reliability_faults.py -q`
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from storage_core import StorageManager, open_storage
from storage_core.config import Settings
from storage_core.errors import BackendUnavailableError, StorageError, StorageIOError
from tests.faults import TcpForwarder, can_mount, small_filesystem, start_writer
from tests.pg import require_pg

CONNECT_TIMEOUT = 2
#: Time a failing call may take beyond the connect timeout (scheduling, one retry).
SLACK = 3.0
needs_mount = pytest.mark.skipif(not can_mount(), reason="cannot mount a tmpfs here")


def integrity_ok(path: Path) -> bool:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()


def timed_failure(call: Callable[[], Any]) -> tuple[StorageError, float]:
    """Run a call that must fail; return its StorageError and how long it took."""
    started = time.monotonic()
    with pytest.raises(StorageError) as failure:
        call()
    return failure.value, time.monotonic() - started


# --- the network path to PostgreSQL is cut --------------------------------------------


@pytest.fixture
def forwarded_store(request, pg_server) -> Iterator[tuple[str, StorageManager, TcpForwarder]]:
    """A store on PostgreSQL reached only through a TcpForwarder we can cut."""
    require_pg(pg_server)
    backend = request.param
    db = pg_server.create_database("webvh_rel_fault")
    with TcpForwarder() as forwarder:
        host = f"postgres@127.0.0.1:{forwarder.port}/{db}"
        if backend == "sqlalchemy":
            url = f"postgresql+psycopg2://{host}"
        else:
            url = f"postgres://{host}?connect_timeout={CONNECT_TIMEOUT}&max_connections=4"
        manager = StorageManager(
            Settings.from_env(
                backend=backend,
                url=url,
                # SQL backend options (Askar takes its timeout in the URL above)
                **(
                    {
                        "connect_timeout": CONNECT_TIMEOUT,
                        "pool_size": 3,
                        "max_overflow": 2,
                        "pool_timeout": CONNECT_TIMEOUT,
                    }
                    if backend == "sqlalchemy"
                    else {}
                ),
            )
        )
        try:
            manager.init_db(recreate=True)
            yield backend, manager, forwarder
        finally:
            manager.close()


def _workload(manager: StorageManager, prefix: str, count: int) -> None:
    """Fill the pool with live connections: parallel writes, then reads."""
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda n: manager.create_task(f"{prefix}{n}", "t", "s"), range(count)))
        list(pool.map(lambda n: manager.get_task(f"{prefix}{n}"), range(count)))


@pytest.mark.parametrize("forwarded_store", ["sqlalchemy", "askar"], indirect=True)
@pytest.mark.parametrize("mode", ["refuse", "blackhole"])
@pytest.mark.timeout(90)
def test_outage_fails_within_connect_timeout_and_recovers_in_process(forwarded_store, mode):
    """During the outage every call (also 6 at once) fails with BackendUnavailableError
    within the connect timeout: `refuse` is a server that is down, `blackhole` a route
    that drops packets, where only the timeout stops a hang. After restore the same
    manager works again and nothing attempted during the outage was written."""
    _, manager, forwarder = forwarded_store
    _workload(manager, "before-", 12)

    forwarder.cut(mode)
    calls = [
        lambda: manager.get_task("before-1"),
        lambda: manager.create_task("during", "t", "s"),
        lambda: manager.update_task("before-2", status="changed"),
        lambda: manager.count_tasks(),
        lambda: manager.get_tasks({"status": "s"}),
        lambda: manager.delete_task("before-3"),
    ]
    for call in calls[:2]:  # one at a time, then all at once
        error, took = timed_failure(call)
        assert isinstance(error, BackendUnavailableError), repr(error)
        assert took < CONNECT_TIMEOUT + SLACK, f"{took:.1f}s: {error}"
    with ThreadPoolExecutor(len(calls)) as pool:
        results = list(pool.map(timed_failure, calls))
    assert all(isinstance(error, BackendUnavailableError) for error, _ in results), results
    assert max(took for _, took in results) < CONNECT_TIMEOUT + SLACK, results
    assert manager.health_check() is False

    forwarder.restore()
    assert manager.health_check() is True
    assert manager.get_task("during") is None, "a write refused during the outage landed"
    assert manager.get_task("before-2").status == "s"
    assert manager.get_task("before-3") is not None
    _workload(manager, "after-", 12)
    assert manager.count_tasks() == 24


@pytest.mark.parametrize(
    "forwarded_store",
    ["sqlalchemy", "askar"],
    indirect=True,
)
@pytest.mark.timeout(60)
def test_connections_reset_while_server_stays_up_do_not_fail_callers(forwarded_store):
    """A blip (every pooled connection reset, e.g. a PostgreSQL restart or failover,
    and the server immediately back): no caller should see an error, because stale
    pooled connections are detected and replaced before use."""
    _, manager, forwarder = forwarded_store
    _workload(manager, "warm-", 16)
    forwarder.cut("refuse")
    forwarder.restore()
    failures = []
    for n in range(8):
        try:
            manager.get_task(f"warm-{n}")
            manager.create_task(f"after-blip-{n}", "t", "s")
        except StorageError as exc:
            failures.append(str(exc))
    assert failures == [], f"{len(failures)} calls failed after the blip: {failures[:2]}"
    assert manager.count_tasks() == 24


# --- a writer process is killed ---------------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "scheme"), [("sqlalchemy", "sqlite:///"), ("askar", "sqlite://")]
)
@pytest.mark.timeout(120)
def test_sigkilled_writer_loses_no_acknowledged_write(backend, scheme, tmp_path):
    """A writer killed with SIGKILL three times mid-loop: every write it acknowledged
    (printed after create returned) is in the store, the file passes integrity_check,
    and the next writer carries on in the same file."""
    path = tmp_path / "crash.db"
    url = f"{scheme}{path}"
    acknowledged: list[str] = []
    for round_no, wait_for in enumerate([20, 3, 10]):
        writer = start_writer(backend, url, prefix=f"r{round_no}-")
        writer.wait_for(wait_for)
        writer.kill()
        acknowledged += writer.acknowledged
        assert integrity_ok(path), f"round {round_no}: corrupt after SIGKILL"

    with open_storage(backend, url) as manager:
        manager.init_db()  # no recreate: must keep everything
        stored = {e.scid for e in manager.get_log_entries()}
        missing = [scid for scid in acknowledged if scid not in stored]
        assert missing == [], f"{len(missing)} acknowledged writes lost: {missing[:5]}"
        for scid in acknowledged[:: max(1, len(acknowledged) // 10)]:
            entry = manager.get_log_entry(scid)
            assert entry.logs[0]["versionId"] == f"1-{scid}"
        # At most the one write in flight at the kill may exist unacknowledged.
        assert len(stored) - len(set(acknowledged)) <= 3
        manager.create_log_entry("after-crash", "did:x", "x", "n", "i", [])
    assert integrity_ok(path)


# --- read-only, missing and full filesystems -------------------------------------------


def test_read_only_sqlite_database_refuses_writes_and_keeps_data(tmp_path):
    """Root ignores file modes, so read-only is produced by SQLite itself (mode=ro URI):
    reads work, writes fail with StorageIOError naming the cause, nothing changes."""
    path = tmp_path / "ro.db"
    with open_storage("sqlalchemy", f"sqlite:///{path}") as manager:
        manager.init_db()
        manager.create_task("kept", "t", "s")
    with open_storage("sqlalchemy", f"sqlite:///file:{path}?mode=ro&uri=true") as read_only:
        assert read_only.get_task("kept") is not None
        for write in (
            lambda: read_only.create_task("new", "t", "s"),
            lambda: read_only.update_task("kept", status="changed"),
            lambda: read_only.delete_task("kept"),
        ):
            with pytest.raises(StorageIOError, match="readonly"):
                write()
        assert read_only.count_tasks() == 1
        assert read_only.get_task("kept").status == "s"


@needs_mount
@pytest.mark.parametrize(
    ("backend", "scheme"), [("sqlalchemy", "sqlite:///"), ("askar", "sqlite://")]
)
@pytest.mark.timeout(60)
def test_read_only_filesystem_gives_a_storage_error_and_data_survives(backend, scheme):
    """A filesystem remounted read-only (EROFS: root cannot bypass it): calls fail with a
    BackendUnavailableError or StorageIOError, never a raw error, and the data is intact
    once it is writable again."""
    with small_filesystem(4 * 1024 * 1024) as fs:
        url = f"{scheme}{fs.path}/store.db"
        with open_storage(backend, url) as manager:
            manager.init_db()
            manager.create_task("kept", "t", "s")
        fs.make_read_only()
        try:
            with open_storage(backend, url) as manager:
                for call in (
                    lambda: manager.create_task("new", "t", "s"),
                    lambda: manager.update_task("kept", status="changed"),
                ):
                    with pytest.raises((StorageIOError, BackendUnavailableError)):
                        call()
        finally:
            fs.make_writable()
        with open_storage(backend, url) as manager:
            assert [t.task_id for t in manager.get_tasks()] == ["kept"]
            assert manager.get_task("kept").status == "s"
        assert integrity_ok(fs.path / "store.db")


@pytest.mark.parametrize(
    ("backend", "scheme"),
    [("sqlalchemy", "sqlite:///"), ("askar", "sqlite://")],
)
def test_database_path_that_cannot_exist_is_backend_unavailable(backend, scheme, tmp_path):
    """A database path below a regular file can never be opened or created: both
    backends say so with BackendUnavailableError naming the path problem."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    url = f"{scheme}{blocker}/store.db"
    with (
        pytest.raises(BackendUnavailableError, match=r"(?i)directory|unable to open"),
        open_storage(backend, url) as manager,
    ):
        manager.init_db()


def test_missing_database_file_with_mode_rw_is_backend_unavailable(tmp_path):
    """`mode=rw` forbids creating the file: a missing database is reported, not created."""
    url = f"sqlite:///file:{tmp_path}/absent.db?mode=rw&uri=true"
    with (
        open_storage("sqlalchemy", url) as manager,
        pytest.raises(BackendUnavailableError, match="unable to open database file"),
    ):
        manager.get_task("x")
    assert not (tmp_path / "absent.db").exists()


@needs_mount
@pytest.mark.parametrize(
    ("backend", "scheme"),
    [("sqlalchemy", "sqlite:///"), ("askar", "sqlite://")],
)
@pytest.mark.timeout(60)
def test_full_disk_refuses_writes_cleanly_and_recovers(backend, scheme):
    """A 1 MiB tmpfs filled up: writes fail with StorageIOError "database or disk is
    full", and once space is freed writes succeed again in the same process. Every write
    that was acknowledged (before, during or after) is still there after reopening, in
    order, and the file passes integrity_check."""
    with small_filesystem(1024 * 1024) as fs:
        url = f"{scheme}{fs.path}/store.db"
        with open_storage(backend, url) as manager:
            manager.init_db()
            for n in range(5):
                manager.create_log_entry(f"s{n}", "did:x", "x", "n", "i", [{"pad": "y" * 1000}])
            acknowledged = [f"s{n}" for n in range(5)]
            ballast = fs.fill()
            refused = 0
            for n in range(5, 25):
                try:
                    manager.create_log_entry(f"s{n}", "d", "x", "n", "i", [{"pad": "y" * 20000}])
                    acknowledged.append(f"s{n}")
                except StorageError as exc:
                    refused += 1
                    assert isinstance(exc, StorageIOError), repr(exc)
                    assert "full" in str(exc)
            assert refused >= 1, "the disk never filled up"
            ballast.unlink()
            manager.create_log_entry("after", "did:x", "x", "n", "i", [])
            acknowledged.append("after")
            assert manager.get_log_entry("after") is not None
        assert integrity_ok(fs.path / "store.db")
        with open_storage(backend, url) as reopened:  # acknowledged means durable
            reopened.init_db()
            stored = [e.scid for e in reopened.get_log_entries()]
            assert stored == acknowledged, "acknowledged writes lost after the disk was full"
            for scid in stored[:5]:
                assert reopened.get_log_entry(scid).logs[0]["pad"] == "y" * 1000


# --- a wrong Askar key --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "wrong_key"),
    [("raw", "generated"), ("none", None), ("kdf:argon2i", "a passphrase")],
)
def test_wrong_askar_key_is_a_clear_error_and_changes_nothing(tmp_path, method, wrong_key):
    """Opening with another key or key method: StorageIOError saying so, on provision
    and on every call, and the store still holds exactly its data for the right key."""
    from aries_askar import Store

    right_key = Store.generate_raw_key()
    url = f"sqlite://{tmp_path}/keyed.db"
    with open_storage("askar", url, key_method="raw", key=right_key) as manager:
        manager.init_db()
        manager.create_task("secret-task", "t", "s")
    options: dict[str, Any] = {"key_method": method}
    if wrong_key is not None:
        options["key"] = Store.generate_raw_key() if wrong_key == "generated" else wrong_key
    with open_storage("askar", url, **options) as wrong:
        with pytest.raises(StorageIOError, match="wrong Askar key"):
            wrong.init_db()
        for call in (
            lambda: wrong.get_task("secret-task"),
            lambda: wrong.create_task("intruder", "t", "s"),
            lambda: wrong.count_tasks(),
        ):
            with pytest.raises(StorageIOError, match="wrong Askar key"):
                call()
    with open_storage("askar", url, key_method="raw", key=right_key) as manager:
        manager.init_db()
        assert [t.task_id for t in manager.get_tasks()] == ["secret-task"]
