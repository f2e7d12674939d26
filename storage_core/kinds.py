"""The nine kinds of record: key, fields, filters, and where each backend keeps them.

This table is the single description both backends, the validation and the
conformance suite read, so a kind is added or changed in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import Enum
from typing import Any, Generic, TypeVar, overload

from storage_core.errors import ValidationError
from storage_core.records import (
    AnyRecord,
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


class FieldType(Enum):
    KEY = "key"  # non-empty, indexed string; the record's identity
    INDEXED_STR = "indexed string"  # a string that is indexed (length-limited)
    STR = "string"
    OPT_STR = "string or None"
    BOOL = "bool"
    LIST = "JSON array"
    DICT = "JSON object"
    JSON = "JSON value"
    STR_DICT = "object of strings"

    @property
    def is_json(self) -> bool:
        """Stored as a JSON document (a JSON column in SQL, inside the value in Askar)."""
        return self in _JSON_FIELD_TYPES


_JSON_FIELD_TYPES = frozenset({FieldType.LIST, FieldType.DICT, FieldType.JSON, FieldType.STR_DICT})


R = TypeVar("R", bound=AnyRecord)  # the record type of one kind


@dataclass(frozen=True, slots=True)
class KindSpec(Generic[R]):
    """One kind of record; `KindSpec[LogEntry]` lets a type checker follow the record type
    through `get_record(spec, ...)` and the backends."""

    name: str
    record: type[R]
    key: str
    table: str
    category: str  # the Askar category this project's askar backend writes
    field_types: dict[str, FieldType]
    filterable: tuple[str, ...]  # indexed in SQL, tags in Askar
    timestamps: bool

    @property
    def data_fields(self) -> tuple[str, ...]:
        """Every caller-settable field, key first."""
        return tuple(self.field_types)

    @property
    def all_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self.record))

    def key_of(self, record: R) -> str:
        key: str = getattr(record, self.key)
        return key

    def __repr__(self) -> str:
        return f"KindSpec({self.name!r})"


def _spec(
    name: str,
    record: type[R],
    key: str,
    table: str,
    types: dict[str, FieldType],
    filterable: tuple[str, ...] = (),
    timestamps: bool = False,
) -> KindSpec[R]:
    return KindSpec(
        name=name,
        record=record,
        key=key,
        table=table,
        category=f"webvh:{name}",
        field_types=types,
        filterable=(key, *filterable),
        timestamps=timestamps,
    )


LOG_ENTRY: KindSpec[LogEntry] = _spec(
    "log_entry",
    LogEntry,
    "scid",
    "log_entries",
    {
        "scid": FieldType.KEY,
        "did": FieldType.INDEXED_STR,
        "domain": FieldType.INDEXED_STR,
        "namespace": FieldType.INDEXED_STR,
        "identifier": FieldType.INDEXED_STR,
        "logs": FieldType.LIST,
        "deactivated": FieldType.BOOL,
    },
    ("did", "domain", "namespace", "identifier", "deactivated"),
    timestamps=True,
)
RESOURCE: KindSpec[Resource] = _spec(
    "resource",
    Resource,
    "resource_id",
    "resources",
    {
        "resource_id": FieldType.KEY,
        "scid": FieldType.INDEXED_STR,
        "did": FieldType.INDEXED_STR,
        "resource_type": FieldType.INDEXED_STR,
        "resource_name": FieldType.STR,
        "content": FieldType.JSON,
        "metadata": FieldType.JSON,
        "proof": FieldType.JSON,
        "links": FieldType.JSON,
        "envelope": FieldType.DICT,
    },
    ("scid", "did", "resource_type"),
    timestamps=True,
)
WITNESS_FILE: KindSpec[WitnessFile] = _spec(
    "witness_file",
    WitnessFile,
    "scid",
    "witness_files",
    {"scid": FieldType.KEY, "witness_proofs": FieldType.LIST},
)
WHOIS: KindSpec[WhoisPresentation] = _spec(
    "whois",
    WhoisPresentation,
    "scid",
    "whois_presentations",
    {"scid": FieldType.KEY, "presentation": FieldType.DICT},
)
TASK: KindSpec[Task] = _spec(
    "task",
    Task,
    "task_id",
    "tasks",
    {
        "task_id": FieldType.KEY,
        "task_type": FieldType.INDEXED_STR,
        "status": FieldType.INDEXED_STR,
        "progress": FieldType.DICT,
        "message": FieldType.OPT_STR,
    },
    ("task_type", "status"),
    timestamps=True,
)
POLICY: KindSpec[Policy] = _spec(
    "policy",
    Policy,
    "policy_id",
    "policies",
    {
        "policy_id": FieldType.KEY,
        "version": FieldType.OPT_STR,
        "witness": FieldType.BOOL,
        "watcher": FieldType.OPT_STR,
        "portability": FieldType.BOOL,
        "prerotation": FieldType.BOOL,
        "endorsement": FieldType.BOOL,
        "policy_data": FieldType.DICT,
    },
)
REGISTRY: KindSpec[Registry] = _spec(
    "registry",
    Registry,
    "registry_id",
    "registries",
    {
        "registry_id": FieldType.KEY,
        "registry_type": FieldType.INDEXED_STR,
        "registry_data": FieldType.DICT,
        "meta": FieldType.DICT,
    },
    ("registry_type",),
)
TEST_LOG_ENTRY: KindSpec[TestLogEntry] = _spec(
    "test_log_entry",
    TestLogEntry,
    "scid",
    "test_log_entries",
    {"scid": FieldType.KEY, "logs": FieldType.LIST, "tags": FieldType.STR_DICT},
)
TEST_RESOURCE: KindSpec[TestResource] = _spec(
    "test_resource",
    TestResource,
    "resource_id",
    "test_resources",
    {
        "resource_id": FieldType.KEY,
        "scid": FieldType.INDEXED_STR,
        "content": FieldType.JSON,
        "tags": FieldType.STR_DICT,
    },
    ("scid",),
)

KINDS: dict[str, KindSpec[Any]] = {
    s.name: s
    for s in (
        LOG_ENTRY,
        RESOURCE,
        WITNESS_FILE,
        WHOIS,
        TASK,
        POLICY,
        REGISTRY,
        TEST_LOG_ENTRY,
        TEST_RESOURCE,
    )
}

SPEC_BY_RECORD: dict[type[Any], KindSpec[Any]] = {s.record: s for s in KINDS.values()}


@overload
def spec_for(kind: KindSpec[R]) -> KindSpec[R]: ...
@overload
def spec_for(kind: str) -> KindSpec[Any]: ...
def spec_for(kind: str | KindSpec[Any]) -> KindSpec[Any]:
    """Resolve a kind name (or a spec) to its spec, with a clear error for unknown names."""
    if isinstance(kind, KindSpec):
        return kind
    try:
        return KINDS[kind]
    except (KeyError, TypeError):
        raise ValidationError("kind", f"unknown kind {kind!r}; known: {', '.join(KINDS)}") from None
