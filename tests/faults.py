"""Fault injection helpers for the reliability tests: real sockets, processes and files.

Nothing here mocks a driver. A fault is produced the way production meets it: a TCP
path that dies (`TcpForwarder`), a process killed mid-write (`start_writer`), a
filesystem that is full or read-only (`small_filesystem`).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TcpForwarder:
    """A TCP relay on 127.0.0.1:<port> to an upstream server, with a switch to cut it.

    Put it between a backend and PostgreSQL to simulate the network going away without
    touching the server (other tests share it). Modes of `cut()`:

    * ``"refuse"`` - every open connection is reset and new ones are refused at once
      (the server or its host went down; clients fail fast).
    * ``"blackhole"`` - open connections are reset, new ones are accepted but never
      answered (a dead route or a firewall dropping packets): only a client-side
      connect timeout stops a caller from hanging forever.

    `restore()` forwards again on the same port, so clients reconnect without
    reconfiguration.
    """

    def __init__(self, upstream_host: str = "127.0.0.1", upstream_port: int = 5432) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._mode = "forward"
        self._stopped = threading.Event()
        self.accepted = 0
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------
    def start(self) -> TcpForwarder:
        self._listen()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True, name="fwd")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._close_listener()
        self._reset_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> TcpForwarder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the switch -----------------------------------------------------------------
    def cut(self, mode: str = "refuse") -> None:
        """Break every connection now; see the class docstring for the modes."""
        if mode not in ("refuse", "blackhole"):
            raise ValueError(mode)
        with self._lock:
            self._mode = mode
        if mode == "refuse":
            self._close_listener()
        self._reset_all()

    def restore(self) -> None:
        with self._lock:
            self._mode = "forward"
        self._reset_all()  # drop blackholed half-open connections too
        if self._listener is None:
            self._listen()

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._sockets)

    # --- internals ------------------------------------------------------------------
    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        listener.settimeout(0.1)
        self._listener = listener

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            # shutdown() wakes a thread blocked in accept(); close() alone would leave
            # the kernel socket listening until that accept() returns.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    def _reset_all(self) -> None:
        with self._lock:
            doomed = list(self._sockets)
            self._sockets.clear()
        for sock in doomed:
            with contextlib.suppress(OSError):
                # SO_LINGER 0: close sends RST, like a peer that vanished.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            listener = self._listener
            if listener is None:
                time.sleep(0.05)
                continue
            try:
                client, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            with self._lock:
                mode = self._mode
                self._sockets.add(client)
            if mode == "blackhole":
                continue  # hold it open, say nothing
            if mode == "refuse":
                self._drop(client)
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                self._drop(client)
                continue
            with self._lock:
                self._sockets.add(upstream)
            threading.Thread(
                target=self._pump, args=(client, upstream), daemon=True, name="fwd-pump"
            ).start()

    def _drop(self, *socks: socket.socket) -> None:
        with self._lock:
            for sock in socks:
                self._sockets.discard(sock)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.close()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while not self._stopped.is_set():
                readable, _, _ = select.select([a, b], [], [], 0.2)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            self._drop(a, b)


# --- writer processes ---------------------------------------------------------------

WRITER_SCRIPT = r"""
import sys
from storage_core import open_storage

backend, url, prefix, options = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
opts = dict(o.split("=", 1) for o in options)
storage = open_storage(backend, url, **opts)
storage.init_db()
print("ready", flush=True)
i = 0
while True:
    scid = f"{prefix}{i:06d}"
    storage.create_log_entry(
        scid=scid, did=f"did:webvh:{scid}:example.com", domain="example.com",
        namespace="crash", identifier=scid,
        logs=[{"versionId": f"1-{scid}", "state": {"id": scid, "pad": "x" * 512}}],
    )
    # Printed only after create_log_entry returned: the write is acknowledged.
    print(scid, flush=True)
    i += 1
