"""webvh-storage: one storage interface for did:webvh servers, many backends."""

from storage_core.async_manager import AsyncStorageManager, open_async_storage
from storage_core.config import Settings
from storage_core.errors import (
    BackendUnavailableError,
    ConflictError,
    DuplicateRecordError,
    StorageError,
    UnknownBackendError,
    UnsupportedOperationError,
    ValidationError,
)
from storage_core.interface import (
    ArchivedEntry,
    ArchiveStore,
    AsyncStorageBackend,
    Capability,
    StorageBackend,
)
from storage_core.kinds import KINDS, KindSpec
from storage_core.manager import StorageManager, open_storage
from storage_core.records import (
    LogEntry,
    Policy,
    Registry,
    Resource,
    Task,
    TestLogEntry,
    TestResource,
    WhoisPresentation,
    WitnessFile,
)

__all__ = [
    "KINDS",
    "ArchiveStore",
    "ArchivedEntry",
    "AsyncStorageBackend",
    "AsyncStorageManager",
    "BackendUnavailableError",
    "Capability",
    "ConflictError",
    "DuplicateRecordError",
    "KindSpec",
    "LogEntry",
    "Policy",
    "Registry",
    "Resource",
    "Settings",
    "StorageBackend",
    "StorageError",
    "StorageManager",
    "Task",
    "TestLogEntry",
    "TestResource",
    "UnknownBackendError",
    "UnsupportedOperationError",
    "ValidationError",
    "WhoisPresentation",
    "WitnessFile",
    "open_async_storage",
    "open_storage",
]
