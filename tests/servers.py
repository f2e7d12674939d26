"""Helpers shared by the fixtures that run servers of their own (PgBouncer, a PostgreSQL
primary and its standby): a free port, a directory the server's user owns, running a
command as that user, and the CI rule for missing binaries."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.pg import IN_CI

#: Servers that refuse to run as root (PgBouncer, postgres) run as this user instead.
SERVICE_USER = "postgres"
PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def find_binary(name: str) -> str | None:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found:
        return found
    for folder in PG_BIN_DIRS:
        if (folder / name).exists():
            return str(folder / name)
    return None


def require_binary(name: str, package: str) -> str:
    """The binary's path; else a skip outside CI, a failure under CI=true."""
    found = find_binary(name)
    if found:
        return found
    reason = f"{name} not found (Debian package {package})"
    if IN_CI:
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def as_service_user(argv: Sequence[str]) -> list[str]:
    """`argv` run as SERVICE_USER when we are root (PgBouncer and postgres refuse root)."""
    if os.geteuid() != 0:
        return list(argv)
    return ["runuser", "-u", SERVICE_USER, "--", *argv]


def service_dir(prefix: str) -> Path:
    """A fresh directory in the system temp dir (pytest's is root-only) that the
    service user owns."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        user = pwd.getpwnam(SERVICE_USER)
        os.chown(path, user.pw_uid, user.pw_gid)
    path.chmod(0o700)
    return path


def chown_to_service_user(path: Path) -> None:
    if os.geteuid() == 0:
        user = pwd.getpwnam(SERVICE_USER)
        os.chown(path, user.pw_uid, user.pw_gid)


def run(argv: Sequence[str], timeout: float = 120) -> str:
    done = subprocess.run(
        as_service_user(argv), capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:2])} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def wait_until_accepting(url: str, timeout: float = 60) -> None:
    """Until a psycopg2 connection to `url` succeeds (a server just started)."""
    import psycopg2

    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg2.connect(url, connect_timeout=2).close()
            return
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
