"""The PostgreSQL server the tests use: one fresh database per test run.

In CI (CI=true) an unreachable server fails the run; elsewhere tests that need it skip.
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def admin_url() -> str:
    return os.environ.get("TEST_POSTGRES_URL", DEFAULT_URL)


def _with_db(url: str, db: str, scheme: str | None = None) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + db, scheme=scheme or parts.scheme))


class PgServer:
    def __init__(self, url: str) -> None:
        self.url = url
        self.created: list[str] = []

    def _connect(self):
        import psycopg2

        conn = psycopg2.connect(self.url, connect_timeout=3)
        conn.autocommit = True
        return conn

    def reason_unavailable(self) -> str | None:
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            return "psycopg2 is not installed (install webvh-storage[postgres])"
        try:
            self._connect().close()
        except Exception as exc:
            return f"PostgreSQL not reachable at {urlsplit(self.url).netloc}: {exc}".strip()
        return None

    def create_database(self, prefix: str = "webvh_test") -> str:
        name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        conn = self._connect()
        try:
            conn.cursor().execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        self.created.append(name)
        return name

    def drop_database(self, name: str) -> None:
        conn = self._connect()
        try:
            conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            conn.close()

    def sqlalchemy_url(self, db: str) -> str:
        return _with_db(self.url, db, "postgresql+psycopg2")

    def askar_uri(self, db: str, **params: str) -> str:
        uri = _with_db(self.url, db, "postgres")
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"{uri}?{query}" if query else uri


def require_pg(server: PgServer) -> None:
    reason = server.reason_unavailable()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true and PostgreSQL is required: {reason}", pytrace=False)
    pytest.skip(reason)
