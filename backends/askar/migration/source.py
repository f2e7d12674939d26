"""Streaming, read-only access to an Askar store from synchronous code.

The store is driven by a private event loop on its own thread, one call per chunk (not
per entry), so the migration stays synchronous like StorageManager, and the next chunk
is fetched while the caller converts and writes the current one (Askar only advances a
scan when asked, so without this read and write time would add up). Scans are ordered by
"id" (the only order Askar has, so a re-run visits entries in the same order), read
`raw_value` once per entry, and are freed in `finally` so an abandoned scan never keeps
a pool connection.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

from backends.askar.migration.items import RawEntry


def _free_scan(scan: Any) -> None:
    """Free a scan's native handle now instead of at garbage collection.

    aries_askar 0.5 has no Scan.close(); its handle is freed by a finalizer that skips a
    zeroed handle, so freeing and zeroing here cannot double free.
    """
    handle = getattr(scan, "handle", None)
    if handle:
        type(handle)._cleanup(handle.value)
        handle.value = 0
    if hasattr(scan, "_buffer"):
        scan._buffer = None


class AskarStore:
    """One open Askar store (source or reverse target) with sync helpers."""

    def __init__(
        self,
        uri: str,
        *,
        key: str | None = None,
        key_method: str = "none",
        profile: str | None = None,
        create: bool = False,
    ) -> None:
        self.uri = uri
        self.profile = profile
        self.store: Any = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="askar-migration", daemon=True
        )
        self._thread.start()
        try:
            self.store = self._run(self._open(uri, key, key_method, profile, create))
        except BaseException:
            self._stop()
            raise

    @staticmethod
    async def _open(uri: str, key: str | None, method: str, profile: str | None, create: bool):
        from aries_askar import Store

        pass_key = key if method != "none" else None
        if create:
            try:
                return await Store.open(uri, method, pass_key, profile=profile)
            except Exception:
                return await Store.provision(uri, method, pass_key, profile=profile)
        return await Store.open(uri, method, pass_key, profile=profile)

    def _submit(self, coro: Any) -> Future:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def _run(self, coro: Any) -> Any:
        return self._submit(coro).result()

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    # --- reading --------------------------------------------------------------------
    def count(self, category: str | None) -> int:
        async def go() -> int:
            async with self.store.session(self.profile) as session:
                return await session.count(category)

        return self._run(go())

    def discover_categories(self) -> dict[str, int]:
        """Entries per category, by one scan that reads only each entry's category."""
        counts: dict[str, int] = {}

        async def go(scan: Any) -> None:
            async for entry in scan:
                category = entry.category
                counts[category] = counts.get(category, 0) + 1

        scan = self.store.scan(None, profile=self.profile)
        try:
            self._run(go(scan))
        finally:
            _free_scan(scan)
        return counts

    def iter_chunks(
        self, category: str, chunk_size: int, *, with_tags: bool = False
    ) -> Iterator[list[RawEntry]]:
        """Every entry of `category` in id order, `chunk_size` at a time."""
        scan = self.store.scan(category, profile=self.profile, order_by="id")
        queue_ref: Future = self._submit(_start_reader(scan, category, chunk_size, with_tags))
        queue, reader, stop = queue_ref.result()
        try:
            while True:
                chunk = self._run(queue.get())
                if isinstance(chunk, BaseException):
                    raise chunk
                if chunk:
                    yield chunk
                if len(chunk) < chunk_size:
                    return
        finally:
            self._run(_stop_reader(queue, reader, stop, scan))

    def fetch(self, category: str, name: str) -> RawEntry | None:
        async def go() -> RawEntry | None:
            async with self.store.session(self.profile) as session:
                entry = await session.fetch(category, name)
                if entry is None:
                    return None
                return RawEntry(category, name, bytes(entry.raw_value), dict(entry.tags))

        return self._run(go())

    # --- writing (reverse direction only) ---------------------------------------------
    def put_many(self, rows: list[tuple[str, str, bytes | str, dict[str, str]]]) -> None:
        """Insert or replace each (category, name, value, tags) in one transaction."""

        async def go() -> None:
            async with self.store.transaction(self.profile) as txn:
                for category, name, value, tags in rows:
                    existing = await txn.fetch(category, name, for_update=True)
                    if existing is None:
                        await txn.insert(category, name, value, tags)
                    else:
                        await txn.replace(category, name, value, tags)
                await txn.commit()

        self._run(go())

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            if self.store is not None:
                self._run(self.store.close())
        finally:
            self.store = None
            self._stop()

    def __enter__(self) -> AskarStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


PREFETCH_CHUNKS = 4  # chunks read ahead of the caller: bounds memory, hides scan latency


async def _start_reader(
    scan: Any, category: str, size: int, with_tags: bool
) -> tuple[asyncio.Queue, asyncio.Task, asyncio.Event]:
    """Read chunks ahead into a bounded queue; an error is queued in place of a chunk."""
    queue: asyncio.Queue = asyncio.Queue(maxsize=PREFETCH_CHUNKS)
    stop = asyncio.Event()

    async def read_ahead() -> None:
        try:
            while not stop.is_set():
                chunk = await _take(scan, category, size, with_tags)
                await queue.put(chunk)
                if len(chunk) < size:
                    return
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            await queue.put(exc)

    return queue, asyncio.get_running_loop().create_task(read_ahead()), stop


async def _stop_reader(
    queue: asyncio.Queue, reader: asyncio.Task, stop: asyncio.Event, scan: Any
) -> None:
    """Let the fetch in flight finish (never free a scan under a native call), then free
    the scan. Draining the queue unblocks a reader waiting to put."""
    stop.set()
    while not reader.done():
        while not queue.empty():
            queue.get_nowait()
        await asyncio.wait({reader}, timeout=0.05)
    _free_scan(scan)


async def _take(scan: Any, category: str, size: int, with_tags: bool) -> list[RawEntry]:
    chunk: list[RawEntry] = []
    try:
        while len(chunk) < size:
            entry = await scan.__anext__()
            chunk.append(
                RawEntry(
                    category,
                    entry.name,
                    bytes(entry.raw_value),
                    dict(entry.tags) if with_tags else None,
                )
            )
    except StopAsyncIteration:
        pass
    return chunk


def decode_json(raw: bytes) -> Any:
    """Parse a value the way the legacy server wrote it (json.dumps text)."""
    try:
        import orjson

        return orjson.loads(raw)
    except ValueError:
        # orjson refuses NaN/Infinity that json.dumps may have written
        return json.loads(raw)
