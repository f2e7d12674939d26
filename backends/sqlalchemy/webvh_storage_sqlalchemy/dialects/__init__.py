"""The databases the SQL backend supports, one class each; `dialect_for` picks one."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url

from storage_core.config import DEFAULT_DATABASE_URL, Settings
from storage_core.errors import UnsupportedOperationError
from webvh_storage_sqlalchemy.dialects.base import Dialect, DriverConnection
from webvh_storage_sqlalchemy.dialects.postgresql import PostgreSQLDialect
from webvh_storage_sqlalchemy.dialects.sqlite import SQLiteDialect, SQLiteMemoryDialect, is_memory
from webvh_storage_sqlalchemy.options import SQL_OPTIONS

__all__ = ["Dialect", "DriverConnection", "database_url", "dialect_for"]

SUPPORTED = "sqlite:///<file>, sqlite:///:memory: and postgresql+psycopg2://"


def database_url(settings: Settings) -> URL:
    url = make_url(settings.url or DEFAULT_DATABASE_URL)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg2")
    return url


def dialect_for(settings: Settings) -> Dialect:
    """The dialect of the configured URL; UnsupportedOperationError for any other."""
    settings = SQL_OPTIONS.resolve(settings)  # a no-op on what the registry resolved
    url = database_url(settings)
    name = url.get_backend_name()
    cls: type[Dialect]
    if name == SQLiteDialect.name:
        cls = SQLiteMemoryDialect if is_memory(url) else SQLiteDialect
    elif name == PostgreSQLDialect.name:
        cls = PostgreSQLDialect
    else:
        raise UnsupportedOperationError(
            f"the sqlalchemy backend supports {SUPPORTED}, not {name!r} URLs"
        )
    if url.get_driver_name() != cls.driver:
        raise UnsupportedOperationError(
            f"the sqlalchemy backend uses the {cls.driver} driver for {name}, "
            f"not {url.get_driver_name()!r} (supported: {SUPPORTED})"
        )
    return cls(url, settings)
