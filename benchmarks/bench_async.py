"""The async face against raw async drivers (issue 13, "Measured"): every figure is a
ratio against a raw driver awaited in the same event loop, in the same run.

    uv run --group bench python benchmarks/bench_async.py                 # all three, 10k entries
    uv run --group bench python benchmarks/bench_async.py --backend askar --size 2000
    uv run --group bench python benchmarks/bench_async.py --rounds 7 --json out.json
    uv run --group bench python benchmarks/bench_async.py --concurrency 200 --ops get

Ours is `open_async_storage(...)` (the `AsyncStorageManager`) awaited on one loop,
whatever async face the backend has (native, or the framework's thread-pool adapter
over a sync backend: the table names it). The raw drivers (benchmarks/_async_baselines.py)
are aiosqlite for `sqlite`, asyncpg for `postgres` and aries-askar for `askar`, each on
its own copy of the same data: loaded once through our sync API, then copied for each
driver (SQLite's backup API; PostgreSQL's CREATE DATABASE ... TEMPLATE). Calls are
sequential (one await at a time): the ratio is what our layers add to one request's
database call. With `--concurrency N` (gets and pages only) N tasks call at once, as a
server's handlers under load: ours on its pool, the raw driver on a pool of the same
size (pool_size + max_overflow, `STORAGE_POOL_SIZE` / `STORAGE_MAX_OVERFLOW`; the raw
side's pattern: benchmarks/_async_baselines.py): what our pool and call path add when
tasks contend for connections. Each slice then has at least N calls (gets and pages per
round raised to 10 N if fewer: 300 pages made slices of 30, N tasks in name only).

Method as benchmarks/run.py: per-call operations in rounds, both drivers taking turns in
10 slices per round (order rotated), each round one ratio ours / raw; streams alternate
whole passes. The table shows the median of the per-round ratios [lowest-highest] and
ok/MISS compares that median with the target.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
for p in (str(HERE.parent), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

import _async_baselines as AB  # noqa: E402
import _baselines as B  # noqa: E402
import _data  # noqa: E402
from _measure import Result, fmt_rate, fmt_ratio  # noqa: E402

from storage_core import open_async_storage, open_storage  # noqa: E402

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
BACKENDS = ("sqlite", "postgres", "askar")
OPS = ("get", "page", "stream", "create")
CONCURRENT_OPS = ("get", "page")
#: ours / raw async driver, median of the per-round ratios (issue 13).
TARGET = 0.8
TARGETS: dict[str, dict[str, float]] = {"get by key": {"askar": 0.9}}
LOAD_CHUNK = 1000
#: Per-call operations: both drivers take turns this many times a round.
SLICES = 10


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- the data: one store loaded through our sync API, copied for the raw driver ----------
@dataclass
class Stores:
    """Where ours and the raw driver find their copies of the same n entries."""

    backend: str
    config_backend: str  # the storage backend name ("sqlalchemy", "askar")
    ours_url: str
    raw_target: str  # a file path or a DSN
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for fn in reversed(self.cleanup):
            with contextlib.suppress(Exception):
                fn()


def _load(backend: str, url: str, n: int) -> None:
    m = open_storage(backend, url)
    try:
        m.init_db(recreate=True)
        for chunk in _data.chunks(n, LOAD_CHUNK):
            m.bulk_upsert("log_entry", chunk)
    finally:
        m.close()


def _sqlite_copy(source: Path, target: Path) -> None:
    """A consistent copy whatever sits in the WAL (sqlite3's backup API), in WAL mode."""
    target.unlink(missing_ok=True)
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=WAL")
    finally:
        src.close()
        dst.close()


def prepare(backend: str, n: int, workdir: Path, pg_url: str) -> Stores:
    """Load n entries once through our sync API, then give each driver its own copy
    made the same way (so neither reads the file the load left behind)."""
    if backend == "postgres":
        return _prepare_postgres(n, pg_url)
    loaded, ours, raw = (workdir / f"async-{backend}-{who}.db" for who in ("load", "ours", "raw"))
    if backend == "sqlite":
        _load("sqlalchemy", f"sqlite:///{loaded}", n)
    else:
        _load("askar", f"sqlite://{loaded}", n)
    for copy in (ours, raw):
        _sqlite_copy(loaded, copy)
    if backend == "sqlite":
        return Stores(backend, "sqlalchemy", f"sqlite:///{ours}", str(raw))
    return Stores(backend, "askar", f"sqlite://{ours}", f"sqlite://{raw}")


def _prepare_postgres(n: int, pg_url: str) -> Stores:
    import psycopg2

    def admin(sql: str) -> None:
        conn = psycopg2.connect(pg_url, connect_timeout=5)
        conn.autocommit = True
        try:
            conn.cursor().execute(sql)
        finally:
            conn.close()

    parts = urlsplit(pg_url)
    names = [f"webvh_bench_async_{os.getpid()}_{who}" for who in ("load", "ours", "raw")]
    stores = Stores("postgres", "sqlalchemy", "", "")
    for name in names:
        drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
        admin(drop)
        stores.cleanup.append(lambda drop=drop: admin(drop))
    loaded, ours, raw = (urlunsplit(parts._replace(path="/" + name)) for name in names)
    try:
        admin(f'CREATE DATABASE "{names[0]}"')
        _load("sqlalchemy", loaded, n)
        for name in names[1:]:  # the same rows, one database each
            admin(f'CREATE DATABASE "{name}" TEMPLATE "{names[0]}"')
    except BaseException:
        stores.close()
        raise
    stores.ours_url, stores.raw_target = ours, raw
    return stores


async def open_raw(stores: Stores, pool: int | None) -> Any:
    """The raw driver: one connection, or with `pool` (concurrent tasks) that many."""
    if pool is None:
        if stores.backend == "sqlite":
            return await AB.AiosqliteRaw.open(stores.raw_target)
        if stores.backend == "postgres":
            return await AB.AsyncpgRaw.open(stores.raw_target)
        return await AB.AskarAsyncRaw.open(stores.raw_target)
    if stores.backend == "sqlite":
        return await AB.AiosqlitePoolRaw.open(stores.raw_target, pool)
    if stores.backend == "postgres":
        return await AB.AsyncpgPoolRaw.open(stores.raw_target, pool)
    return await AB.AskarSessionRaw.open(stores.raw_target)


def pool_capacity(manager: Any) -> int:
    """pool_size + max_overflow of our SQL face (what the raw pool gets too)."""
    pool = manager.backend.engine.sync_engine.pool
    return int(pool.size() + pool._max_overflow)


def face_of(manager: Any) -> str:
    """Which async face ours runs on (the backend's native one, or an adapter)."""
    return type(manager.backend).__name__


# --- measuring ----------------------------------------------------------------------------
Drivers = dict[str, Any]  # "ours" / "raw" -> an object with the four coroutines


def _result(backend: str, op: str, unit: str, note: str) -> Result:
    target = TARGETS.get(op, {}).get(backend.split()[0], TARGET)
    return Result(backend=backend, op=op, unit=unit, target=target, note=note)


async def _run_block(
    driver: Any, method: str, calls: list[tuple[Any, ...]], concurrency: int = 1
) -> int:
    """The calls one after another, or by `concurrency` tasks taking the next call
    each as they finish one (that many in flight, as handlers under load)."""
    fn = getattr(driver, method)
    if concurrency <= 1:
        for a in calls:
            await fn(*a)
        return len(calls)
    pending = iter(calls)

    async def worker() -> None:
        for a in pending:
            await fn(*a)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(calls)


async def compare_calls(
    res: Result,
    drivers: Drivers,
    method: str,
    make_args: Callable[[str, int], list[tuple[Any, ...]]],
    rounds: int,
    slices: int = SLICES,
    concurrency: int = 1,
) -> Result:
    """Per-call operations, as run.py's `_compare_calls`: each round every driver gets
    fresh arguments (built untimed), and the drivers take turns slice by slice (order
    rotated); a driver's rate for the round is its calls over its summed time."""
    names = list(drivers)
    res.baselines.setdefault("raw", [])
    for who in names:  # warm-up: statement caches, page cache, pools, sessions
        warm = make_args(who, -1)
        await _run_block(drivers[who], method, warm[: max(1, len(warm) // 5)], concurrency)
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
                done[who] += await _run_block(drivers[who], method, part, concurrency)
                spent[who] += time.perf_counter() - start
        for who in names:
            (res.ours if who == "ours" else res.baselines[who]).append(done[who] / spent[who])
    return res


async def compare_passes(
    res: Result, drivers: Drivers, block: Callable[[Any], Awaitable[int]], rounds: int
) -> Result:
    """Whole passes (the stream), alternating who goes first."""
    names = list(drivers)
    res.baselines.setdefault("raw", [])
    for r in range(rounds):
        k = r % len(names)
        for who in names[k:] + names[:k]:
            gc.collect()
            start = time.perf_counter()
            done = await block(drivers[who])
            rate = done / (time.perf_counter() - start)
            (res.ours if who == "ours" else res.baselines[who]).append(rate)
    return res


async def check_same(backend: str, drivers: Drivers, n: int) -> None:
    """Ours and the raw driver read the same records and pages from their copies."""
    ours, raw = drivers["ours"], drivers["raw"]
    for i in (0, n // 2, n - 1):
        key = _data.scid_for(i)
        a, b = await ours.get(key), await raw.get(key)
        if a is None or b is None or not B.same_record(a, b):
            raise SystemExit(f"{backend}: ours and raw disagree on {key}:\n{a}\n{b}")
    ns = _data.namespace_of(7)
    a_page, b_page = await ours.page(ns, B.PAGE), await raw.page(ns, B.PAGE)
    if [e.scid for e in a_page] != [e.scid for e in b_page] or not all(
        B.same_record(x, y) for x, y in zip(a_page, b_page, strict=True)
    ):
        raise SystemExit(f"{backend}: ours and raw pages differ")


async def bench_backend(args: argparse.Namespace, stores: Stores) -> list[Result]:
    n, backend = args.size, stores.backend
    manager = open_async_storage(stores.config_backend, stores.ours_url)
    face = face_of(manager)
    label = f"{backend} ({face})"
    log(f"{backend}: ours on {face}")
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(manager.aclose)
        concurrent = args.concurrency > 1
        pool = None
        if concurrent:
            pool = pool_capacity(manager) if backend != "askar" else args.concurrency
        raw = await open_raw(stores, pool)
        stack.push_async_callback(raw.aclose)
        drivers: Drivers = {"ours": AB.AsyncOurs(manager), "raw": raw}
        await check_same(backend, drivers, n)
        ops = set(args.ops or OPS)
        at_once = ""
        if concurrent:
            ops &= set(CONCURRENT_OPS)
            at_once = f", {args.concurrency} tasks at once"
            if backend != "askar":
                at_once += f" (pools of {pool})"
        results: list[Result] = []
        if "get" in ops:
            log(f"{backend}: get by key")
            rng = random.Random(1)
            keys = [_data.scid_for(i) for i in range(n)]
            res = _result(
                label, "get by key" + at_once, "ops", f"{args.gets} random keys per round"
            )
            results.append(
                await compare_calls(
                    res,
                    drivers,
                    "get",
                    lambda who, r: [(rng.choice(keys),) for _ in range(args.gets)],
                    args.rounds,
                    concurrency=args.concurrency,
                )
            )
        if "page" in ops:
            log(f"{backend}: filtered page")
            prng = random.Random(2)
            pages = max(1, min(10, n // _data.NAMESPACES // B.PAGE))
            res = _result(
                label, "filtered page of 50" + at_once, "pages", f"pages 1-{pages} of a namespace"
            )
            results.append(
                await compare_calls(
                    res,
                    drivers,
                    "page",
                    lambda who, r: [
                        (
                            _data.namespace_of(prng.randrange(_data.NAMESPACES)),
                            B.PAGE * prng.randrange(pages),
                        )
                        for _ in range(args.pages)
                    ],
                    args.rounds,
                    concurrency=args.concurrency,
                )
            )
        if "stream" in ops:
            log(f"{backend}: stream {n}")
            res = _result(label, "stream", "rows", f"all {n} entries, batch 500")
            results.append(
                await compare_passes(res, drivers, lambda d: d.stream(500), args.stream_rounds)
            )
        if "create" in ops:  # last: it grows the stores
            log(f"{backend}: create")
            counter = iter(range(10**9))

            def make_creates(who: str, r: int) -> list[tuple[Any, ...]]:
                salt = f"a{next(counter)}"
                return [(e,) for e in _data.iter_entries(0, args.writes, salt)]

            res = _result(label, "create one per call", "ops", f"{args.writes} per round")
            results.append(
                await compare_calls(res, drivers, "create", make_creates, args.write_rounds)
            )
    return results


# --- output -------------------------------------------------------------------------------
def table(results: list[Result]) -> str:
    lines = [
        "| backend (our async face) | operation | ours /s | raw async driver /s "
        "| x raw: median [spread] vs target |",
        "|---|---|---|---|---|",
    ]
    for res in results:
        lines.append(
            f"| {res.backend} | {res.op} | {fmt_rate(res.rate())} {res.unit} "
            f"| {fmt_rate(res.rate('raw'))} | {fmt_ratio(res, 'raw')} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--backend", action="append", choices=BACKENDS, help="repeatable; default: all three"
    )
    ap.add_argument("--size", type=int, default=10_000, help="entries in each store (10000)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds for get and page")
    ap.add_argument("--write-rounds", type=int, default=3, help="rounds for create")
    ap.add_argument("--stream-rounds", type=int, default=3, help="passes of the stream each")
    ap.add_argument(
        "--gets",
        type=int,
        default=2000,
        help="gets per round (with --concurrency N: at least 10 N, so a slice has N calls)",
    )
    ap.add_argument(
        "--pages",
        type=int,
        default=300,
        help="pages per round (with --concurrency N: at least 10 N, as gets)",
    )
    ap.add_argument("--writes", type=int, default=500, help="creates per round")
    ap.add_argument("--ops", action="append", choices=OPS, help="only these (repeatable)")
    ap.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="tasks calling at once (gets and pages only; the raw side on a pool)",
    )
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    ap.add_argument(
        "--pg-url",
        default=os.environ.get("TEST_POSTGRES_URL", DEFAULT_PG),
        help="PostgreSQL server (admin) URL; two databases are created there and dropped",
    )
    ap.add_argument("--workdir", type=Path, help="keep the SQLite stores here (default: temp)")
    return ap.parse_args(argv)


@contextlib.contextmanager
def workdir(given: Path | None) -> Iterator[Path]:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    path = Path(tempfile.mkdtemp(prefix="webvh-bench-async-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def missing_drivers(backends: list[str]) -> list[str]:
    wanted = {"sqlite": "aiosqlite", "postgres": "asyncpg"}
    missing = []
    for backend in backends:
        module = wanted.get(backend)
        if module is not None:
            try:
                __import__(module)
            except ImportError:
                missing.append(module)
    return missing


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    backends = args.backend or list(BACKENDS)
    missing = missing_drivers(backends)
    if missing:
        raise SystemExit(
            f"raw async drivers missing: {', '.join(missing)}; install the bench group "
            "(`uv sync --group bench`)"
        )
    if args.concurrency > 1:  # each slice (a tenth of a round) keeps all N tasks busy
        args.gets = max(args.gets, SLICES * args.concurrency)
        args.pages = max(args.pages, SLICES * args.concurrency)
    started = time.time()
    results: list[Result] = []
    log(f"data: {_data.describe()}")
    with workdir(args.workdir) as wd:
        for backend in backends:
            log(f"{backend}: loading {args.size} entries (untimed)")
            stores = prepare(backend, args.size, wd, args.pg_url)
            try:
                r = asyncio.run(bench_backend(args, stores))
            finally:
                stores.close()
            print(table(r), flush=True)
            results += r
    print()
    print(
        f"## async face, {args.size} entries; {time.strftime('%Y-%m-%d %H:%M %Z')}; "
        f"{time.time() - started:.0f} s"
    )
    print(table(results))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "size": args.size,
                    "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "data": _data.describe(),
                    "results": [r.as_dict() for r in results],
                    "args": {k: str(v) for k, v in vars(args).items()},
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
