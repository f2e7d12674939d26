"""The example did:webvh server under 200 concurrent requests, per backend (issue 13).

    uv run python benchmarks/bench_server.py                  # every backend, reads and creates
    uv run python benchmarks/bench_server.py --backend sqlite --op read --rounds 3
    uv run python benchmarks/bench_server.py --out benchmarks/results/server.txt

Each server is a real uvicorn in a child process (one worker, one event loop); this
process is the client (plain asyncio streams, one keep-alive HTTP/1.1 connection per
concurrent request). A batch is `--concurrency` requests sent at once; each handler
set gets one warm-up batch, then `--rounds` measured ones. Three handler sets serve the
same route on the same store, next to the same routes without storage:

- no-storage:  the routes answer a fixed log without touching a store (the floor: what
               FastAPI, uvicorn and the example's parsing cost at this concurrency)
- async:       examples/fastapi_server (AsyncStorageManager, storage_core.fastapi)
- sync-async:  `async def` handlers calling the sync StorageManager (what servers did
               before the async API: every call blocks the event loop)
- sync-def:    `def` handlers calling the sync StorageManager (FastAPI runs them on its
               thread pool: the loop stays free, at the cost of a thread per request)

Reported: requests/s over the measured batches, p50/p99 latency of a request, the mean
wall time of a batch, and, from inside the server (all over the measured batches):
- longest stall: a ticker task sleeps 1 ms at a time and records how late it wakes, the
  longest the loop went without reaching it, i.e. the longest loop iteration (a blocked
  handler, or the Python work of the 200 requests that became ready at once: the
  no-storage row is that floor). Target (issue 13): under 10 ms on the async API, while
  the sync-from-async handlers stall for about the whole batch;
- longest callback: the longest single callback the loop ran (asyncio.Handle._run);
- GC: the time spent in the cyclic garbage collector's collections per batch, the
  number of full (generation 2) ones and the longest one (gc.callbacks);
- server CPU per request (time.process_time, every thread of the server process) and,
  on SQL backends, the connections the store's pool opened per batch.

Every server, whatever its handlers, serves inside storage_core.fastapi.frozen_gc()
as the example does (`--no-freeze-gc`: none does). In the server process,
BENCH_SERVER_PROFILE=/tmp/p writes a cProfile of the batches since the last reading to
/tmp/p-{mode}.prof, BENCH_GC_DEBUG=/tmp/g appends the objects per generation and the
commonest types in generation 2 to /tmp/g-{mode}.txt at each reading.

Ops: `read` GETs /{namespace}/{identifier}/did.jsonl of random DIDs among `--dids`
seeded ones (benchmarks/_data.py: the real vectors, rewritten); `create` POSTs a new
DID's log per request. The machine this ran on is shared (2 cores, other jobs):
absolute numbers are noisy, compare the rows of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.util
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(ROOT), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

import _data  # noqa: E402
import orjson  # noqa: E402
from fastapi import FastAPI, Request, Response  # noqa: E402

from storage_core import open_storage  # noqa: E402
from storage_core.fastapi import frozen_gc, install_error_handlers  # noqa: E402

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
BACKENDS = ("sqlite", "postgres", "askar-sqlite", "askar-postgres")
MODES = ("no-storage", "async", "sync-async", "sync-def")
OPS = ("read", "create")
TICK = 0.001  # the ticker's sleep, seconds
STALL_TARGET_MS = 10.0


# --- the server process -----------------------------------------------------------------
class Ticker:
    """Measures the event loop's responsiveness from inside it, since the last `take()`:
    `stall`, the most a 1 ms sleep overslept (the longest loop iteration), and
    `callback`, the longest any one callback ran (a handler step, a blocking call)."""

    def __init__(self) -> None:
        self.stall = 0.0
        self.callback = 0.0
        self.gc_time = [0.0, 0.0, 0.0]  # seconds in collections of each generation
        self.gc_runs = [0, 0, 0]
        self.gc_longest = 0.0
        self._gc_start = 0.0
        self._cpu = time.process_time()
        self.connects: int | None = None  # connections the store's pool opened (SQL)

    def count_connects(self, storage: Any) -> None:
        """Count the connections the SQL store's pool opens (a pool listener: it does
        not route the fast paths through SQLAlchemy, as an engine listener would)."""
        from sqlalchemy import event

        engine = getattr(storage.backend, "engine", None)
        pool = getattr(getattr(engine, "sync_engine", engine), "pool", None)
        if pool is None:
            return
        self.connects = 0

        def connected(*_: Any) -> None:
            self.connects = (self.connects or 0) + 1

        event.listen(pool, "connect", connected)

    def time_gc(self) -> None:
        """Time every collection of the cyclic garbage collector (gc.callbacks)."""
        clock = time.perf_counter

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                self._gc_start = clock()
                return
            took = clock() - self._gc_start
            generation = info["generation"]
            self.gc_time[generation] += took
            self.gc_runs[generation] += 1
            self.gc_longest = max(self.gc_longest, took)

        gc.callbacks.append(on_gc)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + TICK
            await asyncio.sleep(TICK)
            self.stall = max(self.stall, loop.time() - due)

    def time_callbacks(self) -> None:
        """Time every callback the loop runs (asyncio.Handle._run: task steps, I/O and
        timer callbacks), at well under a microsecond each."""
        original = asyncio.events.Handle._run
        clock = time.perf_counter

        def timed(handle: asyncio.Handle) -> None:
            start = clock()
            original(handle)
            took = clock() - start
            if took > self.callback:
                self.callback = took

        asyncio.events.Handle._run = timed  # type: ignore[method-assign]

    def take(self) -> dict[str, Any]:
        taken = {
            "stall": self.stall,
            "callback": self.callback,
            "gc_time": self.gc_time,
            "gc_runs": self.gc_runs,
            "gc_longest": self.gc_longest,
            "cpu": time.process_time() - self._cpu,  # the server process's, all threads
            "connects": self.connects,
        }
        self._cpu = time.process_time()
        self.connects = None if self.connects is None else 0
        self.stall = self.callback = self.gc_longest = 0.0
        self.gc_time = [0.0, 0.0, 0.0]
        self.gc_runs = [0, 0, 0]
        return taken


def load_example() -> Any:
    path = ROOT / "examples" / "fastapi_server" / "app.py"
    spec = importlib.util.spec_from_file_location("fastapi_server_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fastapi_server_app"] = module
    spec.loader.exec_module(module)
    return module


def sync_app(example: Any, blocking: bool, freeze: bool) -> FastAPI:
    """The example's read and create routes on the sync StorageManager: in `async def`
    handlers (`blocking`: each call holds the loop) or in `def` handlers (thread pool)."""
    from storage_core import StorageManager

    storage = StorageManager()  # from the environment, as the async app's store

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        storage.init_db()
        app.state.storage = storage  # for the ticker's connection count
        with frozen_gc() if freeze else contextlib.nullcontext():
            yield
        storage.close()

    app = FastAPI(lifespan=lifespan)
    install_error_handlers(app)

    def read(namespace: str, identifier: str) -> Response:
        found = storage.get_log_entries({"namespace": namespace, "identifier": identifier}, 1)
        return example.jsonl(found[0]) if found else example.not_found("DID log")

    def create(namespace: str, identifier: str, body: bytes) -> Response:
        entries = example.parse_jsonl(body)
        scid, did, domain = example.identity(entries)
        entry = storage.create_log_entry(
            scid, did, domain, namespace, identifier, entries, example.deactivated(entries)
        )
        return Response(status_code=201, headers=example.etag(entry.record_version))

    route = "/{namespace}/{identifier}/did.jsonl"
    if blocking:

        @app.get(route)
        async def get_blocking(namespace: str, identifier: str) -> Response:
            return read(namespace, identifier)

        @app.post(route, status_code=201)
        async def post_blocking(namespace: str, identifier: str, request: Request) -> Response:
            return create(namespace, identifier, await request.body())

    else:
        app.get(route)(read)

        @app.post(route, status_code=201)
        async def post_threaded(namespace: str, identifier: str, request: Request) -> Response:
            from starlette.concurrency import run_in_threadpool

            body = await request.body()  # reading the body is async; the call is not
            return await run_in_threadpool(create, namespace, identifier, body)

    return app


def bare_app(example: Any, freeze: bool) -> FastAPI:
    """The same routes answering without any storage: what FastAPI, uvicorn and the
    example's own parsing cost at this concurrency (the floor under every other row)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with frozen_gc() if freeze else contextlib.nullcontext():
            yield

    app = FastAPI(lifespan=lifespan)
    install_error_handlers(app)
    body = b"".join(orjson.dumps(line) + b"\n" for line in _data.entry(0).logs)
    route = "/{namespace}/{identifier}/did.jsonl"

    @app.get(route)
    async def read(namespace: str, identifier: str) -> Response:
        return Response(body, media_type=example.JSONL, headers=example.etag(1))

    @app.post(route, status_code=201)
    async def create(namespace: str, identifier: str, request: Request) -> Response:
        example.identity(example.parse_jsonl(await request.body()))
        return Response(status_code=201, headers=example.etag(1))

    return app


