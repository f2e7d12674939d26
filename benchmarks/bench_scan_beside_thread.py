"""Why migrate-askar reads through a child process: an Askar scan beside a busy thread.

    uv run python benchmarks/bench_scan_beside_thread.py [--size 10000]

Builds a legacy SQLite Askar store (N log entries + N witness files + N/5 resources),
then times the same raw scan (scan(None, order_by="id"), reading raw_value) alone, next
to one CPU-bound Python thread (what converting and writing in the same process is),
and next to it with a 0.5 ms GIL switch interval. aries-askar makes a few ctypes calls
per entry, each releasing and re-taking the GIL, so the busy thread makes every re-take
wait: the slowdown is the reason the migration's scan runs in its own process.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench_migrate import generate  # noqa: E402


def scan_seconds(uri: str) -> float:
    from aries_askar import Store

    async def go() -> None:
        store = await Store.open(uri, "none", None)
        try:
            async for entry in store.scan(None, order_by="id"):
                _ = entry.raw_value
        finally:
            await store.close()

    started = time.perf_counter()
    asyncio.run(go())
    return time.perf_counter() - started


def beside_busy_thread(uri: str, switch_interval: float) -> float:
    stop = threading.Event()

    def busy() -> None:
        total = 0
        while not stop.is_set():
            for i in range(1000):
                total += i

    previous = sys.getswitchinterval()
    sys.setswitchinterval(switch_interval)
    thread = threading.Thread(target=busy)
    thread.start()
    try:
        return scan_seconds(uri)
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(previous)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-gil-") as tmp:
        uri = f"sqlite://{tmp}/legacy.db"
        entries = generate(uri, args.size)
        alone = scan_seconds(uri)
        print(f"{entries} entries; raw scan alone: {alone:.2f} s")
        for label, interval in (("5 ms", sys.getswitchinterval()), ("0.5 ms", 0.0005)):
            seconds = beside_busy_thread(uri, interval)
            print(
                f"beside one busy Python thread, GIL switch interval {label}: "
                f"{seconds:.2f} s ({seconds / alone:.1f}x)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
