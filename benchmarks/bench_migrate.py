"""migrate-askar throughput and memory, against the raw Askar scan of the same store.

    uv run python benchmarks/bench_migrate.py [--sizes 10000,100000] [--rounds 3]

Per size: a legacy SQLite Askar store of N log entries (plus N witness files and N/5
attested resources) is generated in one subprocess; a fresh subprocess then alternates
raw scans (scan(None, order_by="id") reading raw_value of every entry) with migrations
into new SQLite files: scan, migrate, scan, migrate, ..., scan. A round's baseline is the
mean of the scans on either side of it (this machine's speed drifts over minutes), and
the median round is reported with every round's ratio. Peak RSS is the migration's
(ru_maxrss) plus its reader child's (VmHWM): an upper bound, the peaks may not coincide.
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

VECTORS = ROOT / "tests" / "data" / "vectors"
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


def migrate_once(uri: str, target_path: Path, batch_size: int) -> tuple[int, int, int, float]:
    """(exit status, entries read, rows written, seconds) of one migration into a new file."""
    from webvh_storage_migrate.cli import main

    report = target_path.with_suffix(".report.json")
    argv = ["--quiet", "--askar", uri, "--to", f"sqlite:///{target_path}"]
    argv += ["--batch-size", str(batch_size), "--report", str(report)]
    started = time.perf_counter()
    status = main(argv)
    seconds = time.perf_counter() - started
    totals = json.loads(report.read_text())["totals"]
    for path in target_path.parent.glob(target_path.name + "*"):
        path.unlink()  # a 100k target is ~0.5 GB: one at a time on disk
    return status, totals["read"], totals["written"], seconds


def vm_hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def record_reader_peaks() -> list[int]:
    """Peak RSS (VmHWM, kB) of each reader child, read just before it is closed. Its
    ru_maxrss would not do: Linux carries the forking parent's peak across exec."""
    from webvh_storage_migrate.askar_reader import ScanReader

    peaks: list[int] = []
    close = ScanReader.close

    def close_and_record(self: ScanReader) -> None:
        if self.pid is not None:
            peaks.append(vm_hwm_kb(self.pid))
        close(self)

    ScanReader.close = close_and_record  # type: ignore[method-assign]
    return peaks


def measure(uri: str, target: str, batch_size: int, rounds: int) -> dict:
    """Rounds of (raw scan, migration) ending with one more raw scan; a round's baseline is
    the mean of the scans on either side of it, because this machine's speed drifts over
    minutes. Reports the median round and every round's ratio."""
    import webvh_storage_sqlalchemy.backend  # noqa: F401 - imports are not part of the rate

    reader_peaks = record_reader_peaks()
    entries, scan_before = raw_scan(uri)
    results = []
    for number in range(rounds):
        path = Path(target.removeprefix("sqlite:///")).with_suffix(f".round{number}.db")
        status, read, written, seconds = migrate_once(uri, path, batch_size)
        _, scan_after = raw_scan(uri)
        scan_seconds = (scan_before + scan_after) / 2
        results.append(
            {
                "status": status,
                "migrated": written,
                "migrate_seconds": round(seconds, 3),
                "migrate_rate": round(read / seconds, 1),
                "scan_seconds": round(scan_seconds, 3),
                "scan_rate": round(entries / scan_seconds, 1),
                "ratio": round(scan_seconds / seconds * read / entries, 3),
            }
        )
        scan_before = scan_after
    parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reader = max(reader_peaks, default=0)
    median = sorted(results, key=lambda r: r["ratio"])[len(results) // 2]
    return {
        "entries": entries,
        **median,
        "round_ratios": [r["ratio"] for r in results],
        "peak_rss_mb": round((parent + reader) / 1024, 1),
        "parent_rss_mb": round(parent / 1024, 1),
        "reader_rss_mb": round(reader / 1024, 1),
    }


def run_size(size: int, batch_size: int, workdir: Path, rounds: int = 3) -> dict:
    uri = f"sqlite://{workdir}/legacy-{size}.db"
    target = f"sqlite:///{workdir}/target-{size}.db"
    here = str(Path(__file__).resolve())
    subprocess.run([sys.executable, here, "--child-generate", uri, str(size)], check=True)
    out = subprocess.run(
        [sys.executable, here, "--child-measure", uri, target, str(batch_size), str(rounds)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["size"] = size
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3, help="migrations per size (median)")
    parser.add_argument("--child-generate", nargs=2, metavar=("URI", "N"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--child-measure", nargs=4, metavar=("URI", "URL", "B", "R"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child_generate:
        uri, size = args.child_generate
        print(generate(uri, int(size)))
        return 0
    if args.child_measure:
        uri, target, batch, rounds = args.child_measure
        print(json.dumps(measure(uri, target, int(batch), int(rounds))))
        return 0
    if not VECTORS.is_dir():
        print(f"test vectors not found at {VECTORS}", file=sys.stderr)
        return 2
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-migrate-") as tmp:
        for size in (int(s) for s in args.sizes.split(",") if s):
            result = run_size(size, args.batch_size, Path(tmp), args.rounds)
            results.append(result)
            rounds = ", ".join(f"{r:.2f}" for r in result["round_ratios"])
            print(
                f"{size:>8} log entries: {result['entries']} entries | migrate "
                f"{result['migrate_rate']:,.0f}/s | raw scan {result['scan_rate']:,.0f}/s | "
                f"ratio {result['ratio']:.2f}, median of rounds [{rounds}] (target >= 0.7) | "
                f"peak RSS "
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
