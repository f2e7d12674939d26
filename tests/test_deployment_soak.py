"""Issue 14, load: a bounded soak of what production looks like. 4 worker processes x 16
threads of mixed reads (replica) and `expected_version` writes (primary), both through
PgBouncer in transaction pooling mode, against a primary and its streaming standby.

Must hold: no error other than ConflictError; no acknowledged write lost (every key's
log holds exactly the tokens whose update was acknowledged, and its record_version counts
them); each process within its pool budget (clients at PgBouncer) and PgBouncer within
its server pool (connections at the primary). The figures are printed (run with -s).
The async-task variant waits for the async API (another issue).
"""

from __future__ import annotations

import json
import multiprocessing
import random
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.pgbouncer import PgBouncer
from tests.servers import require_binary
from tests.standby import ReplicatedPair, replicated_pair  # noqa: F401 (the fixture)

PROCESSES = 4
THREADS = 16
OPS_PER_THREAD = 30
KEYS = 24
WRITE_SHARE = 0.3
POOL_SIZE, MAX_OVERFLOW = 4, 2
_PRELOAD = ["storage_core.plugins", "webvh_storage_sqlalchemy.backend", "psycopg2"]


def _soak_worker(primary_url: str, read_url: str, seed: int, results: Any) -> None:
    """One server process: THREADS threads sharing one store (one pool)."""
    from storage_core import open_storage
    from storage_core.errors import ConflictError

    store = open_storage(
        "sqlalchemy",
        primary_url,
        read_urls=read_url,
        # a thread reads the primary for max_lag + check_interval after its own write
        replica_max_lag=1,
        replica_check_interval=0.25,
        pool_size=POOL_SIZE,
        max_overflow=MAX_OVERFLOW,
        pool_timeout=60,
    )
    report: dict[str, Any] = {"reads": 0, "conflicts": 0, "errors": [], "acked": {}}
    lock = threading.Lock()

    def run(thread: int) -> None:
        rng = random.Random(seed * 100 + thread)
        reads = conflicts = 0
        acked: list[tuple[str, str]] = []
        for n in range(OPS_PER_THREAD):
            key = f"k{rng.randrange(KEYS)}"
            try:
                if rng.random() < WRITE_SHARE:
                    with store.primary():
                        current = store.get_log_entry(key)
                    token = f"{seed}.{thread}.{n}"
                    try:
                        store.update_log_entry(
                            key,
                            logs=[*current.logs, {"t": token}],
                            expected_version=current.record_version,
                        )
                        acked.append((key, token))
                    except ConflictError:
                        conflicts += 1
                else:
                    choice = rng.randrange(4)
                    if choice == 0:
                        store.get_log_entry(key)
                    elif choice == 1:
                        store.get_log_entries({"namespace": "soak"}, limit=10)
                    elif choice == 2:
                        store.count_log_entries({"namespace": "soak"})
                    else:
                        sum(1 for _ in store.stream_records("log_entry", batch_size=8))
                    reads += 1
            except Exception as exc:
                with lock:
                    report["errors"].append(f"{type(exc).__name__}: {exc}")
        with lock:
            report["reads"] += reads
            report["conflicts"] += conflicts
            for key, token in acked:
                report["acked"].setdefault(key, []).append(token)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.close()
    results.put(json.dumps(report))


class Sampler:
    """Samples, until stopped, PgBouncer's clients for the database and the primary's
    server connections to it."""

    def __init__(self, bouncers: list[PgBouncer], pair: ReplicatedPair, database: str) -> None:
        self.bouncers, self.pair, self.database = bouncers, pair, database
        self.clients: list[int] = []
        self.servers: list[int] = []
        self.standby_servers: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        sql = (
            "SELECT count(*) FROM pg_stat_activity"
            f" WHERE datname = '{self.database}' AND backend_type = 'client backend'"
        )
        while not self._stop.is_set():
            self.clients.append(max(b.clients(self.database) for b in self.bouncers))
            self.servers.append(int(self.pair.primary.execute(sql)[0][0]))
            self.standby_servers.append(int(self.pair.standby.execute(sql)[0][0]))
            time.sleep(0.02)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def bouncers(replicated_pair: ReplicatedPair) -> Iterator[list[PgBouncer]]:  # noqa: F811
    binary = require_binary("pgbouncer", "pgbouncer")
    started: list[PgBouncer] = []
    try:
        for cluster in (replicated_pair.primary, replicated_pair.standby):
            bouncer = PgBouncer(binary, cluster.dsn)
            bouncer.start()
            started.append(bouncer)
        yield started
    finally:
        for bouncer in started:
            bouncer.stop()