"""


@dataclass
class Writer:
    """A child process appending records and printing each acknowledged key."""

    process: subprocess.Popen
    acknowledged: list[str] = field(default_factory=list)

    def wait_for(self, count: int, timeout: float = 60.0) -> None:
        """Read acknowledgements until `count` keys arrived (the writer is mid-loop)."""
        deadline = time.monotonic() + timeout
        assert self.process.stdout is not None
        while len(self.acknowledged) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"writer acknowledged only {len(self.acknowledged)}")
            line = self.process.stdout.readline()
            if not line:
                err = self.process.stderr.read() if self.process.stderr else ""
                raise RuntimeError(f"writer exited early: {err[-2000:]}")
            line = line.strip()
            if line != "ready":
                self.acknowledged.append(line)

    def kill(self) -> None:
        """SIGKILL (no cleanup, no atexit, no flush), then collect what it had printed."""
        self.process.send_signal(signal.SIGKILL)
        out, _ = self.process.communicate(timeout=30)
        self.acknowledged.extend(s for s in out.split() if s != "ready")


def start_writer(backend: str, url: str, prefix: str, **options: str) -> Writer:
    """Start a writer process on the given store (it provisions the store first)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-c", WRITER_SCRIPT, backend, url, prefix]
    args += [f"{k}={v}" for k, v in options.items()]
    process = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(ROOT),
    )
    return Writer(process)


# --- size-limited and read-only filesystems -------------------------------------------


def can_mount() -> bool:
    """True when this process may mount a tmpfs (root in a permissive sandbox)."""
    probe = Path(tempfile.mkdtemp(prefix="webvh-mnt-probe-"))
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            return False
        subprocess.run(["umount", str(probe)], check=False, capture_output=True)
        return True
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            probe.rmdir()


class SmallFilesystem:
    """A mounted tmpfs of a fixed size: writing past it gives ENOSPC even as root, and
    `make_read_only()` remounts it read-only (EROFS, which root cannot bypass either)."""

    def __init__(self, size_bytes: int) -> None:
        self.size_bytes = size_bytes
        self.path = Path(tempfile.mkdtemp(prefix="webvh-smallfs-"))
        self.mounted = False

    def mount(self) -> SmallFilesystem:
        subprocess.run(
            [
                "mount",
                "-t",
                "tmpfs",
                "-o",
                f"size={self.size_bytes},mode=0700",
                "tmpfs",
                str(self.path),
            ],
            check=True,
            capture_output=True,
        )
        self.mounted = True
        return self

    def make_read_only(self) -> None:
        subprocess.run(
            ["mount", "-o", "remount,ro", str(self.path)], check=True, capture_output=True
        )

    def make_writable(self) -> None:
        subprocess.run(
            ["mount", "-o", "remount,rw", str(self.path)], check=True, capture_output=True
        )

    def fill(self, leave_bytes: int = 0) -> Path:
        """Take all free space but `leave_bytes` with a ballast file; returns its path."""
        ballast = self.path / "ballast"
        stat = os.statvfs(self.path)
        free = stat.f_bavail * stat.f_frsize - leave_bytes
        with ballast.open("ab") as fh:
            chunk = b"\0" * 65536
            with contextlib.suppress(OSError):
                while free > 0:
                    fh.write(chunk[: min(len(chunk), free)])
                    free -= len(chunk)
                fh.flush()
        return ballast

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)
            self.mounted = False
        with contextlib.suppress(OSError):
            self.path.rmdir()


@contextlib.contextmanager
def small_filesystem(size_bytes: int) -> Iterator[SmallFilesystem]:
    """A tmpfs of `size_bytes`, unmounted afterwards. Callers check `can_mount()` first."""
    fs = SmallFilesystem(size_bytes).mount()
    try:
        yield fs
    finally:
        fs.unmount()


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Poll `predicate` until it is true or `timeout` passes; returns the last result."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
