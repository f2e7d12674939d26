"""Turn SQLAlchemy/DBAPI exceptions into `storage_core.errors`, with secrets masked.

Messages are built from the driver's own text (never SQLAlchemy's, which appends the
SQL and its parameters, i.e. caller data) and passed through mask_text, so a URL
password can never appear in an error.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import exc as sa_exc

from storage_core.config import mask_text
from storage_core.errors import (
    BackendUnavailableError,
    DuplicateRecordError,
    StorageError,
    StorageIOError,
)
from storage_core.kinds import spec_for
from webvh_storage_sqlalchemy.models import unique_violation

# Lower-case fragments of driver messages, by what they mean for the caller.
_UNAVAILABLE = (
    "could not connect",
    "connection refused",
    "connection to server",
    "server closed the connection",
    "terminating connection",
    "connection already closed",
    "connection has been closed",
    "ssl connection has been closed",
    "timeout expired",
    "timed out",
    "could not translate host name",
    "no route to host",
    "the database system is starting up",
    "the database system is shutting down",
    "database is locked",
    "unable to open database file",
    "too many connections",
    # asyncpg (the async face)
    "connect call failed",
    "connection was closed",
    "connection is closed",
)
_IO = (
    "readonly database",
    "read-only",
    "disk i/o error",
    "database or disk is full",
    "no space left on device",
    "could not extend file",
    "file is not a database",
    "database disk image is malformed",
)
_INTEGRITY = frozenset({"IntegrityError", "IntegrityConstraintViolationError"})
_UNIQUE = ("unique constraint", "duplicate key", "primary key must be unique")


def driver_message(exc: BaseException) -> str:
    """The driver's message without SQLAlchemy's SQL/parameter suffix."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def translate(
    exc: BaseException,
    secrets: Sequence[str | None] = (),
    *,
    kind: str | None = None,
    key: str | None = None,
    action: str = "database operation",
) -> StorageError:
    """The StorageError to raise instead of `exc` (raise it `from None`)."""
    if isinstance(exc, StorageError):
        return exc
    message = mask_text(driver_message(exc), list(secrets))
    lowered = message.lower()
    # SQLAlchemy's IntegrityError, or the driver's own from a fast path (connections.py)
    # (psycopg2 raises subclasses such as UniqueViolation)
    # (asyncpg's on the async face: IntegrityConstraintViolationError subclasses)
    integrity = any(cls.__name__ in _INTEGRITY for cls in type(exc).__mro__)
    if integrity and kind and any(f in lowered for f in _UNIQUE):
        fields = unique_violation(spec_for(kind), message)
        if fields is not None:
            return DuplicateRecordError(kind, key or "", fields)
        if key is not None:
            return DuplicateRecordError(kind, key)
    if isinstance(exc, sa_exc.TimeoutError):
        return BackendUnavailableError(f"{action}: no pooled connection available: {message}")
    if any(fragment in lowered for fragment in _IO):
        return StorageIOError(f"{action}: the store refused the write: {message}")
    invalidated = getattr(exc, "connection_invalidated", False)
    if (
        invalidated
        or isinstance(exc, sa_exc.InterfaceError | sa_exc.DisconnectionError)
        or any(fragment in lowered for fragment in _UNAVAILABLE)
    ):
        return BackendUnavailableError(f"{action}: database unavailable: {message}")
    return StorageError(f"{action} failed: {type(exc).__name__}: {message}")
