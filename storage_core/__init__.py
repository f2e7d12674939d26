"""webvh-storage: one storage interface for did:webvh servers, many backends."""

from storage_core.async_manager import AsyncStorageManager, open_async_storage
from storage_core.config import Settings
from storage_core.declare import JSON, Text, declare_kind, kind_spec, record_kind
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
    AsyncArchiveStore,
    AsyncStorageBackend,
    Capability,
    StorageBackend,
)
from storage_core.kinds import KINDS, KindSpec, registered_kinds
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
    "JSON",
    "KINDS",
    "ArchiveStore",
    "ArchivedEntry",
    "AsyncArchiveStore",
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
    "Text",
    "UnknownBackendError",
    "UnsupportedOperationError",
    "ValidationError",
    "WhoisPresentation",
    "WitnessFile",
    "declare_kind",
    "kind_spec",
    "open_async_storage",
    "open_storage",
    "record_kind",
    "registered_kinds",
]