async def serve(mode: str, port: int, switch_interval: float | None, freeze: bool) -> None:
    import uvicorn

    if switch_interval is not None:
        sys.setswitchinterval(switch_interval)
    example = load_example()
    if mode == "no-storage":
        app = bare_app(example, freeze)
    elif mode == "async":
        app = example.create_app(freeze_gc=freeze)
    else:
        app = sync_app(example, blocking=mode == "sync-async", freeze=freeze)
    ticker = Ticker()
    profile = os.environ.get("BENCH_SERVER_PROFILE")
    profilers = []
    if profile:
        import cProfile

        profilers.append(cProfile.Profile())
        profilers[-1].enable()

    hooked: list[Any] = []

    @app.get("/_bench/stall")
    async def stall() -> dict[str, Any]:
        storage = getattr(app.state, "storage", None)  # set once the store is open
        if storage is not None and not hooked:
            hooked.append(storage)
            ticker.count_connects(storage)
        if os.environ.get("BENCH_GC_DEBUG"):
            import collections

            with open(os.environ["BENCH_GC_DEBUG"] + f"-{mode}.txt", "a") as out:
                kinds = collections.Counter(
                    f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects(2)
                )
                print(
                    "objects per generation",
                    [len(gc.get_objects(g)) for g in range(3)],
                    "frozen",
                    gc.get_freeze_count(),
                    "thresholds",
                    gc.get_threshold(),
                    "stats",
                    gc.get_stats(),
                    file=out,
                )
                print(kinds.most_common(40), file=out)
        if profilers:  # each file: the batches since the last call
            profilers[-1].dump_stats(f"{profile}-{mode}.prof")
            profilers.append(cProfile.Profile())
            profilers[-1].enable()
        return ticker.take()

    ticker.time_callbacks()
    ticker.time_gc()
    tick = asyncio.create_task(ticker.run())
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        backlog=4096,
        timeout_keep_alive=600,  # the client's connections idle between batches
    )
    try:
        await uvicorn.Server(config).serve()
    finally:
        tick.cancel()


