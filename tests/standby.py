"""A PostgreSQL primary and a streaming standby of it, made with the installed binaries
in temp dirs on free localhost ports, run as the `postgres` user, stopped and removed
afterwards.

The shared server at 5432 is not used: its pg_hba has no replication entry and it must
not be reconfigured, so the fixture initdb's a primary of its own (PostgreSQL's defaults
already stream: wal_level=replica, max_wal_senders=10; initdb --auth=trust allows local
replication) and clones it with `pg_basebackup -R`. Under CI=true missing binaries fail.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import find_binary, free_port, require_binary, run, service_dir

#: Server settings for a throwaway test cluster (durability is not the point here).
FAST = "-c fsync=off -c full_page_writes=off -c shared_buffers=16MB"


class Cluster:
    """One PostgreSQL data directory and the server running on it."""

    def __init__(self, bindir: Path, datadir: Path, port: int) -> None:
        self.bindir = bindir
        self.datadir = datadir
        self.port = port

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str, scheme: str = "postgresql+psycopg2") -> str:
        return f"{scheme}://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.datadir} {FAST}"
        run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.datadir),
                "-o",
                options,
                "-l",
                str(self.datadir / "server.log"),
                "-w",
                "start",
            ]
        )

    def stop(self, mode: str = "fast") -> None:
        """`immediate` is a crash (kill -9 of every backend, no shutdown checkpoint)."""
        if (self.datadir / "postmaster.pid").exists():
            run([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop"])

    def port_open(self) -> bool:
        return (self.datadir / "postmaster.pid").exists()

    def execute(self, sql: str, database: str = "postgres") -> list[tuple]:
        import psycopg2

        conn = psycopg2.connect(self.url(database, "postgresql"), connect_timeout=5)
        conn.autocommit = True
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql)
                return cursor.fetchall() if cursor.description else []
        finally:
            conn.close()


class ReplicatedPair:
    """`primary` and `standby` (hot, streaming from the primary)."""

    def __init__(self, bindir: Path) -> None:
        self.root = service_dir("webvh-replication-")
        self.primary = Cluster(bindir, self.root / "primary", free_port())
        self.standby = Cluster(bindir, self.root / "standby", free_port())

    def start(self) -> None:
        bindir = self.primary.bindir
        run(
            [
                str(bindir / "initdb"),
                "-D",
                str(self.primary.datadir),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ]
        )
        self.primary.start()
        run(
            [
                str(bindir / "pg_basebackup"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.primary.port),
                "-U",
                "postgres",
                "-D",
                str(self.standby.datadir),
                "-R",
                "-X",
                "stream",
                "--no-sync",
            ]
        )
        self.standby.start()

    def create_database(self, name: str) -> None:
        self.primary.execute(f'CREATE DATABASE "{name}"')
        self.wait_replayed()

    def wait_replayed(self, timeout: float = 60) -> None:
        """Until the standby has replayed everything the primary wrote so far."""
        (lsn,) = self.primary.execute("SELECT pg_current_wal_insert_lsn()::text")[0]
        deadline = time.monotonic() + timeout
        while True:
            (done,) = self.standby.execute(f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn")[0]
            if done:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the standby did not replay up to {lsn}")
            time.sleep(0.05)

    def stop(self) -> None:
        try:
            self.standby.stop("immediate")
        finally:
            try:
                self.primary.stop("immediate")
            finally:
                shutil.rmtree(self.root, ignore_errors=True)


def _bindir() -> Path:
    initdb = find_binary("initdb")
    if initdb is None:
        require_binary("initdb", "postgresql")
    return Path(str(initdb)).resolve().parent


@pytest.fixture(scope="session")
def replicated_pair() -> Iterator[ReplicatedPair]:
    require_binary("pg_basebackup", "postgresql-client")
    pair = ReplicatedPair(_bindir())
    try:
        pair.start()
        yield pair
    finally:
        pair.stop()
