"""Checks made before a run writes anything: where each store lives, and whether the
target already holds the other program's store.

* The same store on both sides (`--to "$DATABASE_URL"` with the variable unset used to
  point at ./app.db, the legacy store itself) is refused.
* A SQL target that is an Askar store (or an Askar target that is a SQL store) is
  refused: adding the other schema beside it would mix two stores in one file.
  SQLite files are looked at read-only here, before any backend opens (and so
  possibly creates or converts) them; the SQL backend's provisioning refuses an Askar
  store on PostgreSQL too.
* A SQLite target file that does not exist is never created by a run that writes
  nothing (`--dry-run`, `--verify-only`).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from storage_core.errors import StorageError

#: An aries-askar store's tables (SQLite and PostgreSQL alike; the SQL backend's
#: provisioning refuses the same set, `webvh_storage_sqlalchemy.migrations`).
ASKAR_TABLES = frozenset({"config", "profiles", "items", "items_tags"})
#: Tables that only this project's SQL store has.
SQL_TABLES = frozenset({"alembic_version", "log_entries", "askar_archive"})
ASKAR_BACKEND = "askar"
_DEFAULT_PORT = {"postgres": 5432, "postgresql": 5432}
_LOCAL_HOSTS = {"localhost": "127.0.0.1", "": "127.0.0.1", "::1": "127.0.0.1"}


class UnsafeTargetError(StorageError):
    """The run would write into its own source or into another program's store."""


@dataclass(frozen=True, slots=True)
class Where:
    """Where a store lives: a SQLite file, or a database on a server."""

    file: Path | None = None
    server: tuple[str, int, str] | None = None  # host, port, database

    def __str__(self) -> str:
        if self.file is not None:
            return str(self.file)
        assert self.server is not None
        host, port, database = self.server
        return f"database {database!r} on {host}:{port}"


def locate(url: str, *, askar: bool) -> Where | None:
    """Where `url` points (an Askar URI or a SQLAlchemy URL); None for in-memory
    stores and for what cannot be told (another backend's URL)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None
    scheme = scheme.split("+", 1)[0].lower()
    if scheme == "sqlite":
        path = rest.partition("?")[0]
        if not askar:  # SQLAlchemy: sqlite:///relative, sqlite:////absolute
            path = path[1:] if path.startswith("/") else path
        if path in ("", ":memory:") or path.startswith("file::memory:"):
            return None
        return Where(file=Path(os.path.abspath(unquote(path))))
    if scheme in _DEFAULT_PORT:
        parts = urlsplit(url)
        host = parts.hostname or ""
        database = parts.path.lstrip("/").partition("?")[0]
        port = parts.port or _DEFAULT_PORT[scheme]
        return Where(server=(_LOCAL_HOSTS.get(host, host), port, unquote(database)))
    return None


def sqlite_tables(path: Path) -> set[str] | None:
    """Table names of an existing SQLite file, read-only (None: no such file or not a
    SQLite database)."""
    if not path.is_file():
        return None
    try:
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        finally:
            db.close()
    except sqlite3.DatabaseError:
        return None
    return {name for (name,) in rows}


def check_stores(askar_uri: str, backend: str, url: str) -> None:
    """Refuse (UnsafeTargetError) the same store on both sides, or a store holding the
    other layout; before anything is opened."""
    source = locate(askar_uri, askar=True)
    target = locate(url, askar=backend == ASKAR_BACKEND)
    if source is not None and source == target:
        raise UnsafeTargetError(
            f"--askar and --to are the same store ({source}); migrate into a different database"
        )
    if _holds(source, sql=True):
        raise UnsafeTargetError(f"--askar {source} holds a SQL store, not an Askar store")
    if _holds(target, sql=backend == ASKAR_BACKEND):
        what = "a SQL store" if backend == ASKAR_BACKEND else "an Askar store"
        raise UnsafeTargetError(f"--to {target} holds {what}; refusing to mix two stores")


def _holds(where: Where | None, *, sql: bool) -> bool:
    """True when `where` is a SQLite file holding a SQL store (`sql`) or an Askar store."""
    if where is None or where.file is None:
        return False
    tables = sqlite_tables(where.file)
    if tables is None:
        return False
    return bool(tables & SQL_TABLES) if sql else tables >= ASKAR_TABLES


def missing_file(backend: str, url: str | None) -> Path | None:
    """The target's SQLite file when it does not exist yet (else None)."""
    where = locate(url or "", askar=backend == ASKAR_BACKEND)
    if where is None or where.file is None or where.file.exists():
        return None
    return where.file