@pytest.mark.timeout(600)
def test_soak_four_processes_sixteen_threads_primary_replica_pgbouncer(
    replicated_pair: ReplicatedPair,  # noqa: F811
    bouncers: list[PgBouncer],
):
    from storage_core import open_storage
    from storage_core.records import LogEntry

    database = f"webvh_soak_{uuid.uuid4().hex[:8]}"
    replicated_pair.create_database(database)
    primary_url, read_url = (b.url(database) for b in bouncers)
    setup = open_storage("sqlalchemy", primary_url)
    setup.init_db()
    setup.bulk_upsert(
        "log_entry",
        [
            LogEntry(
                scid=f"k{n}",
                did=f"did:webvh:k{n}:x",
                domain="x",
                namespace="soak",
                identifier=f"k{n}",
                logs=[],
            )
            for n in range(KEYS)
        ],
    )
    replicated_pair.wait_replayed()
    setup.close()  # from here on, only the workers connect to this database

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    results = ctx.Queue()
    workers = [
        ctx.Process(target=_soak_worker, args=(primary_url, read_url, seed, results))
        for seed in range(PROCESSES)
    ]
    started = time.monotonic()
    with Sampler(bouncers, replicated_pair, database) as sampler:
        for worker in workers:
            worker.start()
        reports = [json.loads(results.get(timeout=500)) for _ in workers]
        for worker in workers:
            worker.join(timeout=60)
    elapsed = time.monotonic() - started

    errors = [e for r in reports for e in r["errors"]]
    acked: dict[str, list[str]] = {}
    for report in reports:
        for key, tokens in report["acked"].items():
            acked.setdefault(key, []).extend(tokens)
    lost = 0
    setup = open_storage("sqlalchemy", primary_url)
    with setup.primary():
        for n in range(KEYS):
            entry = setup.get_log_entry(f"k{n}")
            stored = [line["t"] for line in entry.logs]
            expected = acked.get(f"k{n}", [])
            lost += len(set(expected) - set(stored))
            assert sorted(stored) == sorted(expected), f"k{n}"
            assert entry.record_version == 1 + len(expected)
    setup.close()
    figures = {
        "processes x threads": f"{PROCESSES} x {THREADS}",
        "operations": PROCESSES * THREADS * OPS_PER_THREAD,
        "reads": sum(r["reads"] for r in reports),
        "acknowledged writes": sum(len(t) for t in acked.values()),
        "conflicts": sum(r["conflicts"] for r in reports),
        "errors": len(errors),
        "lost acknowledged writes": lost,
        "max clients at one PgBouncer": max(sampler.clients),
        "client budget": PROCESSES * (POOL_SIZE + MAX_OVERFLOW),
        "max server connections at the primary": max(sampler.servers),
        "max server connections at the standby": max(sampler.standby_servers),
        "PgBouncer server pool": bouncers[0].pool_size,
        "seconds": round(elapsed, 1),
    }
    print("\nsoak:", json.dumps(figures, indent=1))
    assert errors == [], errors[:3]
    assert all(w.exitcode == 0 for w in workers)
    assert max(sampler.clients) <= PROCESSES * (POOL_SIZE + MAX_OVERFLOW)
    assert max(sampler.servers) <= bouncers[0].pool_size
    assert 1 <= max(sampler.standby_servers) <= bouncers[1].pool_size  # replica reads
    assert figures["acknowledged writes"] > 0 and figures["reads"] > 0
