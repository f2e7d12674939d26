"""The nine kinds of record: key, fields, filters, and where each backend keeps them.

This table is the single description both backends, the validation and the
conformance suite read, so a kind is added or changed in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import Enum
from typing import Generic, TypeVar

from storage_core import records as r


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


R = TypeVar("R")


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


F = FieldType


def _spec(name, record, key, table, types, filterable=(), timestamps=False) -> KindSpec:
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


LOG_ENTRY = _spec(
    "log_entry",
    r.LogEntry,
    "scid",
    "log_entries",
    {
        "scid": F.KEY,
        "did": F.INDEXED_STR,
        "domain": F.INDEXED_STR,
        "namespace": F.INDEXED_STR,
        "identifier": F.INDEXED_STR,
        "logs": F.LIST,
        "deactivated": F.BOOL,
    },
    ("did", "domain", "namespace", "identifier", "deactivated"),
    timestamps=True,
)
RESOURCE = _spec(
    "resource",
    r.Resource,
    "resource_id",
    "resources",
    {
        "resource_id": F.KEY,
        "scid": F.INDEXED_STR,
        "did": F.INDEXED_STR,
        "resource_type": F.INDEXED_STR,
        "resource_name": F.STR,
        "content": F.JSON,
        "metadata": F.JSON,
        "proof": F.JSON,
    },
    ("scid", "did", "resource_type"),
    timestamps=True,
)
WITNESS_FILE = _spec(
    "witness_file",
    r.WitnessFile,
    "scid",
    "witness_files",
    {"scid": F.KEY, "witness_proofs": F.LIST},
)
WHOIS = _spec(
    "whois",
    r.WhoisPresentation,
    "scid",
    "whois_presentations",
    {"scid": F.KEY, "presentation": F.DICT},
)
TASK = _spec(
    "task",
    r.Task,
    "task_id",
    "tasks",
    {
        "task_id": F.KEY,
        "task_type": F.INDEXED_STR,
        "status": F.INDEXED_STR,
        "progress": F.DICT,
        "message": F.OPT_STR,
    },
    ("task_type", "status"),
    timestamps=True,
)
POLICY = _spec(
    "policy",
    r.Policy,
    "policy_id",
    "policies",
    {
        "policy_id": F.KEY,
        "version": F.OPT_STR,
        "witness": F.BOOL,
        "watcher": F.OPT_STR,
        "portability": F.BOOL,
        "prerotation": F.BOOL,
        "endorsement": F.BOOL,
        "policy_data": F.DICT,
    },
)
REGISTRY = _spec(
    "registry",
    r.Registry,
    "registry_id",
    "registries",
    {
        "registry_id": F.KEY,
        "registry_type": F.INDEXED_STR,
        "registry_data": F.DICT,
        "meta": F.DICT,
    },
    ("registry_type",),
)
TEST_LOG_ENTRY = _spec(
    "test_log_entry",
    r.TestLogEntry,
    "scid",
    "test_log_entries",
    {"scid": F.KEY, "logs": F.LIST, "tags": F.STR_DICT},
)
TEST_RESOURCE = _spec(
    "test_resource",
    r.TestResource,
    "resource_id",
    "test_resources",
    {"resource_id": F.KEY, "scid": F.INDEXED_STR, "content": F.JSON, "tags": F.STR_DICT},
    ("scid",),
)

KINDS: dict[str, KindSpec] = {
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

SPEC_BY_RECORD: dict[type, KindSpec] = {s.record: s for s in KINDS.values()}


def spec_for(kind: str | KindSpec) -> KindSpec:
    """Resolve a kind name (or a spec) to its spec, with a clear error for unknown names."""
    if isinstance(kind, KindSpec):
        return kind
    try:
        return KINDS[kind]
    except (KeyError, TypeError):
        from storage_core.errors import ValidationError

        raise ValidationError("kind", f"unknown kind {kind!r}; known: {', '.join(KINDS)}") from None