# --- the stores -------------------------------------------------------------------------
@dataclass
class Store:
    backend: str  # the STORAGE_BACKEND value
    url: str

    @property
    def env(self) -> dict[str, str]:
        variable = "ASKAR_DB" if self.backend == "askar" else "DATABASE_URL"
        return {"STORAGE_BACKEND": self.backend, variable: self.url}


@contextlib.contextmanager
def pg_database(admin_url: str, tag: str) -> Iterator[str]:
    import psycopg2

    name = f"webvh_bench_server_{os.getpid()}_{tag}"

    def run(sql: str) -> None:
        conn = psycopg2.connect(admin_url, connect_timeout=5)
        conn.autocommit = True
        try:
            conn.cursor().execute(sql)
        finally:
            conn.close()

    run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    run(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def store_for(name: str, workdir: Path, pg_url: str) -> Iterator[Store]:
    parts = urlsplit(pg_url)
    if name == "sqlite":
        yield Store("sqlalchemy", f"sqlite:///{workdir / 'server.db'}")
    elif name == "askar-sqlite":
        yield Store("askar", f"sqlite://{workdir / 'server-askar.db'}")
    elif name == "postgres":
        with pg_database(pg_url, "sql") as db:
            yield Store(
                "sqlalchemy",
                urlunsplit(parts._replace(path="/" + db, scheme="postgresql+psycopg2")),
            )
    elif name == "askar-postgres":
        with pg_database(pg_url, "askar") as db:
            yield Store("askar", urlunsplit(parts._replace(path="/" + db, scheme="postgres")))
    else:
        raise SystemExit(f"unknown backend {name!r}")


def seed(store: Store, dids: int) -> None:
    with open_storage(store.backend, store.url) as storage:
        storage.init_db(recreate=True)
        for chunk in _data.chunks(dids, 1000):
            storage.bulk_upsert("log_entry", chunk)


# --- the client -------------------------------------------------------------------------
@dataclass
class Row:
    backend: str
    op: str
    mode: str
    rate: float
    p50_ms: float
    p99_ms: float
    batch_ms: float
    stall_ms: float
    callback_ms: float
    gc_ms: float  # time in collections during the measured batches, per batch
    gc_full: int  # full (generation 2) collections during them
    gc_longest_ms: float
    cpu_us: float  # the server process's CPU time per request
    connects: float | None  # connections the pool opened per batch (SQL backends)
    errors: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Connection:
    """One keep-alive HTTP/1.1 connection, the least a client can do per request (httpx
    itself took longer than the server per request at this concurrency: it measured
    the client, not the server)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        payload = body or b""
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(payload)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + payload)
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
            self.writer = None


async def stall_seconds(port: int) -> dict[str, Any]:
    """Read and reset the server's ticker: {"stall": s, "callback": s}."""
    connection = Connection(port)
    try:
        _, body = await connection.request("GET", "/_bench/stall")
    finally:
        await connection.close()
    return dict(orjson.loads(body))


@contextlib.asynccontextmanager
async def server_process(
    store: Store, mode: str, switch_interval: float | None, freeze: bool
) -> AsyncIterator[int]:
    port = free_port()
    env = {**os.environ, **store.env}
    command = [sys.executable, __file__, "serve", "--mode", mode, "--port", str(port)]
    if switch_interval is not None:
        command += ["--switch-interval", str(switch_interval)]
    if not freeze:
        command.append("--no-freeze-gc")
    child = subprocess.Popen(command, env=env)
    try:
        for _ in range(600):
            if child.poll() is not None:
                raise SystemExit(f"server ({mode}) exited with {child.returncode}")
            try:
                await stall_seconds(port)
                break
            except OSError:
                await asyncio.sleep(0.1)
        else:
            raise SystemExit(f"server ({mode}) did not start")
        yield port
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


class Requests:
    """What each batch sends: reads of seeded DIDs, or creates of DIDs never used."""

    def __init__(self, dids: int) -> None:
        self.dids = dids
        self.next_new = dids
        self.rng = random.Random(13)

    def batch(self, op: str, size: int) -> list[tuple[str, str, bytes | None]]:
        if op == "read":
            picks = (_data.entry(self.rng.randrange(self.dids)) for _ in range(size))
            return [("GET", f"/{e.namespace}/{e.identifier}/did.jsonl", None) for e in picks]
        made = []
        for _ in range(size):
            e = _data.entry(self.next_new)
            self.next_new += 1
            body = b"".join(orjson.dumps(line) + b"\n" for line in e.logs)
            made.append(("POST", f"/{e.namespace}/{e.identifier}/did.jsonl", body))
        return made


async def measure(
    port: int, backend: str, op: str, mode: str, requests: Requests, args: argparse.Namespace
) -> Row:
    expected = 200 if op == "read" else 201
    latencies: list[float] = []
    walls: list[float] = []
    errors = 0
    connections = [Connection(port) for _ in range(args.concurrency)]

    async def one(
        connection: Connection, method: str, path: str, body: bytes | None
    ) -> tuple[float, bool]:
        start = time.perf_counter()
        status, _ = await connection.request(method, path, body)
        return time.perf_counter() - start, status == expected

    try:
        for round_ in range(args.rounds + 1):
            if round_ == 1:
                await stall_seconds(port)  # forget the warm-up batch's stalls
            batch = requests.batch(op, args.concurrency)
            start = time.perf_counter()
            results = await asyncio.gather(
                *(one(c, *request) for c, request in zip(connections, batch, strict=True))
            )
            wall = time.perf_counter() - start
            if round_ == 0:
                continue  # warm-up: connections, pools, caches
            walls.append(wall)
            latencies.extend(latency for latency, _ in results)
            errors += sum(1 for _, ok in results if not ok)
        loop = await stall_seconds(port)
    finally:
        for connection in connections:
            await connection.close()
    latencies.sort()
    return Row(
        backend=backend,
        op=op,
        mode=mode,
        rate=len(latencies) / sum(walls),
        p50_ms=statistics.median(latencies) * 1e3,
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1e3,
        batch_ms=statistics.mean(walls) * 1e3,
        stall_ms=loop["stall"] * 1e3,
        callback_ms=loop["callback"] * 1e3,
        gc_ms=sum(loop["gc_time"]) * 1e3 / len(walls),
        gc_full=loop["gc_runs"][2],
        gc_longest_ms=loop["gc_longest"] * 1e3,
        cpu_us=loop["cpu"] * 1e6 / len(latencies),
        connects=None if loop["connects"] is None else loop["connects"] / len(walls),
        errors=errors,
    )


def table(rows: list[Row], args: argparse.Namespace) -> str:
    head = (
        f"{args.concurrency} concurrent requests per batch, {args.rounds} batches after a "
        f"warm-up; uvicorn (1 worker) in a child process, a keep-alive asyncio client in this one; "
        f"{args.dids} seeded DIDs; garbage collector "
        f"{'frozen after start-up' if args.freeze_gc else 'not frozen'}; SQL pool "
        f"STORAGE_POOL_SIZE={os.environ.get('STORAGE_POOL_SIZE', '10')} "
        f"STORAGE_MAX_OVERFLOW={os.environ.get('STORAGE_MAX_OVERFLOW', '20')}.\n\n"
        "| backend | op | handlers | req/s | p50 ms | p99 ms | batch ms | longest stall ms "
        "| longest callback ms | GC ms per batch | full GCs | longest GC ms "
        "| server CPU us/req | connections opened per batch |\n"
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = []
    for r in rows:
        stall = f"{r.stall_ms:.1f}"
        if r.mode == "async":
            stall += " ok" if r.stall_ms < STALL_TARGET_MS else " (target < 10)"
        errors = f" ({r.errors} failed)" if r.errors else ""
        lines.append(
            f"| {r.backend} | {r.op} | {r.mode} | {r.rate:.0f}{errors} | {r.p50_ms:.1f} | "
            f"{r.p99_ms:.1f} | {r.batch_ms:.0f} | {stall} | {r.callback_ms:.1f} | "
            f"{r.gc_ms:.1f} | {r.gc_full} | {r.gc_longest_ms:.1f} | {r.cpu_us:.0f} | "
            f"{'-' if r.connects is None else f'{r.connects:.0f}'} |"
        )
    return head + "\n".join(lines) + "\n"


async def run(args: argparse.Namespace) -> str:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        for backend in args.backend or BACKENDS:
            with store_for(backend, Path(tmp), args.pg_url) as store:
                print(f"{backend}: seeding {args.dids} DIDs", file=sys.stderr)
                seed(store, args.dids)
                requests = Requests(args.dids)
                for op in args.op or OPS:
                    for mode in args.mode or MODES:
                        async with server_process(
                            store, mode, args.switch_interval, args.freeze_gc
                        ) as port:
                            row = await measure(port, backend, op, mode, requests, args)
                        rows.append(row)
                        print(table([row], args).splitlines()[-1], file=sys.stderr)
    return table(rows, args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    child = sub.add_parser("serve", help="(internal) run one server")
    child.add_argument("--mode", choices=MODES, required=True)
    child.add_argument("--port", type=int, required=True)
    child.add_argument("--switch-interval", type=float)
    child.add_argument("--no-freeze-gc", dest="freeze_gc", action="store_false")
    parser.add_argument("--backend", action="append", choices=BACKENDS)
    parser.add_argument("--op", action="append", choices=OPS)
    parser.add_argument("--mode", action="append", choices=MODES)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dids", type=int, default=1000)
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    parser.add_argument(
        "--no-freeze-gc",
        dest="freeze_gc",
        action="store_false",
        help="serve without storage_core.fastapi.frozen_gc (the default: every server, "
        "whatever its handlers, freezes what its start-up built, as the example does)",
    )
    parser.add_argument(
        "--switch-interval",
        type=float,
        help="the servers' sys.setswitchinterval (default 0.005 s): how long a thread may "
        "hold the GIL while the loop thread waits for it",
    )
    args = parser.parse_args(argv)
    if args.command == "serve":
        asyncio.run(serve(args.mode, args.port, args.switch_interval, args.freeze_gc))
        return 0
    result = asyncio.run(run(args))
    print(result)
    if args.out:
        args.out.write_text(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
