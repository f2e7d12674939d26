"""The nine did:webvh kinds of record, declared with the public API (`declare.py`).

Backends, validation and the generic API read only specs (`storage_core.kindspec`), so
an application's own kinds are stored the same way; what still exists for these nine
only (the named methods, the ORM classes, our Alembic revisions) is listed in
docs/kinds.md. `KINDS` holds these nine; `registered_kinds()` every kind declared so far.
"""

from __future__ import annotations

from typing import Any

from storage_core.declare import declare_kind
from storage_core.kindspec import (
    INDEXABLE,
    KIND_REGISTRY,
    FieldType,
    KindSpec,
    R,
    Record,
    registered_kinds,
    spec_for,
)
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

__all__ = [
    "INDEXABLE",
    "KINDS",
    "KIND_REGISTRY",
    "LOG_ENTRY",
    "POLICY",
    "REGISTRY",
    "RESOURCE",
    "SPEC_BY_RECORD",
    "TASK",
    "TEST_LOG_ENTRY",
    "TEST_RESOURCE",
    "WHOIS",
    "WITNESS_FILE",
    "AnyRecord",
    "FieldType",
    "KindSpec",
    "R",
    "Record",
    "registered_kinds",
    "spec_for",
]


def _builtin(record: type[R], name: str, table: str, key: str, *indexed: str) -> KindSpec[R]:
    return declare_kind(
        record, name, key=key, indexed=indexed, table=table, category=f"webvh:{name}"
    )


LOG_ENTRY: KindSpec[LogEntry] = _builtin(
    LogEntry,
    "log_entry",
    "log_entries",
    "scid",
    "did",
    "domain",
    "namespace",
    "identifier",
    "deactivated",
)
RESOURCE: KindSpec[Resource] = _builtin(
    Resource, "resource", "resources", "resource_id", "scid", "did", "resource_type"
)
WITNESS_FILE: KindSpec[WitnessFile] = _builtin(WitnessFile, "witness_file", "witness_files", "scid")
WHOIS: KindSpec[WhoisPresentation] = _builtin(
    WhoisPresentation, "whois", "whois_presentations", "scid"
)
TASK: KindSpec[Task] = _builtin(Task, "task", "tasks", "task_id", "task_type", "status")
POLICY: KindSpec[Policy] = _builtin(Policy, "policy", "policies", "policy_id")
REGISTRY: KindSpec[Registry] = _builtin(
    Registry, "registry", "registries", "registry_id", "registry_type"
)
TEST_LOG_ENTRY: KindSpec[TestLogEntry] = _builtin(
    TestLogEntry, "test_log_entry", "test_log_entries", "scid"
)
TEST_RESOURCE: KindSpec[TestResource] = _builtin(
    TestResource, "test_resource", "test_resources", "resource_id", "scid"
)

#: The nine did:webvh kinds (the ones this project's Alembic revisions manage).
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

#: Every declared kind by record type (the live registry: application kinds too).
SPEC_BY_RECORD: dict[type[Any], KindSpec[Any]] = KIND_REGISTRY.by_record
