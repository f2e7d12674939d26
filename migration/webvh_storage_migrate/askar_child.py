"""The reader's child process: `python -m webvh_storage_migrate.askar_child`.

askar_reader.py starts it and is its only client. It opens its own handle on the Askar
store (parameters, key included, arrive on stdin, never argv or the environment), then
serves scan requests: it streams the categories asked for back to back, in id order, as
chunks on stdout. It only reads. When the parent goes away its next read or write fails
and it exits.

Imports stay to the standard library and aries_askar (no storage_core, whose package
import costs more than the child's whole start), so it opens the store while the parent
is still surveying it. The message framing and the store opening live here because
both processes use them and only this module is light enough for the child.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import queue
import signal
import sys
import threading
from collections.abc import Iterable
from typing import IO, Any

from webvh_storage_askar.scans import free_scan

Message = tuple[Any, ...]
_HEADER = 8
_GONE = (EOFError, BrokenPipeError, ConnectionResetError)


# --- the framing: a length, then a pickle ------------------------------------------------
# Both ends are this package's code, started by the parent, so unpickling is safe here.
def encode_message(message: Message) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return len(data).to_bytes(_HEADER, "little") + data


def write_message(stream: IO[bytes], message: Message) -> None:
    stream.write(encode_message(message))
    stream.flush()


def read_message(stream: IO[bytes]) -> Message:
    header = stream.read(_HEADER)
    if len(header) < _HEADER:
        raise EOFError("pipe closed")
    size = int.from_bytes(header, "little")
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("pipe closed mid-message")
    message: Message = pickle.loads(data)
    return message


async def open_askar_store(uri: str, key: str | None, method: str, profile: str | None) -> Any:
    """An existing Askar store, never a new one (the Askar backend provisions stores)."""
    # Imported here so `storage-core --help` never loads aries_askar.
    from aries_askar import Store  # type: ignore[import-untyped]

    pass_key = key if method != "none" else None
    return await Store.open(uri, method, pass_key, profile=profile)


# --- the child ---------------------------------------------------------------------------
class _Pipe:
    """Requests on stdin; messages on a private copy of stdout, with fd 1 itself pointed
    at stderr so nothing a library prints can corrupt a message.

    Sending is done by a thread with a small queue, so the scan keeps reading while the
    parent is still busy with an earlier chunk. The thread takes the GIL only once per
    message: each message is one blocking write(2) of already pickled bytes.
    """

    def __init__(self, ahead: int = 2) -> None:
        self.inbox = sys.stdin.buffer
        self._fd = os.dup(1)
        os.dup2(2, 1)
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=ahead)
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="send", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while (data := self._queue.get()) is not None:
            if self._failed is not None:
                continue  # keep emptying the queue so send() never blocks on it
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view) :]
            except OSError as exc:
                self._failed = exc

    def send(self, message: Message) -> None:
        if self._failed is not None:
            raise BrokenPipeError("the parent is gone") from self._failed
        self._queue.put(encode_message(message))

    def recv(self) -> Message:
        return read_message(self.inbox)

    def close(self) -> None:
        """Send what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join()


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    pipe = _Pipe()
    try:
        request = pipe.recv()
        if request[0] == "open":
            asyncio.run(_serve(pipe, *request[1:]))
    except _GONE:
        pass  # the parent is gone: nobody to report to
    finally:
        pipe.close()


async def _serve(
    pipe: _Pipe, uri: str, key: str | None, method: str, profile: str | None, warm: list[str]
) -> None:
    try:
        store = await open_askar_store(uri, key, method, profile)
    except Exception as exc:
        pipe.send(("error", _describe(exc, key)))
        return
    # Categories the parent will most likely ask for first: their scans start now, so
    # Askar sorts them while the parent is still surveying the store.
    early = {category: _start(store, category, profile) for category in warm}
    try:
        while True:
            request = await asyncio.to_thread(pipe.recv)  # the loop runs on meanwhile
            if request[0] != "scan":
                return
            _, wanted, size = request
            try:
                await _stream(pipe, store, profile, wanted, size, early)
            except _GONE:
                raise
            except Exception as exc:
                pipe.send(("error", _describe(exc, key)))
            early = {}  # an early scan is only ever the first request's
    finally:
        await _release(early.values())
        await store.close()


Started = tuple[Any, "asyncio.Future[Any]"]  # a scan and its start (Scan.load) in flight


def _start(store: Any, category: str, profile: str | None) -> Started:
    scan = store.scan(category, profile=profile, order_by="id")
    return scan, asyncio.ensure_future(scan.load())


async def _release(started: Iterable[Started]) -> None:
    """Free scans, after their starts finish: never free one under a native call."""
    started = list(started)
    await asyncio.gather(*(future for _, future in started), return_exceptions=True)
    for scan, _ in started:
        free_scan(scan)


async def _stream(
    pipe: _Pipe,
    store: Any,
    profile: str | None,
    wanted: list[tuple[str, bool]],
    size: int,
    early: dict[str, Started],
) -> None:
    """Send ("chunk", rows) messages then ("end",) per category. The next category's scan
    is started once this one's first rows are in, so Askar sorts it meanwhile without
    delaying the first rows of the run."""
    started: dict[int, Started] = {}
    for position, (category, _) in enumerate(wanted):
        if category in early:
            started[position] = early.pop(category)
    try:
        for position, (category, with_tags) in enumerate(wanted):
            if position not in started:
                started[position] = _start(store, category, profile)
            scan, loading = started[position]
            await loading  # Scan.load() must not run twice at once
            rows: list[tuple[str, bytes, dict[str, str] | None]] = []
            async for entry in scan:
                tags = dict(entry.tags) if with_tags else None
                rows.append((entry.name, bytes(entry.raw_value), tags))
                if len(rows) == size:
                    pipe.send(("chunk", rows))
                    rows = []
                if position + 1 < len(wanted) and position + 1 not in started:
                    started[position + 1] = _start(store, wanted[position + 1][0], profile)
            if rows:
                pipe.send(("chunk", rows))
            pipe.send(("end",))
            free_scan(scan)  # its pool connection back now, not at the end of the request
    finally:
        await _release(started.values())


def _describe(exc: BaseException, key: str | None) -> str:
    """The error without the key; the parent masks the rest (URI passwords) on receipt."""
    text = f"{type(exc).__name__}: {exc}"
    return text.replace(key, "***") if key else text


if __name__ == "__main__":
    main()
