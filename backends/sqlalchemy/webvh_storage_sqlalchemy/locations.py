"""Where the configured database is and what is wrong with it, said before opening it.

Opening a SQLite store creates its file, so read-only tools (`storage-core info`, `db
current`) ask `absent_database` first. Errors while opening name the setting the URL came
from and, for a missing driver, the extra to install.
"""

from __future__ import annotations

import os

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from storage_core.config import POSTGRES_VARIABLES, Settings, database_url_from_env
from storage_core.errors import MissingDependencyError, StorageError, ValidationError
from storage_core.install_hints import missing_module_hint
from webvh_storage_sqlalchemy.dialects import SUPPORTED, database_url
from webvh_storage_sqlalchemy.dialects.sqlite import is_memory
from webvh_storage_sqlalchemy.options import SQL_OPTIONS


def url_setting(settings: Settings) -> str:
    """The name of the setting the database URL came from, for error messages (resolved
    settings hold the URL itself, wherever it came from)."""
    env = settings.env
    if settings.url and settings.url == env.get("DATABASE_URL"):
        return "DATABASE_URL"
    if not settings.url or (
        not env.get("DATABASE_URL")
        and any(env.get(name) for name in POSTGRES_VARIABLES)
        and settings.url == database_url_from_env(env)
    ):
        return "POSTGRES_*"
    return "url"


def opening_error(exc: Exception, settings: Settings) -> StorageError | None:
    """The error to report for `exc` raised while opening the database, when it is an
    operator's configuration problem (bad URL, missing driver); else None."""
    if isinstance(exc, ArgumentError):
        expected = f"is not a database URL (expected one of: {SUPPORTED})"
        return ValidationError(url_setting(settings), expected)
    if isinstance(exc, ModuleNotFoundError):
        hint = missing_module_hint(exc.name)
        if hint is not None:
            return MissingDependencyError(f"{url_setting(settings)} needs a driver: {hint}")
    return None


def absent_database(settings: Settings) -> str | None:
    """The SQLite file the settings name when it does not exist; None when it exists or
    the database is not a file (PostgreSQL, in memory)."""
    try:
        url = database_url(SQL_OPTIONS.resolve(settings))  # a no-op on resolved settings
    except ArgumentError:
        return None  # opening reports it, naming the setting
    if make_url(url).get_backend_name() != "sqlite" or is_memory(url):
        return None
    path = url.database or ""
    if path.startswith("file:") or os.path.exists(path):
        return None
    return path
