"""Everything the migration does with an Askar store directly (the Askar backend is not
involved: it only knows this project's layout).

* `AskarStore`: one open handle for the control work (counts, category discovery,
  single fetches) and, on a reverse run, writing archived entries back verbatim. Calls
  run one at a time on a `storage_core.loop.BackgroundLoop`.
* `ScanReader`: the bulk reading, done by a child process (askar_child.py) and streamed
  back in chunks. Why a process and not a thread: aries-askar's Python wrapper makes a
  few ctypes calls per entry, and each one releases and re-takes the GIL. Beside a thread
  that converts and writes (pure Python), every re-take waits out the GIL switch
  interval: a scan that takes 2.1 s alone took 23 s next to one busy thread on this
  project's CI machine (benchmarks/bench_scan_beside_thread.py). In its own process the
  scan runs at full speed while this process converts and writes the chunk before, so
  reading and writing overlap on two cores (benchmarks/bench_migrate.py). The child is a
  plain `python -m` subprocess speaking pickled messages over its stdin and stdout, not
  multiprocessing, whose spawn would re-import the caller's main module.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

from storage_core.config import mask_text
from storage_core.interface import ArchivedEntry
from storage_core.loop import BackgroundLoop
from webvh_storage_askar.config import AskarConfig
from webvh_storage_askar.scans import free_scan
from webvh_storage_migrate import askar_child
from webvh_storage_migrate.askar_child import Message, open_askar_store, read_message, write_message
from webvh_storage_migrate.verbatim import from_archive, to_archive

Wanted = tuple[str, bool]  # (category, keep tags)
JOIN_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class RawEntry:
    """One Askar entry as read: the value bytes once, tags only where they are kept."""

    category: str
    name: str
    value: bytes
    tags: dict[str, str] | None = None


class ReaderError(RuntimeError):
    """The reader process failed or stopped; the message is already masked."""


class AskarStore:
    """One open Askar store (the source, or a reverse run's target) with sync helpers.

    Also the archive of a reverse run: `archive_get` / `archive_upsert` /
    `archive_count` behave as a StorageManager's, with the entries kept under their own
    category and name.
    """

    def __init__(self, config: AskarConfig) -> None:
        self.profile = config.profile
        self._loop = BackgroundLoop(name="askar-migration")
        try:
            self.store: Any = self._loop.run(
                open_askar_store(config.uri, config.key, config.key_method, config.profile)
            )
        except BaseException:
            self._loop.close()
            raise

    # --- reading --------------------------------------------------------------------
    def count(self, category: str | None) -> int:
        return self.count_many([category])[category]

    def count_many(self, categories: list[str | None]) -> dict[str | None, int]:
        """Entries per category (None: all), counted concurrently on the store's pool."""

        async def one(category: str | None) -> int:
            async with self.store.session(self.profile) as session:
                counted: int = await session.count(category)
                return counted

        async def every() -> list[int]:
            return await asyncio.gather(*(one(c) for c in categories))

        return dict(zip(categories, self._loop.run(every()), strict=True))

    def discover_categories(self) -> dict[str, int]:
        """Entries per category, by one scan that reads only each entry's category."""
        counts: dict[str, int] = {}

        async def tally(scan: Any) -> None:
            async for entry in scan:
                category = entry.category
                counts[category] = counts.get(category, 0) + 1

        scan = self.store.scan(None, profile=self.profile)
        try:
            self._loop.run(tally(scan))
        finally:
            free_scan(scan)
        return counts

    def fetch_tags(self, category: str, name: str) -> dict[str, str] | None:
        """The tags of one entry (None if it is gone)."""
        found = self._fetch(category, [name])
        return dict(found[name].tags) if name in found else None

    def _fetch(self, category: str, names: Sequence[str]) -> dict[str, ArchivedEntry]:
        async def fetch_all() -> dict[str, ArchivedEntry]:
            found: dict[str, ArchivedEntry] = {}
            async with self.store.session(self.profile) as session:
                for name in names:
                    entry = await session.fetch(category, name)
                    if entry is not None:
                        value, tags = bytes(entry.raw_value), dict(entry.tags)
                        found[name] = to_archive(category, name, value, tags)
            return found

        return self._loop.run(fetch_all())

    # --- the archive of a reverse run ---------------------------------------------------
    def archive_get(self, category: str, names: Sequence[str]) -> dict[str, ArchivedEntry]:
        return self._fetch(category, names)

    def archive_upsert(self, entries: Sequence[ArchivedEntry]) -> int:
        """Insert or replace every entry in one transaction."""

        async def put_all() -> None:
            async with self.store.transaction(self.profile) as txn:
                for e in entries:
                    existing = await txn.fetch(e.category, e.name, for_update=True)
                    write = txn.insert if existing is None else txn.replace
                    value, tags = from_archive(e)
                    await write(e.category, e.name, value, tags)
                await txn.commit()

        self._loop.run(put_all())
        return len(entries)

    def archive_count(self, category: str | None = None) -> int:
        return self.count(category)

    def close(self) -> None:
        store, self.store = self.store, None
        self._loop.close(before_stop=store.close if store is not None else None)

    def __enter__(self) -> AskarStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ScanReader:
    """The parent's side of the reader child: ask for categories in order, then take
    their chunks.

    `expect()` tells the child every category the caller will read next so their scans
    run back to back; `chunks()` asking for anything else (or a stream abandoned half
    way) restarts the child, which costs a process start but is never wrong.
    """

    def __init__(self, config: AskarConfig, *, chunk_size: int, warm: Sequence[str] = ()) -> None:
        """`warm`: categories likely to be read first, whose scans the child starts as
        soon as it opens the store (a sort that would otherwise wait for expect())."""
        self._params = (config.uri, config.key, config.key_method, config.profile)
        self._secrets: list[str | None] = list(config.secrets)
        self._warm = list(warm)
        self.chunk_size = chunk_size
        self._process: subprocess.Popen[bytes] | None = None
        self._pending: deque[Wanted] = deque()  # asked of the child, end not yet received
        self._mid_stream = False  # a chunks() left before its category ended
        self._start()

    @property
    def pid(self) -> int | None:
        """The child's process id (None between a failure and the next request)."""
        return None if self._process is None else self._process.pid

    # --- child lifecycle ------------------------------------------------------------
    def _start(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", askar_child.__name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._pending.clear()
        self._mid_stream = False
        self._send(("open", *self._params, self._warm))
        self._warm = []  # a restarted child starts cold

    def _stop(self, *, graceful: bool) -> None:
        process = self._process
        if process is None:
            return
        self._process = None
        stdin, stdout = _pipes(process)
        if graceful:
            with contextlib.suppress(OSError):
                write_message(stdin, ("exit",))
        with contextlib.suppress(OSError):
            stdin.close()  # an idle child reads EOF and exits
        if not graceful:
            process.kill()  # a streaming child may be blocked writing to us
        try:
            process.wait(JOIN_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        stdout.close()

    def close(self) -> None:
        self._stop(graceful=not (self._pending or self._mid_stream))

    def _restart(self) -> None:
        self._stop(graceful=False)
        self._start()

    # --- requests -------------------------------------------------------------------
    def expect(self, wanted: Sequence[Wanted]) -> None:
        """The categories the caller reads next, in order."""
        if self._pending or self._mid_stream:
            self._restart()
        self._ask(list(wanted))

    def _ask(self, wanted: list[Wanted]) -> None:
        if self._process is None:
            self._start()
        if wanted:
            self._send(("scan", wanted, self.chunk_size))
            self._pending.extend(wanted)

    def chunks(self, category: str, *, with_tags: bool) -> Iterator[list[RawEntry]]:
        """Every entry of `category` in id order, `chunk_size` at a time."""
        wanted = (category, with_tags)
        if self._mid_stream or not self._pending or self._pending[0] != wanted:
            rest = [w for w in self._pending if w != wanted]
            self._restart()
            self._ask([wanted, *rest])
        self._mid_stream = True
        while True:
            message = self._receive()
            if message[0] == "end":
                self._pending.popleft()
                self._mid_stream = False
                return
            _, rows = message
            yield [RawEntry(category, name, value, tags) for name, value, tags in rows]

    # --- the pipe ---------------------------------------------------------------------
    def _send(self, message: Message) -> None:
        assert self._process is not None
        try:
            write_message(_pipes(self._process)[0], message)
        except OSError as exc:
            raise self._gone(exc) from None

    def _receive(self) -> Message:
        assert self._process is not None
        try:
            message = read_message(_pipes(self._process)[1])
        except (EOFError, OSError) as exc:
            raise self._gone(exc) from None
        if message[0] == "error":
            self._pending.clear()
            self._mid_stream = False
            raise ReaderError(mask_text(message[1], self._secrets))
        return message

    def _gone(self, exc: BaseException) -> ReaderError:
        code = None
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self._process.wait(JOIN_SECONDS)
        self._stop(graceful=False)
        return ReaderError(
            f"the Askar reader process stopped unexpectedly (exit code {code}, "
            f"{type(exc).__name__})"
        )

    def __enter__(self) -> ScanReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pipes(process: subprocess.Popen[bytes]) -> tuple[IO[bytes], IO[bytes]]:
    """The child's stdin and stdout (both always piped by `_start`)."""
    assert process.stdin is not None and process.stdout is not None
    return process.stdin, process.stdout
