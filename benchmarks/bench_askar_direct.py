"""Askar get by key: what would calling aries-askar from the caller's thread give?
(issue 17, item 5: a measurement, the backend is unchanged.)

    uv run python benchmarks/bench_askar_direct.py [--size 2000] [--gets 2000] [--rounds 5]

Our sync API runs Askar on a private loop thread, so a get is caller -> loop thread ->
Askar's worker -> loop thread -> caller. aries-askar's FFI is callback based, so a
synchronous caller could instead call `askar_session_fetch` itself and wait for the
callback on a lock: caller -> Askar's worker -> caller, one hand-off fewer and no event
loop. Measured on one SQLite store (the benchmark data), one open session, each get
decoded to a LogEntry, the drivers taking turns in slices within each round:

- ours:           StorageManager.get_log_entry (today's path: validation, loop hand-off)
- loop hand-off:  the raw fetch submitted to a loop thread (run_coroutine_threadsafe),
                  i.e. the hand-off alone, without our layers
- direct:         the FFI fetch called from the caller's thread, waited on with a lock
                  (private aries-askar bindings), plus the same validation and decode
- raw async:      raw aries-askar awaited in an event loop in this thread (run.py's raw
                  driver: an async caller doing a block of gets in one coroutine)

Ratios are against raw async, median of the per-round ratios [lowest-highest].
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for p in (str(HERE.parent), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

import _data  # noqa: E402
from aries_askar import Store  # noqa: E402
from aries_askar.bindings import EntryListHandle, FfiStr, SessionHandle, get_library  # noqa: E402
from aries_askar.store import EntryList  # noqa: E402

from storage_core import kinds as K  # noqa: E402
from storage_core import open_storage  # noqa: E402
from storage_core.validation import validate_key  # noqa: E402
from webvh_storage_askar import layout  # noqa: E402

SPEC = K.LOG_ENTRY
CATEGORY = SPEC.category


class DirectFetch:
    """`askar_session_fetch` called from the calling thread; the callback (on Askar's
    worker thread) stores the result and releases a lock the caller waits on."""

    _CB = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_int64, EntryListHandle)

    def __init__(self, session_handle: Any) -> None:
        lib = get_library().loaded  # the loaded library: method() and errors
        self.lib = lib
        self.session = session_handle
        self.fn = lib.method(
            "askar_session_fetch",
            (SessionHandle, FfiStr, FfiStr, ctypes.c_int8, ctypes.c_void_p, ctypes.c_int64),
            restype=ctypes.c_int64,
        )
        self.done = threading.Lock()
        self.result: Any = None
        self.err = 0
        self.cb = self._CB(self._callback)  # kept alive as long as this object

    def _callback(self, _cb_id: int, err: int, handle: Any) -> None:
        self.err, self.result = err, handle
        self.done.release()

    def fetch(self, name: str) -> bytes | None:
        self.done.acquire()
        rc = self.fn(self.session, FfiStr(CATEGORY), FfiStr(name), 0, self.cb, 0)
        if rc:
            self.done.release()
            raise self.lib.get_current_error(True)
        self.done.acquire()  # until the callback has run
        self.done.release()
        if self.err:
            raise self.lib.get_current_error(True)
        handle = self.result
        entry = next(iter(EntryList(handle, 1)), None) if handle else None
        return None if entry is None else bytes(entry.raw_value)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size", type=int, default=2000, help="entries in the store")
    ap.add_argument("--gets", type=int, default=2000, help="gets per driver per round")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="webvh-askar-direct-") as tmp:
        uri = f"sqlite://{Path(tmp) / 'askar.db'}"
        manager = open_storage("askar", uri)
        manager.init_db(recreate=True)
        for batch in _data.chunks(args.size, 1000):
            manager.bulk_upsert("log_entry", batch)

        # Raw aries-askar on the same file: a loop thread for the hand-off, and a loop
        # in this thread for the async caller; both use one session each.
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()

        def on_loop(coro: Any) -> Any:
            return asyncio.run_coroutine_threadsafe(coro, loop).result()

        async def open_session() -> tuple[Any, Any]:
            store = await Store.open(uri, "none")
            session = await store.session()
            return store, session

        store, session = on_loop(open_session())
        local = asyncio.new_event_loop()
        lstore, lsession = local.run_until_complete(open_session())
        direct = DirectFetch(session.handle)

        def decode(raw: bytes | None) -> Any:
            return None if raw is None else layout.decode(SPEC, raw)

        def raw_bytes(entry: Any) -> bytes | None:
            return None if entry is None else bytes(entry.raw_value)

        def ours(keys: list[str]) -> None:
            for k in keys:
                manager.get_log_entry(k)

        def handoff(keys: list[str]) -> None:
            for k in keys:
                decode(raw_bytes(on_loop(session.fetch(CATEGORY, validate_key(SPEC, k)))))

        def direct_call(keys: list[str]) -> None:
            for k in keys:
                decode(direct.fetch(validate_key(SPEC, k)))

        def raw_async(keys: list[str]) -> None:
            async def block() -> None:
                for k in keys:
                    decode(raw_bytes(await lsession.fetch(CATEGORY, k)))

            local.run_until_complete(block())

        drivers: dict[str, Callable[[list[str]], None]] = {
            "ours": ours,
            "loop hand-off": handoff,
            "direct": direct_call,
            "raw async": raw_async,
        }
        key = _data.scid_for(args.size // 2)
        want = manager.get_log_entry(key)
        assert decode(direct.fetch(key)) == want, "direct fetch disagrees with ours"
        rng = random.Random(5)
        keys = [_data.scid_for(i) for i in range(args.size)]
        names = list(drivers)
        for name in names:  # warm up
            drivers[name](keys[:200])
        rates: dict[str, list[float]] = {n: [] for n in names}
        slices = 10
        for r in range(args.rounds):
            calls = {n: [rng.choice(keys) for _ in range(args.gets)] for n in names}
            spent = dict.fromkeys(names, 0.0)
            for j in range(slices):
                k = (r + j) % len(names)
                for n in names[k:] + names[:k]:
                    part = calls[n][j * args.gets // slices : (j + 1) * args.gets // slices]
                    start = time.perf_counter()
                    drivers[n](part)
                    spent[n] += time.perf_counter() - start
            for n in names:
                rates[n].append(args.gets / spent[n])

        print(
            f"Askar get by key, {args.size} entries, {args.gets} gets x {args.rounds} rounds "
            f"({time.strftime('%Y-%m-%d %H:%M %Z')})"
        )
        print("| path | gets/s (median) | x raw async: median [lowest-highest] |")
        print("|---|---|---|")
        for n in names:
            ratios = [a / b for a, b in zip(rates[n], rates["raw async"], strict=True)]
            print(
                f"| {n} | {statistics.median(rates[n]):,.0f} | {statistics.median(ratios):.2f} "
                f"[{min(ratios):.2f}-{max(ratios):.2f}] |"
            )

        local.run_until_complete(lsession.close())
        local.run_until_complete(lstore.close())
        local.close()
        on_loop(session.close())
        on_loop(store.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        manager.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
