"""The advisory lock that serialises provisioning of an Askar store on PostgreSQL.

aries-askar runs no SQL of ours, so the lock is held on a short psycopg2 connection of
its own to the store's database: `pg_advisory_xact_lock` inside a transaction that stays
open while Askar opens or provisions the store, ended (and the lock released) by a
rollback. A transaction-level lock also holds through PgBouncer in transaction pooling
mode. A database that does not exist yet is created first (a concurrent creator's
"already exists" is fine), so every process locks in the same database.

psycopg2 comes with the SQL backend's `postgres` extra; without it there is no lock and
concurrent first start-ups are unprotected (the docs say to install it).
"""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from storage_core.config import mask_text
from storage_core.errors import BackendUnavailableError
from webvh_storage_askar.config import AskarConfig

#: pg_advisory_xact_lock key held while a store is opened or provisioned.
PROVISION_LOCK_KEY = 0x7765_6276_6800_0002  # "webvh" + 2 (the SQL backend uses + 1)
CONNECT_TIMEOUT_S = 10
_ALREADY_EXISTS = ("42P04", "23505")  # duplicate_database; unique_violation in pg_database


class PostgresLock:
    """`acquire()` blocks until this process holds the store's provisioning lock."""

    def __init__(self, config: AskarConfig) -> None:
        parts = urlsplit(config.uri)
        # Askar's own query options (max_connections, ...) mean nothing to libpq
        self._dsn = urlunsplit(parts._replace(scheme="postgresql", query="", fragment=""))
        self._database = parts.path.lstrip("/") or "postgres"
        self._secrets = config.secrets
        self._conn: Any = None

    def acquire(self) -> PostgresLock:
        try:
            psycopg2: Any = importlib.import_module("psycopg2")
        except ImportError:  # pragma: no cover - psycopg2 is installed with [postgres]
            return self
        try:
            try:
                conn = self._connect(psycopg2, self._dsn)
            except psycopg2.OperationalError as exc:
                if "does not exist" not in str(exc):
                    raise
                self._create_database(psycopg2)
                conn = self._connect(psycopg2, self._dsn)
            try:
                with conn.cursor() as cursor:  # opens the transaction that holds the lock
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", (PROVISION_LOCK_KEY,))
            except BaseException:
                conn.close()
                raise
        except psycopg2.Error as exc:
            message = mask_text(str(exc).strip().splitlines()[0], self._secrets)
            raise BackendUnavailableError(
                f"locking the Askar store for provisioning: {message}"
            ) from None
        self._conn = conn
        return self

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()  # ends the transaction, and with it the lock

    def _connect(self, psycopg2: Any, dsn: str) -> Any:
        return psycopg2.connect(dsn, connect_timeout=CONNECT_TIMEOUT_S)

    def _create_database(self, psycopg2: Any) -> None:
        admin = self._connect(psycopg2, urlunsplit(urlsplit(self._dsn)._replace(path="/postgres")))
        try:
            admin.autocommit = True
            with admin.cursor() as cursor:
                name = self._database.replace('"', '""')
                cursor.execute(f'CREATE DATABASE "{name}"')
        except psycopg2.Error as exc:
            if exc.pgcode not in _ALREADY_EXISTS:
                raise
        finally:
            admin.close()
