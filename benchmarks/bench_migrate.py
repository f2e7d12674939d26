"""migrate-askar throughput and memory, against the raw Askar scan of the same store.

    uv run python benchmarks/bench_migrate.py [--sizes 10000,100000] [--batch-size 500]

Per size: a legacy SQLite Askar store of N log entries (plus N witness files and N/5
attested resources) is generated in one subprocess; a fresh subprocess then measures the
raw scan (scan(None, order_by="id") reading raw_value of every entry) before and after
the migration into a new SQLite database (the mean of the two is the baseline: this
machine's speed drifts over minutes), and reports peak RSS (ru_maxrss) as the
migration's plus its reader child's (an upper bound: the two peaks may not coincide).
Targets: migration rate >= 0.7 x raw scan rate; peak RSS at 100k within 50 MB of 10k.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

VECTORS = ROOT.parent / "shared" / "vectors"
RESOURCES_EVERY = 5


def generate(uri: str, size: int) -> int:
    from tests.legacy_store import build_legacy_store

    fx = build_legacy_store(
        uri, VECTORS, size, resources_every=RESOURCES_EVERY, extras=False, corrupt=False
    )
    return fx.entries


def raw_scan(uri: str) -> tuple[int, float]:
    """Entries and seconds for the plain Askar scan reading every raw_value."""
    from aries_askar import Store

    async def go() -> int:
        store = await Store.open(uri, "none", None)
        count = 0
        try:
            async for entry in store.scan(None, order_by="id"):
                _ = entry.raw_value
                count += 1
        finally:
            await store.close()
        return count

    started = time.perf_counter()
    count = asyncio.run(go())
    return count, time.perf_counter() - started


def measure(uri: str, target: str, batch_size: int) -> dict:
    import backends.askar.migration.runner
    import backends.sqlalchemy.backend  # noqa: F401 - imports are not part of the rate
    from backends.askar.migration.cli import main

    entries, scan_before = raw_scan(uri)
    report = Path(target.removeprefix("sqlite:///") + ".report.json")
    started = time.perf_counter()
    status = main(
        [
            "--quiet",
            "--askar",
            uri,
            "--to",
            target,
            "--batch-size",
            str(batch_size),
            "--report",
            str(report),
        ]
    )
    seconds = time.perf_counter() - started
    parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reader = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the reader process
    _, scan_after = raw_scan(uri)
    # the machine's speed drifts over minutes: the scan taken before and after, averaged
    scan_seconds = (scan_before + scan_after) / 2
    data = json.loads(report.read_text())
    return {
        "entries": entries,
        "status": status,
        "migrated": data["totals"]["written"],
        "migrate_seconds": round(seconds, 3),
        "migrate_rate": round(data["totals"]["read"] / seconds, 1),
        "scan_seconds": round(scan_seconds, 3),
        "scan_rate": round(entries / scan_seconds, 1),
        "scan_rates_before_after": [
            round(entries / scan_before, 1),
            round(entries / scan_after, 1),
        ],
        "peak_rss_mb": round((parent + reader) / 1024, 1),
        "parent_rss_mb": round(parent / 1024, 1),
        "reader_rss_mb": round(reader / 1024, 1),
    }


def run_size(size: int, batch_size: int, workdir: Path) -> dict:
    uri = f"sqlite://{workdir}/legacy-{size}.db"
    target = f"sqlite:///{workdir}/target-{size}.db"
    here = str(Path(__file__).resolve())
    subprocess.run([sys.executable, here, "--child-generate", uri, str(size)], check=True)
    out = subprocess.run(
        [sys.executable, here, "--child-measure", uri, target, str(batch_size)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["size"] = size
    result["ratio"] = round(result["migrate_rate"] / result["scan_rate"], 3)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--child-generate", nargs=2, metavar=("URI", "N"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--child-measure", nargs=3, metavar=("URI", "URL", "B"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child_generate:
        uri, size = args.child_generate
        print(generate(uri, int(size)))
        return 0
    if args.child_measure:
        uri, target, batch = args.child_measure
        print(json.dumps(measure(uri, target, int(batch))))
        return 0
    if not VECTORS.is_dir():
        print(f"shared vectors not found at {VECTORS}", file=sys.stderr)
        return 2
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-migrate-") as tmp:
        for size in (int(s) for s in args.sizes.split(",") if s):
            result = run_size(size, args.batch_size, Path(tmp))
            results.append(result)
            print(
                f"{size:>8} log entries: {result['entries']} entries | migrate "
                f"{result['migrate_rate']:,.0f}/s | raw scan {result['scan_rate']:,.0f}/s | "
                f"ratio {result['ratio']:.2f} (target >= 0.7) | peak RSS "
                f"{result['peak_rss_mb']:.1f} MB (migration {result['parent_rss_mb']:.1f} "
                f"+ reader {result['reader_rss_mb']:.1f})",
                flush=True,
            )
    if len(results) >= 2:
        growth = results[-1]["peak_rss_mb"] - results[0]["peak_rss_mb"]
        print(
            f"peak RSS growth {results[0]['size']} -> {results[-1]['size']}: "
            f"{growth:+.1f} MB (target <= 50 MB)"
        )
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
