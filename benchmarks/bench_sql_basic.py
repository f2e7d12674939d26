"""Quick check that the SQL backend's hot paths stay close to raw sqlite3.

    uv run python benchmarks/bench_sql_basic.py [--rows N] [--gets N]

On ONE SQLite file (same pragmas for both sides) it measures:
- get by key: StorageManager.get_log_entry vs sqlite3 `SELECT ... WHERE scid=?` + orjson
  loads of the log;
- bulk upsert: StorageManager.bulk_upsert of LogEntry records built from the shared DID
  log vectors vs sqlite3 executemany `INSERT OR REPLACE` with orjson dumps.
and prints absolute rates and the ratio ours/raw (targets: get >= 0.5, bulk >= 0.8).
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

from storage_core import LogEntry, open_storage
from storage_core.kinds import LOG_ENTRY

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "tests" / "data" / "vectors"
COLUMNS = LOG_ENTRY.all_fields


def load_logs() -> list[list]:
    logs = []
    for path in sorted(VECTORS.glob("*/did.jsonl")):
        logs.append([orjson.loads(line) for line in path.read_text().splitlines() if line])
    if not logs:
        logs.append([{"versionId": "1-x", "state": {"id": "did:webvh:x:example.com"}}])
    return logs


def make_records(prefix: str, n: int, logs: list[list]) -> list[LogEntry]:
    now = datetime.now(UTC)
    return [
        LogEntry(
            scid=f"{prefix}{i:08d}",
            did=f"did:webvh:{prefix}{i}:example.com",
            domain="example.com",
            namespace="ns",
            identifier=f"id{i}",
            logs=logs[i % len(logs)],
            created_at=now,
            updated_at=now,
        )
        for i in range(n)
    ]


def raw_connection(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def bench_bulk(
    manager, raw: sqlite3.Connection, rows: int, logs: list[list], round_: int
) -> tuple[float, float]:
    ours_records = make_records(f"ours{round_}-", rows, logs)
    start = time.perf_counter()
    manager.bulk_upsert("log_entry", ours_records)
    ours = rate(rows, time.perf_counter() - start)

    raw_records = make_records(f"raw{round_}-", rows, logs)
    sql = (
        f"INSERT OR REPLACE INTO log_entries ({', '.join(COLUMNS)}, seq) "
        f"VALUES ({', '.join('?' * len(COLUMNS))}, "
        "(SELECT COALESCE(MAX(seq), 0) + 1 FROM log_entries))"
    )
    start = time.perf_counter()
    params = [
        (
            r.scid,
            r.did,
            r.domain,
            r.namespace,
            r.identifier,
            orjson.dumps(r.logs).decode(),
            r.deactivated,
            r.created_at.replace(tzinfo=None).isoformat(" "),
            r.updated_at.replace(tzinfo=None).isoformat(" "),
            r.record_version,
        )
        for r in raw_records
    ]
    raw.execute("BEGIN IMMEDIATE")
    raw.executemany(sql, params)
    raw.execute("COMMIT")
    return ours, rate(rows, time.perf_counter() - start)


def bench_get(manager, raw: sqlite3.Connection, keys: list[str], gets: int) -> tuple[float, float]:
    rng = random.Random(7)
    sample = [rng.choice(keys) for _ in range(gets)]
    get = manager.get_log_entry
    for key in sample[:200]:  # warm caches on both sides
        get(key)
    start = time.perf_counter()
    for key in sample:
        get(key)
    ours = rate(gets, time.perf_counter() - start)

    sql = f"SELECT {', '.join(COLUMNS)} FROM log_entries WHERE scid = ?"
    loads = orjson.loads
    start = time.perf_counter()
    for key in sample:
        row = raw.execute(sql, (key,)).fetchone()
        loads(row[5])
    return ours, rate(gets, time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--gets", type=int, default=20000)
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds, sides alternating (median of the ratios)"
    )
    args = parser.parse_args()
    logs = load_logs()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        manager = open_storage("sqlalchemy", f"sqlite:///{path}")
        manager.init_db(recreate=True)
        raw = raw_connection(path)
        try:
            bulk = [bench_bulk(manager, raw, args.rows, logs, r) for r in range(args.rounds)]
            keys = [f"ours0-{i:08d}" for i in range(args.rows)]
            gets = [bench_get(manager, raw, keys, args.gets) for _ in range(args.rounds)]
        finally:
            raw.close()
            manager.close()
    print(
        f"SQLite file (WAL, synchronous=FULL), {args.rows} rows per bulk, {args.gets} gets, "
        f"{args.rounds} rounds, {len(logs)} DID logs from the shared vectors; rates are "
        "medians, ratios the median of the per-round ratios [lowest-highest]"
    )
    print(f"get by key   {summary(gets, 'ops/s', 0.5)}")
    print(f"bulk upsert  {summary(bulk, 'rows/s', 0.9)}")


def summary(rounds: list[tuple[float, float]], unit: str, target: float) -> str:
    """ours and raw medians, and the median [spread] of ours/raw per round vs target."""
    ratios = [ours / raw for ours, raw in rounds]
    median = statistics.median(ratios)
    return (
        f"ours {statistics.median(o for o, _ in rounds):12,.0f} {unit}  "
        f"raw {statistics.median(r for _, r in rounds):12,.0f} {unit}  "
        f"ratio {median:.2f} [{min(ratios):.2f}-{max(ratios):.2f}] "
        f"{'ok' if median >= target else 'MISS'} (target >= {target:g})"
    )


if __name__ == "__main__":
    main()
