"""Askar scans run in a child process (scan_child.py) and streamed back in chunks.

Why a process and not a thread: aries-askar's Python wrapper makes a few ctypes calls
per entry, and each one releases and re-takes the GIL. Beside a thread that converts and
writes (pure Python), every re-take waits out the GIL switch interval: a scan that takes
2.1 s alone took 23 s next to one busy thread on this project's CI machine
(benchmarks/bench_scan_beside_thread.py). In its own process the scan runs at full speed
while this process converts and writes the chunk before, so reading and writing overlap
on two cores (benchmarks/bench_migrate.py).

The child is a plain `python -m` subprocess speaking pickled messages over its stdin and
stdout, not multiprocessing, whose spawn would re-import the caller's main module.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from storage_core.config import mask_text
from webvh_storage_migrate import askar_child as scan_child
from webvh_storage_migrate.items import RawEntry
from webvh_storage_migrate.pipe import read_message, write_message

Wanted = tuple[str, bool]  # (category, keep tags)
JOIN_SECONDS = 5.0
_ROOT = str(Path(__file__).resolve().parents[3])  # where `backends` is importable from


class ReaderError(RuntimeError):
    """The reader process failed or stopped; the message is already masked."""


class ScanReader:
    """The parent's side: ask for categories in order, then take their chunks.

    `expect()` tells the child every category the caller will read next so their scans
    run back to back; `chunks()` asking for anything else (or a stream abandoned half
    way) restarts the child, which costs a process start but is never wrong.
    """

    def __init__(
        self,
        uri: str,
        *,
        key: str | None,
        key_method: str,
        profile: str | None,
        chunk_size: int,
        warm: Sequence[str] = (),
    ) -> None:
        """`warm`: categories likely to be read first, whose scans the child starts as
        soon as it opens the store (a sort that would otherwise wait for expect())."""
        self._params = (uri, key, key_method, profile)
        self._warm = list(warm)
        self._secrets = [key]
        self.chunk_size = chunk_size
        self._process: Any = None
        self._pending: deque[Wanted] = deque()  # asked of the child, end not yet received
        self._mid_stream = False  # a chunks() left before its category ended
        self._start()

    @property
    def pid(self) -> int | None:
        """The child's process id (None between a failure and the next request)."""
        return None if self._process is None else self._process.pid

    # --- child lifecycle ------------------------------------------------------------
    def _start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_ROOT, env.get("PYTHONPATH")]))
        process = subprocess.Popen(
            [sys.executable, "-m", scan_child.__name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self._process = process
        self._pending.clear()
        self._mid_stream = False
        self._send(("open", *self._params, self._warm))
        self._warm = []  # a restarted child starts cold

    def _stop(self, *, graceful: bool) -> None:
        process = self._process
        if process is None:
            return
        self._process = None
        if graceful:
            with contextlib.suppress(OSError):
                write_message(process.stdin, ("exit",))
        with contextlib.suppress(OSError):
            process.stdin.close()  # an idle child reads EOF and exits
        if not graceful:
            process.kill()  # a streaming child may be blocked writing to us
        try:
            process.wait(JOIN_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()

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
    def _send(self, message: tuple) -> None:
        try:
            write_message(self._process.stdin, message)
        except OSError as exc:
            raise self._gone(exc) from None

    def _receive(self) -> tuple:
        try:
            message = read_message(self._process.stdout)
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
