"""Profile one of our operations on a loaded store (cProfile, sorted by own time).

    uv run python benchmarks/_profile.py sqlite get --size 20000 [--calls 5000] [--sort tottime]

Operations: get, page, count, create, update, bulk, stream. The store is loaded through
our own bulk_upsert first (not profiled).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import _baselines as B  # noqa: E402
import _data  # noqa: E402
import run  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("backend", choices=run.BACKENDS)
    ap.add_argument("op", choices=("get", "page", "count", "create", "update", "bulk", "stream"))
    ap.add_argument("--size", type=int, default=20_000)
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--sort", default="tottime")
    ap.add_argument("--lines", type=int, default=35)
    ap.add_argument("--raw", action="store_true", help="profile the raw driver instead")
    args = ap.parse_args()
    rargs = run.parse_args([])
    with tempfile.TemporaryDirectory(prefix="webvh-prof-") as wd:
        suite = run.SUITES[args.backend](rargs, Path(wd))
        suite.setup()
        try:
            if args.op != "bulk":
                for batch in _data.chunks(args.size, 5000):
                    suite.ours.bulk(batch)
            driver = suite.raw if args.raw else suite.ours
            rng = random.Random(0)
            n = args.size
            if args.op == "get":
                calls = [(_data.scid_for(rng.randrange(n)),) for _ in range(args.calls)]
            elif args.op == "page":
                calls = [
                    (_data.namespace_of(rng.randrange(100)), 50 * rng.randrange(4))
                    for _ in range(args.calls)
                ]
            elif args.op == "count":
                calls = [(_data.namespace_of(rng.randrange(100)),) for _ in range(args.calls)]
            elif args.op == "create":
                calls = [(e,) for e in _data.iter_entries(0, args.calls, "prof")]
            elif args.op == "update":
                calls = [(_data.scid_for(i), _data.entry(i).logs) for i in range(args.calls)]
            elif args.op == "bulk":
                calls = [(list(_data.iter_entries(0, args.size)),)]
            else:
                calls = [(500,)]
            B.run_many(driver, args.op, calls[:50])  # warm up
            if args.op == "create":
                calls = [(e,) for e in _data.iter_entries(0, args.calls, "prof2")]
            prof = cProfile.Profile()
            start = time.perf_counter()
            prof.enable()
            B.run_many(driver, args.op, calls)
            prof.disable()
            elapsed = time.perf_counter() - start
            print(f"{len(calls)} calls in {elapsed:.3f}s (profiled)")
            pstats.Stats(prof).sort_stats(args.sort).print_stats(args.lines)
        finally:
            suite.close()


if __name__ == "__main__":
    main()
