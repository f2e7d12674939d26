"""The askar backend's overhead over raw aries-askar, on one SQLite store in one run.

    uv run python benchmarks/bench_askar_basic.py [--rows N] [--gets N] [--rounds N]

- get:  StorageManager.get_log_entry (sync, validated, decoded to a LogEntry) vs raw
        aries-askar in an async loop (session + fetch + orjson.loads of raw_value).
- bulk: StorageManager.bulk_upsert (one transaction) vs raw aries-askar inserts of the
        same values and tags in one transaction.
Raw runs against the same store file through its own Store handle, in a separate
category, so both sides write and read the same bytes. Targets: ours/raw >= 0.8.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
from aries_askar import Store

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from storage_core import kinds as K  # noqa: E402
from storage_core import open_storage  # noqa: E402
from storage_core.codec import utcnow  # noqa: E402
from storage_core.records import LogEntry  # noqa: E402
from webvh_storage_askar import layout  # noqa: E402

VECTOR_LOG = ROOT / "tests" / "data" / "vectors" / "py-sample-diddoc" / "did.jsonl"
RAW_CATEGORY = "raw:log_entry"


def sample_logs() -> list[Any]:
    """A real did:webvh log when the shared vectors are present, else a stand-in."""
    if VECTOR_LOG.is_file():
        return [orjson.loads(line) for line in VECTOR_LOG.read_text().splitlines() if line]
    return [{"versionId": f"{i}-Q", "state": {"id": "did:webvh:x:example.com"}} for i in range(2)]


def make_records(rows: int) -> list[LogEntry]:
    logs, now = sample_logs(), utcnow()
    return [
        LogEntry(
            scid=f"scid{i:07d}",
            did=f"did:webvh:scid{i:07d}:example.com:ns{i % 10}:id{i}",
            domain="example.com",
            namespace=f"ns{i % 10}",
            identifier=f"id{i}",
            logs=logs,
            deactivated=i % 7 == 0,
            created_at=now,
            updated_at=now,
        )
        for i in range(rows)
    ]


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


async def raw_bulk(uri: str, items: list[tuple[str, bytes, dict]]) -> float:
    store = await Store.open(uri, "none", None)
    try:
        start = time.perf_counter()
        async with store.transaction() as txn:
            for name, value, tags in items:
                await txn.insert(RAW_CATEGORY, name, value, tags)
            await txn.commit()
        return time.perf_counter() - start
    finally:
        await store.close()


async def raw_gets(uri: str, keys: list[str]) -> tuple[float, float]:
    """Seconds for the gets with a session per get, then with one long-lived session."""
    store = await Store.open(uri, "none", None)
    try:
        start = time.perf_counter()
        for name in keys:
            async with store.session() as session:
                entry = await session.fetch(RAW_CATEGORY, name)
            orjson.loads(entry.raw_value)
        per_get = time.perf_counter() - start
        start = time.perf_counter()
        async with store.session() as session:
            for name in keys:
                entry = await session.fetch(RAW_CATEGORY, name)
                orjson.loads(entry.raw_value)
        shared = time.perf_counter() - start
        return per_get, shared
    finally:
        await store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000, help="rows to bulk-write")
    parser.add_argument("--gets", type=int, default=3000, help="gets by key per round")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds, sides interleaved (median of the ratios)"
    )
    args = parser.parse_args()

    records = make_records(args.rows)
    items = [(r.scid, *layout.encode(K.LOG_ENTRY, r)) for r in records]
    rng = random.Random(7)
    keys = [rng.choice(records).scid for _ in range(args.gets)]
    rates: dict[str, list[float]] = {}

    def keep(name: str, count: int, seconds: float) -> None:
        rates.setdefault(name, []).append(rate(count, seconds))

    def ratio(ours: str, raw: str) -> str:
        """Median [lowest-highest] of ours/raw per round."""
        values = [a / b for a, b in zip(rates[ours], rates[raw], strict=True)]
        return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"

    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite://{tmp}/bench.db"
        manager = open_storage("askar", uri)
        try:
            for _ in range(args.rounds):
                # Fresh store per round, so both sides always write into empty categories.
                manager.init_db(recreate=True)
                start = time.perf_counter()
                manager.bulk_upsert(K.LOG_ENTRY, records)
                keep("bulk ours", args.rows, time.perf_counter() - start)
                keep("bulk raw", args.rows, asyncio.run(raw_bulk(uri, items)))

                start = time.perf_counter()
                manager.bulk_upsert(K.LOG_ENTRY, [replace(r, record_version=2) for r in records])
                keep("rebulk ours", args.rows, time.perf_counter() - start)

                for key in keys[:100]:  # warm up this round's store
                    manager.get_log_entry(key)
                start = time.perf_counter()
                for key in keys:
                    manager.get_log_entry(key)
                keep("get ours", args.gets, time.perf_counter() - start)
                per_get, shared = asyncio.run(raw_gets(uri, keys))
                keep("get raw", args.gets, per_get)
                keep("get raw shared", args.gets, shared)
        finally:
            manager.close()

    print(
        f"askar backend vs raw aries-askar, SQLite file, {args.rows} rows, "
        f"{args.gets} gets, {args.rounds} interleaved rounds (rates: medians; ratios: median "
        "of the per-round ratios [lowest-highest])"
    )
    best = {name: statistics.median(values) for name, values in rates.items()}
    print(
        f"  get   ours {best['get ours']:9.0f} ops/s   raw {best['get raw']:9.0f} ops/s   "
        f"ratio {ratio('get ours', 'get raw')}  (target >= 0.8)"
    )
    print(
        f"        raw reusing one session {best['get raw shared']:9.0f} ops/s   "
        f"ratio {ratio('get ours', 'get raw shared')}  (for information)"
    )
    print(
        f"  bulk  ours {best['bulk ours']:9.0f} rows/s  raw {best['bulk raw']:9.0f} rows/s  "
        f"ratio {ratio('bulk ours', 'bulk raw')}  (target >= 0.8)"
    )
    print(
        f"  bulk over existing keys (insert, duplicate, replace): {best['rebulk ours']:.0f} rows/s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
