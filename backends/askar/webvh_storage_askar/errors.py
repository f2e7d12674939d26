"""Map aries-askar errors onto the storage_core hierarchy, with secrets masked.

Callers handle the expected codes themselves (DUPLICATE on create, NOT_FOUND on
replace/remove); everything else goes through `translate`, so no raw AskarError leaves
the backend. The codes mirror `aries_askar.AskarErrorCode` by value: this module must
not import aries_askar (only backend.py does, so a missing package fails in one place).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum

from storage_core.config import mask_text
from storage_core.errors import (
    BackendUnavailableError,
    DuplicateRecordError,
    StorageError,
    StorageIOError,
)

WRONG_KEY_MESSAGE = "wrong Askar key or key method"


class Code(IntEnum):
    """aries_askar.AskarErrorCode values (stable across 0.3 - 0.5)."""

    SUCCESS = 0
    BACKEND = 1
    BUSY = 2
    DUPLICATE = 3
    ENCRYPTION = 4
    INPUT = 5
    NOT_FOUND = 6
    UNEXPECTED = 7
    UNSUPPORTED = 8
    WRAPPER = 99


def code_of(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None)
    try:
        return int(code) if code is not None else None
    except (TypeError, ValueError):
        return None


def is_code(exc: BaseException, code: Code) -> bool:
    return code_of(exc) == code


def is_lost(exc: BaseException) -> bool:
    """An AskarError whose cause was lost: under concurrent failures the Python wrapper
    can read the native error state after another thread consumed it, and reports code
    SUCCESS with no message. The operation did fail and had no effect, so it is safe to
    run it again to learn the real outcome (e.g. DUPLICATE)."""
    return code_of(exc) == Code.SUCCESS


_STALE_CONNECTION = (
    "error communicating with database",
    "error pinging session",
    # PostgreSQL's notice to a connection it ended while idle (pg_terminate_backend, a
    # restart or failover), read by the next statement sent on it: SQLSTATE 57P01/57P02
    "terminating connection due to administrator command",
    "terminating connection due to crash of another server process",
    "server closed the connection unexpectedly",
)
#: SQLite saying the storage refused the write: the store is reachable, so StorageIOError.
_STORAGE_REFUSED = (
    "database or disk is full",
    "readonly database",
    "read-only",
    "disk i/o error",
    "malformed",
    "not a database",
)


def is_stale_connection(exc: BaseException) -> bool:
    """A pooled connection that died while idle (server restart, failover, reset).
    The statement never reached the server, so running it again on a fresh connection
    is safe; a failed commit is excluded, as its outcome is unknown."""
    if code_of(exc) != Code.BACKEND:
        return False
    text = str(exc).lower()
    return any(sign in text for sign in _STALE_CONNECTION) and "commit" not in text


def translate(
    exc: BaseException,
    secrets: Sequence[str],
    *,
    action: str,
    store: str,
    kind: str | None = None,
    key: str | None = None,
) -> StorageError:
    """The StorageError to raise for an AskarError raised while doing `action`."""
    code = code_of(exc)
    if code == Code.DUPLICATE and kind is not None and key is not None:
        return DuplicateRecordError(kind, key)
    if code == Code.ENCRYPTION or _is_key_method_mismatch(exc):
        return StorageIOError(f"{action} on Askar store {store} failed: {WRONG_KEY_MESSAGE}")
    if is_lost(exc):
        # Re-runs did not recover it (backend._call): the call had no effect and Askar
        # dropped the reason; seen when connections fail under load, so: retry later.
        return BackendUnavailableError(
            f"{action} on Askar store {store} failed without a reason from aries-askar "
            "(nothing was written); the store may be unreachable, retry later"
        )
    detail = mask_text(_one_line(exc), [*secrets])
    message = f"{action} on Askar store {store} failed: {detail}"
    if any(sign in detail.lower() for sign in _STORAGE_REFUSED):
        return StorageIOError(message)
    if code in (Code.BACKEND, Code.BUSY):
        return BackendUnavailableError(message)
    if code == Code.NOT_FOUND:
        return BackendUnavailableError(message)
    if code in (Code.INPUT, Code.UNSUPPORTED):
        return StorageIOError(message)
    return StorageError(message)


def _is_key_method_mismatch(exc: BaseException) -> bool:
    return code_of(exc) == Code.INPUT and "key method mismatch" in str(exc).lower()


def _one_line(exc: BaseException) -> str:
    """Askar messages read 'what failed\nCaused by: why'; keep both on one line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return f"{lines[0]} ({lines[-1]})" if len(lines) > 1 else lines[0]
