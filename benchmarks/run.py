"""webvh-storage benchmark: every figure is a ratio against a baseline run in the same
process on the same data (see benchmarks/README.md).

    uv run python benchmarks/run.py                       # all backends, 100k entries
    uv run python benchmarks/run.py --size 10000          # a quick run
    uv run python benchmarks/run.py --backend sqlite --backend askar --json out.json

Backends: `sqlite` (SQLAlchemy backend on a SQLite file), `postgres` (SQLAlchemy backend
on PostgreSQL, --pg-url), `askar` (Askar backend on a SQLite file).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import random
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(ROOT), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

import _baselines as B  # noqa: E402
import _data  # noqa: E402
from _measure import Result, compare, table  # noqa: E402

from storage_core import open_storage  # noqa: E402

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
BACKENDS = ("sqlite", "postgres", "askar")
# ours / raw driver targets (higher is better; the median of the per-round ratios must
# reach them), from issue #6, raised by issue #17 for update, filtered page and bulk.
TARGETS: dict[str, dict[str, float]] = {
    "get by key": {"sqlite": 0.5, "postgres": 0.7, "askar": 0.8},
    "filtered page of 50": {"sqlite": 0.8, "postgres": 0.8, "askar": 0.7},
    "create one per call": {"sqlite": 0.5, "postgres": 0.7, "askar": 0.8},
    "update one per call": {"sqlite": 0.8, "postgres": 0.8},
    "bulk upsert": {"sqlite": 0.9, "postgres": 0.9, "askar": 0.8},
    "stream": {"sqlite": 0.7, "postgres": 0.7, "askar": 0.7},
}
SEED_TARGETS: dict[str, dict[str, float]] = {
    "get by key": {"sqlite": 5.0},
    "create one per call": {"sqlite": 5.0},
}
MEMORY_BUDGET_MB = 50


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- stores -----------------------------------------------------------------------------
class Suite:
    """One backend: the store under test (A), empty stores of the same schema for the
    other drivers' bulk loads (B raw, C advanced-alchemy), our manager and the baseline
    drivers on A. `writes()` gives the drivers for create/update: on SQLite each on its
    own copy of A, so a WAL checkpoint lands on whoever wrote, not on whoever crossed the
    threshold."""

    backend: str
    bulk_raw: Any  # raw driver on B
    bulk_peer: Any = None  # advanced-alchemy on C

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.manager: Any = None
        self.ours: B.Ours
        self.raw: Any = None
        self.seed: Any = None
        self.peer: Any = None
        self.cleanup: list[Callable[[], None]] = []

    def close(self) -> None:
        for fn in reversed(self.cleanup):
            with contextlib.suppress(Exception):
                fn()

    def open_manager(self, url: str) -> Any:
        m = open_storage(self.config_backend, url)
        m.init_db(recreate=True)
        return m

    config_backend = "sqlalchemy"

    def writes(self) -> Suite:
        """The drivers for the per-call writes (create, update)."""
        return self

    def add_sql_baselines(self, url: str, bulk_url: str) -> None:
        """The original pattern on A, and advanced-alchemy on A and on C (if installed)."""
        from webvh_storage_sqlalchemy.models import LogEntryRow

        self.seed = B.Seed(url, LogEntryRow)
        self.cleanup.append(self.seed.close)
        if self.args.peer and B.peer_available():
            self.peer = B.Peer(url, LogEntryRow)
            self.cleanup.append(self.peer.close)
            self.bulk_peer = B.Peer(bulk_url, LogEntryRow)
            self.cleanup.append(self.bulk_peer.close)


class SqliteSuite(Suite):
    backend = "sqlite"

    def setup(self) -> None:
        a = self.workdir / "sqlite-a.db"
        b = self.workdir / "sqlite-b.db"
        c = self.workdir / "sqlite-c.db"
        for empty in (b, c):
            open_storage("sqlalchemy", f"sqlite:///{empty}").init_db(recreate=True)
        self.manager = self.open_manager(f"sqlite:///{a}")
        self.cleanup.append(self.manager.close)
        self.ours = B.Ours(self.manager)
        self.raw = B.SqliteRaw(str(a))
        self.cleanup.append(self.raw.close)
        self.bulk_raw = B.SqliteRaw(str(b))
        self.cleanup.append(self.bulk_raw.close)
        self.add_sql_baselines(f"sqlite:///{a}", f"sqlite:///{c}")
        self.url = f"sqlite:///{a}"
        self.path = a

    def _copy(self, source: Path | None, tag: str) -> Path:
        """A copy of `source` (sqlite3's backup API: consistent whatever is in the WAL),
        or a new empty store, in WAL mode."""
        path = self.workdir / f"sqlite-{tag}.db"
        if source is None:
            open_storage("sqlalchemy", f"sqlite:///{path}").init_db(recreate=True)
        else:
            path.unlink(missing_ok=True)
            src, dst = sqlite3.connect(source), sqlite3.connect(path)
            try:
                src.backup(dst)
            finally:
                src.close()
                dst.close()
        db = sqlite3.connect(path)
        db.execute("PRAGMA journal_mode=WAL")
        db.close()
        return path

    def _write_suite(self, label: str, tag: str, source: Path | None, sync: str) -> Suite:
        """Every driver on its own copy of `source` (a new empty store if None)."""
        from webvh_storage_sqlalchemy.models import LogEntryRow

        other = SqliteSuite(self.args, self.workdir)
        other.backend = label
        path = self._copy(source, f"{tag}-ours")
        m = open_storage("sqlalchemy", f"sqlite:///{path}", sqlite_synchronous=sync)
        other.manager = m
        other.cleanup.append(m.close)
        other.ours = B.Ours(m)
        other.raw = B.SqliteRaw(str(self._copy(source, f"{tag}-raw")), synchronous=sync)
        other.cleanup.append(other.raw.close)
        pragma = None if sync == "FULL" else sync  # FULL is SQLite's default
        seed_url = f"sqlite:///{self._copy(source, f'{tag}-original')}"
        other.seed = B.Seed(seed_url, LogEntryRow, sqlite_synchronous=pragma)
        other.cleanup.append(other.seed.close)
        if self.peer is not None:
            peer_url = f"sqlite:///{self._copy(source, f'{tag}-aa')}"
            other.peer = B.Peer(peer_url, LogEntryRow)
            if pragma is not None:
                from sqlalchemy import event

                event.listen(
                    other.peer.config.get_engine(),
                    "connect",
                    lambda conn, _rec: conn.execute(f"PRAGMA synchronous={pragma}"),
                )
            other.cleanup.append(other.peer.close)
        return other

    def writes(self) -> Suite:
        return self._write_suite(self.backend, "w", self.path, "FULL")

    def fresh_url(self, tag: str) -> str:
        return f"sqlite:///{self.workdir / f'sqlite-{tag}.db'}"

    def normal_sync(self) -> Suite:
        """The same backend with synchronous=NORMAL (the documented speed option), every
        driver on its own new file and at NORMAL too: commits stop waiting for fsync, so
        per-call write ratios show the code path rather than the disk."""
        return self._write_suite("sqlite (synchronous=NORMAL)", "normal", None, "NORMAL")


class PostgresSuite(Suite):
    backend = "postgres"

    def _admin(self) -> Any:
        import psycopg2

        conn = psycopg2.connect(self.args.pg_url, connect_timeout=5)
        conn.autocommit = True
        return conn

    def _database(self, tag: str) -> tuple[str, str]:
        name = f"webvh_bench_{os.getpid()}_{tag}"
        conn = self._admin()
        try:
            conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.cursor().execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()

        def drop() -> None:
            c = self._admin()
            try:
                c.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                c.close()

        self.cleanup.insert(0, drop)  # dropped after every connection is closed
        parts = urlsplit(self.args.pg_url)
        dsn = urlunsplit(parts._replace(path="/" + name))
        return urlunsplit(parts._replace(path="/" + name, scheme="postgresql+psycopg2")), dsn

    def setup(self) -> None:
        url_a, dsn_a = self._database("a")
        url_b, dsn_b = self._database("b")
        url_c, _ = self._database("c")
        for empty in (url_b, url_c):
            mb = open_storage("sqlalchemy", empty)
            mb.init_db(recreate=True)
            mb.close()
        self.manager = self.open_manager(url_a)
        self.cleanup.append(self.manager.close)
        self.ours = B.Ours(self.manager)
        self.raw = B.PostgresRaw(dsn_a)
        self.cleanup.append(self.raw.close)
        self.bulk_raw = B.PostgresRaw(dsn_b)
        self.cleanup.append(self.bulk_raw.close)
        self.add_sql_baselines(url_a, url_c)
        self.url = url_a

    def fresh_url(self, tag: str) -> str:
        return self._database(tag)[0]


class AskarSuite(Suite):
    backend = "askar"
    config_backend = "askar"

    def setup(self) -> None:
        a = f"sqlite://{self.workdir / 'askar-a.db'}"
        b = f"sqlite://{self.workdir / 'askar-b.db'}"
        mb = open_storage("askar", b)
        mb.init_db(recreate=True)
        mb.close()
        self.manager = self.open_manager(a)
        self.cleanup.append(self.manager.close)
        self.ours = B.Ours(self.manager)
        self.raw = B.AskarRaw(a)
        self.cleanup.append(self.raw.close)
        self.bulk_raw = B.AskarRaw(b)
        self.cleanup.append(self.bulk_raw.close)
        self.seed = None
        self.url = a

    def fresh_url(self, tag: str) -> str:
        return f"sqlite://{self.workdir / f'askar-{tag}.db'}"


SUITES = {"sqlite": SqliteSuite, "postgres": PostgresSuite, "askar": AskarSuite}


# --- operations -------------------------------------------------------------------------
def _result(suite: Suite, op: str, unit: str, note: str = "") -> Result:
    return Result(
        backend=suite.backend,
        op=op,
        unit=unit,
        target=TARGETS.get(op, {}).get(suite.backend),
        seed_target=SEED_TARGETS.get(op, {}).get(suite.backend),
        note=note,
    )


def bench_bulk(suite: Suite, n: int) -> Result:
    """Load n entries into two empty stores, ours into A and raw into B, chunk by chunk,
    alternating who goes first; each chunk (one bulk_upsert call, one transaction) is a
    round."""
    chunk = max(1000, min(10_000, n // 10))
    res = _result(suite, "bulk upsert", "rows", f"{n} entries, {chunk} per call/transaction")
    res.baselines["raw"] = []
    drivers = [("ours", suite.ours), ("raw", suite.bulk_raw)]
    if suite.bulk_peer is not None:
        res.baselines["advanced-alchemy"] = []
        drivers.append(("advanced-alchemy", suite.bulk_peer))
    totals = dict.fromkeys((who for who, _ in drivers), 0.0)
    for i, batch in enumerate(_data.chunks(n, chunk)):
        k = i % len(drivers)
        for who, driver in drivers[k:] + drivers[:k]:
            gc.collect()
            start = time.perf_counter()
            done = B.run_one(driver, "bulk", batch)
            elapsed = time.perf_counter() - start
            totals[who] += elapsed
            rate = done / elapsed
            (res.ours if who == "ours" else res.baselines[who]).append(rate)
        del batch
    res.note += (
        f"; whole load: ours {n / totals['ours']:,.0f} rows/s, raw {n / totals['raw']:,.0f} "
        f"rows/s, ratio {totals['raw'] / totals['ours']:.2f}"
    )
    return res


def _drivers(suite: Suite, with_seed: bool = True) -> dict[str, Any]:
    out = {"raw": suite.raw}
    if with_seed and suite.seed is not None:
        out["original"] = suite.seed
    if with_seed and suite.peer is not None:
        out["advanced-alchemy"] = suite.peer
    return out


def _compare_calls(
    suite: Suite,
    res: Result,
    method: str,
    make_args: Callable[[str, int], list[tuple]],
    rounds: int,
    with_seed: bool = True,
    slices: int = 10,
) -> Result:
    """Per-call operations. Each round every driver gets its own fresh arguments (built
    untimed); the calls are cut into `slices` slices and the drivers take turns slice by
    slice (order rotated), so a burst of load from elsewhere on the machine hits them
    all alike. A driver's rate for the round is its calls over its summed time."""
    drivers = {"ours": suite.ours, **_drivers(suite, with_seed)}
    names = list(drivers)
    for name in names:
        if name != "ours":
            res.baselines.setdefault(name, [])
    # warm up every driver (statement caches, page cache, pool) untimed
    for who in names:
        warm = make_args(who, -1)
        B.run_many(drivers[who], method, warm[: max(1, len(warm) // 5)])
    for r in range(rounds):
        args = {who: make_args(who, r) for who in names}
        spent = dict.fromkeys(names, 0.0)
        done = dict.fromkeys(names, 0)
        gc.collect()
        for j in range(slices):
            k = (r + j) % len(names)
            for who in names[k:] + names[:k]:
                calls = args[who]
                part = calls[j * len(calls) // slices : (j + 1) * len(calls) // slices]
                start = time.perf_counter()
                done[who] += B.run_many(drivers[who], method, part)
                spent[who] += time.perf_counter() - start
        for who in names:
            rate = done[who] / spent[who]
            (res.ours if who == "ours" else res.baselines[who]).append(rate)
    return res


def bench_get(suite: Suite, n: int, calls: int, rounds: int) -> Result:
    rng = random.Random(1)
    keys = [_data.scid_for(i) for i in range(n)]
    res = _result(suite, "get by key", "ops", f"{calls} random keys per round over {n} rows")
    return _compare_calls(
        suite, res, "get", lambda who, r: [(rng.choice(keys),) for _ in range(calls)], rounds
    )


def bench_page(suite: Suite, n: int, calls: int, rounds: int) -> Result:
    rng = random.Random(2)
    per_ns = n // _data.NAMESPACES
    pages = max(1, min(10, per_ns // B.PAGE))

    def make(who: str, r: int) -> list[tuple]:
        return [
            (_data.namespace_of(rng.randrange(_data.NAMESPACES)), B.PAGE * rng.randrange(pages))
            for _ in range(calls)
        ]

    res = _result(
        suite,
        "filtered page of 50",
        "pages",
        f"namespace = one of {_data.NAMESPACES} ({per_ns} rows each), pages 1-{pages}, "
        f"over {n} rows",
    )
    return _compare_calls(suite, res, "page", make, rounds)


def bench_count(suite: Suite, n: int, calls: int, rounds: int) -> Result:
    rng = random.Random(3)
    res = _result(suite, "count with a filter", "ops", f"count(namespace = x) over {n} rows")
    return _compare_calls(
        suite,
        res,
        "count",
        lambda who, r: [
            (_data.namespace_of(rng.randrange(_data.NAMESPACES)),) for _ in range(calls)
        ],
        rounds,
    )


def bench_create(suite: Suite, calls: int, rounds: int) -> Result:
    counter = iter(range(10**9))

    def make(who: str, r: int) -> list[tuple]:
        salt = f"c{next(counter)}"
        return [(e,) for e in _data.iter_entries(0, calls, salt)]

    res = _result(suite, "create one per call", "ops", f"{calls} new entries per round")
    return _compare_calls(suite, res, "create", make, rounds)


def bench_update(suite: Suite, n: int, calls: int, rounds: int) -> Result:
    rng = random.Random(4)
    extra = _data.entry(3).logs[-1]  # one more version, as a DID update appends

    def make(who: str, r: int) -> list[tuple]:
        out = []
        for _ in range(calls):
            i = rng.randrange(n)
            out.append((_data.scid_for(i), [*_data.entry(i).logs, extra]))
        return out

    res = _result(suite, "update one per call", "ops", f"{calls} per round: logs += one version")
    return _compare_calls(suite, res, "update", make, rounds)


def bench_stream(suite: Suite, n: int, rounds: int) -> Result:
    res = _result(suite, "stream", "rows", f"all {n} entries, batch 500")
    return compare(
        res,
        rounds,
        lambda: B.run_one(suite.ours, "stream", 500),
        {"raw": lambda: B.run_one(suite.raw, "stream", 500)},
    )


def check_same(suite: Suite, n: int) -> None:
    """Ours and the raw driver read the same records from the same store."""
    for i in (0, n // 2, n - 1):
        key = _data.scid_for(i)
        ours = suite.ours.get(key)
        raw = B.run_one(suite.raw, "get", key)
        if ours is None or raw is None or not B.same_record(ours, raw):
            raise SystemExit(f"{suite.backend}: ours and raw disagree on {key}:\n{ours}\n{raw}")
    ours_page = suite.ours.page(_data.namespace_of(7), 50)
    raw_page = B.run_one(suite.raw, "page", _data.namespace_of(7), 50)
    if [r.scid for r in ours_page] != [r.scid for r in raw_page]:
        raise SystemExit(f"{suite.backend}: ours and raw pages differ")
    ns = _data.namespace_of(7)
    if suite.ours.count(ns) != B.run_one(suite.raw, "count", ns):
        raise SystemExit(f"{suite.backend}: ours and raw counts differ")


# --- memory (fresh subprocesses) ------------------------------------------------------------
def peak_rss_mb() -> float:
    """This process's peak RSS. On Linux ru_maxrss survives fork + exec, so a child
    started by a big parent reports the parent's size: VmHWM (the high-water mark of
    this address space, reset by exec) is used where it exists."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def probe_main(args: argparse.Namespace) -> None:
    """Child process: stream one store and print peak RSS as JSON; or run
    bench_migrate.run_size from a small process (its own children report ru_maxrss,
    which would otherwise start at this benchmark's size)."""
    if args.probe == "stream":
        m = open_storage(args.probe_backend, args.probe_url)
        n = sum(1 for _ in m.stream_records("log_entry", batch_size=500))
        m.close()
        print(json.dumps({"rows": n, "maxrss_mb": peak_rss_mb()}))
    elif args.probe == "migrate":
        import bench_migrate

        size, batch = (int(x) for x in args.probe_backend.split(","))
        with contextlib.redirect_stdout(sys.stderr):
            result = bench_migrate.run_size(size, batch, Path(args.probe_url))
        print(json.dumps(result))
    else:
        raise SystemExit(f"unknown probe {args.probe}")


def run_probe(kind: str, backend: str, url: str) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--probe",
        kind,
        "--probe-backend",
        backend,
        "--probe-url",
        url,
    ]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def load_store(backend: str, url: str, n: int) -> None:
    m = open_storage(backend, url)
    m.init_db(recreate=True)
    for batch in _data.chunks(n, 5000):
        m.bulk_upsert("log_entry", batch)
    m.close()


def memory_stream(suite: Suite, small: int, large: int) -> dict[str, Any]:
    small_url = suite.fresh_url(f"mem{small}")
    load_store(suite.config_backend, small_url, small)
    a = run_probe("stream", suite.config_backend, small_url)
    b = run_probe("stream", suite.config_backend, suite.url)
    return {
        "backend": suite.backend,
        "what": "stream",
        "small_rows": a["rows"],
        "small_mb": a["maxrss_mb"],
        "large_rows": b["rows"],
        "large_mb": b["maxrss_mb"],
        "delta_mb": b["maxrss_mb"] - a["maxrss_mb"],
        "ok": b["maxrss_mb"] - a["maxrss_mb"] <= MEMORY_BUDGET_MB,
    }


# --- migration (benchmarks/bench_migrate.py, by the migration tool's author) ----------------
def bench_migration(wd: Path, sizes: tuple[int, int], batch: int) -> tuple[Result, dict]:
    """bench_migrate.run_size per size (called in a small helper process): a legacy
    Askar store of N log entries (plus N witness files and N/5 resources) built in one
    subprocess; a fresh subprocess alternates raw scans with migrate-askar runs into new
    SQLite files (median of 3 rounds, each against the scans on either side of it) and
    reports peak RSS (the migration's plus its reader child's). The row is the larger
    size; memory compares the two."""
    runs = []
    for size in sizes:
        log(f"migration: {size} log entries (bench_migrate.run_size)")
        runs.append(run_probe("migrate", f"{size},{batch}", str(wd)))
    big = runs[-1]
    if big["status"] != 0 or big["migrated"] < big["entries"]:
        log(f"migration: status {big['status']}, {big['migrated']} of {big['entries']} written")
    res = Result(
        backend="askar -> sqlite",
        op="migration",
        unit="entries",
        target=0.7,
        note=(
            f"migrate-askar of {big['entries']} legacy entries ({big['size']} log entries + "
            f"witness files + resources) into a new SQLite file, vs a raw Askar scan of "
            f"the same store (bench_migrate.py; target from the migration issue)"
        ),
    )
    res.ours.append(big["migrate_rate"])
    res.baselines["raw"] = [big["scan_rate"]]
    small = runs[0]
    memory = {
        "backend": "askar -> sqlite",
        "what": "migrate",
        "small_rows": small["entries"],
        "small_mb": small["peak_rss_mb"],
        "large_rows": big["entries"],
        "large_mb": big["peak_rss_mb"],
        "delta_mb": big["peak_rss_mb"] - small["peak_rss_mb"],
        "ok": big["peak_rss_mb"] - small["peak_rss_mb"] <= MEMORY_BUDGET_MB,
        "runs": runs,
    }
    return res, memory


# --- driver -----------------------------------------------------------------------------------
def run_backend(args: argparse.Namespace, name: str, workdir: Path) -> tuple[list, list]:
    n = args.size
    suite = SUITES[name](args, workdir)
    results: list[Result] = []
    memory: list[dict[str, Any]] = []
    try:
        suite.setup()
        log(f"{name}: bulk upsert {n}")
        results.append(bench_bulk(suite, n))
        check_same(suite, n)
        ops = set(args.ops or ())

        def want(op: str) -> bool:
            return not ops or op in ops

        if want("get"):
            log(f"{name}: get by key")
            results.append(bench_get(suite, n, args.gets, args.rounds))
        if want("page"):
            log(f"{name}: filtered page")
            results.append(bench_page(suite, n, args.pages, args.rounds))
        if want("count"):
            log(f"{name}: count")
            results.append(bench_count(suite, n, args.counts, args.rounds))
        if want("stream"):
            log(f"{name}: stream {n}")
            results.append(bench_stream(suite, n, args.stream_rounds))
        if want("memory") and not args.no_memory:
            log(f"{name}: memory, stream {n // 10} vs {n}")
            memory.append(memory_stream(suite, n // 10, n))
        writes = suite.writes() if want("update") or want("create") else suite
        try:
            if want("update"):
                log(f"{name}: update")
                results.append(bench_update(writes, n, args.writes, args.write_rounds))
            if want("create"):
                log(f"{name}: create")
                results.append(bench_create(writes, args.writes, args.write_rounds))
        finally:
            if writes is not suite:
                writes.close()
        if want("create") and isinstance(suite, SqliteSuite):
            log(f"{name}: create, synchronous=NORMAL")
            normal = suite.normal_sync()
            try:
                results.append(bench_create(normal, args.writes, args.write_rounds))
            finally:
                normal.close()
    finally:
        suite.close()
    return results, memory


def memory_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| backend | what | peak RSS small | peak RSS large | difference | budget |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['what']} | {r['small_mb']:.0f} MB ({r['small_rows']} rows) "
            f"| {r['large_mb']:.0f} MB ({r['large_rows']} rows) | {r['delta_mb']:+.1f} MB "
            f"| <= {MEMORY_BUDGET_MB} MB {'ok' if r['ok'] else 'MISS'} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--backend", action="append", choices=BACKENDS, help="repeatable; default: all three"
    )
    ap.add_argument("--size", type=int, default=100_000, help="entries in the store (100000)")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    ap.add_argument(
        "--pg-url",
        default=os.environ.get("TEST_POSTGRES_URL", DEFAULT_PG),
        help="PostgreSQL server (admin) URL; benchmark databases are created and dropped there",
    )
    ap.add_argument("--rounds", type=int, default=5, help="rounds for the read operations")
    ap.add_argument("--write-rounds", type=int, default=3, help="rounds for create/update")
    ap.add_argument("--stream-rounds", type=int, default=3)
    ap.add_argument("--gets", type=int, default=2000, help="gets per round")
    ap.add_argument("--pages", type=int, default=300, help="pages per round")
    ap.add_argument("--counts", type=int, default=300, help="counts per round")
    ap.add_argument("--writes", type=int, default=500, help="creates/updates per round")
    ap.add_argument(
        "--ops",
        action="append",
        choices=("get", "page", "count", "stream", "memory", "update", "create", "migrate"),
        help="only these operations (repeatable; bulk upsert always runs: it loads the data)",
    )
    ap.add_argument(
        "--no-migrate", dest="migrate", action="store_false", help="skip the migration row"
    )
    ap.add_argument("--migrate-size", type=int, help="entries to migrate (default: --size)")
    ap.add_argument("--migrate-batch", type=int, default=500, help="migrate-askar --batch-size")
    ap.add_argument("--no-memory", action="store_true", help="skip the subprocess memory probes")
    ap.add_argument(
        "--no-peer",
        dest="peer",
        action="store_false",
        help="skip the advanced-alchemy column (skipped anyway without `uv sync --group bench`)",
    )
    ap.add_argument("--workdir", type=Path, help="keep the stores here (default: a temp dir)")
    # internal: the memory probe child
    ap.add_argument("--probe", help=argparse.SUPPRESS)
    ap.add_argument("--probe-backend", help=argparse.SUPPRESS)
    ap.add_argument("--probe-url", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


@contextlib.contextmanager
def workdir(given: Path | None) -> Iterator[Path]:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    path = Path(tempfile.mkdtemp(prefix="webvh-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.probe:
        probe_main(args)
        return 0
    # SIGTERM (and SIGINT, which background jobs ignore) still run the cleanup: temp
    # stores are removed and the benchmark's PostgreSQL databases dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    backends = args.backend or list(BACKENDS)
    started = time.time()
    results: list[Result] = []
    memory: list[dict[str, Any]] = []
    log(f"data: {_data.describe()}")
    with workdir(args.workdir) as wd:
        for name in backends:
            r, m = run_backend(args, name, wd)
            results += r
            memory += m
            print(table(r), flush=True)
        if args.migrate and (not args.ops or "migrate" in args.ops):
            big = args.migrate_size or args.size
            res, mem = bench_migration(wd, (big // 10, big), args.migrate_batch)
            results.append(res)
            memory.append(mem)
            print(table([res]), flush=True)
    print()
    print(
        f"## {args.size} entries; {time.strftime('%Y-%m-%d %H:%M %Z')}; "
        f"{time.time() - started:.0f} s"
    )
    print(table(results))
    if memory:
        print()
        print(memory_table(memory))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "size": args.size,
                    "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "data": _data.describe(),
                    "results": [r.as_dict() for r in results],
                    "memory": memory,
                    "args": {k: str(v) for k, v in vars(args).items()},
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
