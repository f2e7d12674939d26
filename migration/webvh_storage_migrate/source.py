"""Synchronous access to an Askar store for the migration's control work.

Counts, category discovery, single fetches and the reverse direction's writes go through
a private event loop on its own thread, one call at a time. The bulk reading does not:
it runs in a child process (reader.py), because Askar's per-entry calls and a busy
converting thread would fight over the GIL.
"""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import Future
from typing import Any

from webvh_storage_askar.scans import free_scan
from webvh_storage_migrate.handles import open_askar_store
from webvh_storage_migrate.items import RawEntry


class AskarStore:
    """One open Askar store (source or reverse target) with sync helpers."""

    def __init__(
        self,
        uri: str,
        *,
        key: str | None = None,
        key_method: str = "none",
        profile: str | None = None,
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
            self.store = self._run(open_askar_store(uri, key, key_method, profile))
        except BaseException:
            self._stop()
            raise

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
        return self.count_many([category])[category]

    def count_many(self, categories: list[str | None]) -> dict[str | None, int]:
        """Entries per category (None: all), counted concurrently on the store's pool."""

        async def one(category: str | None) -> int:
            async with self.store.session(self.profile) as session:
                return await session.count(category)

        async def go() -> list[int]:
            return await asyncio.gather(*(one(c) for c in categories))

        return dict(zip(categories, self._run(go()), strict=True))

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
            free_scan(scan)
        return counts

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


def decode_json(raw: bytes) -> Any:
    """Parse a value the way the legacy server wrote it (json.dumps text)."""
    try:
        import orjson

        return orjson.loads(raw)
    except ValueError:
        # orjson refuses NaN/Infinity that json.dumps may have written
        return json.loads(raw)
