"""A real PgBouncer (Debian's `pgbouncer`) in transaction pooling mode, in front of the
local PostgreSQL server, on a free localhost port; stopped and removed afterwards.

`pgbouncer` fixture: a running PgBouncer; `.url(database)` is a SQLAlchemy URL through it.
Outside CI a missing binary skips (one-line reason); under CI=true it fails (.ci/run
installs the package).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.pg import PgServer, require_pg
from tests.servers import (
    as_service_user,
    chown_to_service_user,
    free_port,
    require_binary,
    service_dir,
    wait_until_accepting,
)

#: Server connections PgBouncer opens per (database, user): what the workers share.
DEFAULT_POOL_SIZE = 5


class PgBouncer:
    def __init__(self, binary: str, upstream: str, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        self.binary = binary
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 5432
        self.user = parts.username or "postgres"
        self.pool_size = pool_size
        self.port = free_port()
        self.dir = service_dir("webvh-pgbouncer-")
        self._process: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        return "\n".join(
            [
                "[databases]",
                # every database name, passed through to the local server
                f"* = host={self.upstream_host} port={self.upstream_port}",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {self.port}",
                "unix_socket_dir =",
                "auth_type = trust",
                f"auth_file = {self.dir / 'users.txt'}",
                "pool_mode = transaction",
                f"default_pool_size = {self.pool_size}",
                "max_client_conn = 1000",
                f"admin_users = {self.user}",
                "ignore_startup_parameters = extra_float_digits,options",
                f"logfile = {self.dir / 'pgbouncer.log'}",
                f"pidfile = {self.dir / 'pgbouncer.pid'}",
                "",
            ]
        )

    def start(self) -> None:
        for name, text in (("pgbouncer.ini", self.config()), ("users.txt", f'"{self.user}" ""\n')):
            path = self.dir / name
            path.write_text(text)
            chown_to_service_user(path)
        self._process = subprocess.Popen(
            as_service_user([self.binary, str(self.dir / "pgbouncer.ini")]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until_accepting(self.dsn("postgres"), timeout=30)
        except Exception:
            self.stop()
            raise

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()  # runuser passes SIGTERM on; PgBouncer exits at once
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def clients(self, database: str) -> int:
        """Client connections PgBouncer holds for `database` (its SHOW CLIENTS)."""
        import psycopg2

        conn = psycopg2.connect(self.dsn("pgbouncer"), connect_timeout=5)
        conn.autocommit = True  # the admin console has no transactions
        try:
            with conn.cursor() as cursor:
                cursor.execute("SHOW CLIENTS")
                names = [d[0] for d in cursor.description]
                rows = cursor.fetchall()
        finally:
            conn.close()
        return sum(1 for row in rows if row[names.index("database")] == database)

    def log(self) -> str:
        path = Path(self.dir / "pgbouncer.log")
        return path.read_text() if path.exists() else ""

    def dsn(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{database}"


@pytest.fixture(scope="session")
def pgbouncer(pg_server: PgServer) -> Iterator[PgBouncer]:
    require_pg(pg_server)
    bouncer = PgBouncer(require_binary("pgbouncer", "pgbouncer"), pg_server.url)
    bouncer.start()
    yield bouncer
    bouncer.stop()
