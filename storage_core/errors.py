"""The one error hierarchy callers catch; no raw driver exception crosses the API."""

from __future__ import annotations


class StorageError(Exception):
    """Base of every error this library raises."""


class ValidationError(StorageError, ValueError):
    """A value a caller passed is unacceptable; nothing was written."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class DuplicateRecordError(StorageError):
    """A create named a key that already exists, or (`fields` set) a write would give two
    records of a kind the same values of one of its `unique=` field tuples."""

    def __init__(self, kind: str, key: str, fields: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.key = key
        self.fields = fields
        if fields:
            super().__init__(f"{kind}: another record has the same ({', '.join(fields)})")
        else:
            super().__init__(f"{kind} {key!r} already exists")


class ConflictError(StorageError):
    """An `expected_version` no longer matches: someone else wrote first."""

    def __init__(self, kind: str, key: str, expected: int, actual: int | None) -> None:
        self.kind = kind
        self.key = key
        self.expected = expected
        self.actual = actual
        found = "no record" if actual is None else f"version {actual}"
        super().__init__(f"{kind} {key!r}: expected version {expected}, found {found}")


class BackendUnavailableError(StorageError):
    """The store cannot be reached (connection refused, lost, timed out, file missing)."""


class StorageIOError(StorageError):
    """The store is reachable but refused the write: read-only, disk full, corrupt, bad key."""


class UnsupportedOperationError(StorageError):
    """The selected backend lacks a capability the call needs (e.g. SQL sessions)."""


class PluginError(StorageError):
    """Something is wrong with how backends are registered or loaded."""


class UnknownBackendError(PluginError):
    """Config names a backend that no loaded plugin registers."""


class DuplicateBackendError(PluginError):
    """Two plugins register the same backend name."""


class PluginLoadError(PluginError):
    """A plugin's module failed to import."""


class InvalidBackendError(PluginError):
    """A plugin's factory returned something that is not a StorageBackend."""


class MissingDependencyError(PluginError):
    """The backend exists but its optional dependencies are not installed."""
