"""Backend-neutral, immutable record types of the nine did:webvh kinds: what every
backend returns for them (storage_core/kinds.py declares them; an application declares
its own with `storage_core.record_kind`).

No ORM object or Askar entry ever leaves a backend; callers see only these.
`record_version` is the optimistic-concurrency counter (1 on create, +1 per write);
it is not called `version` because `Policy.version` is the policy's own version string.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, TypeAlias

from storage_core.declare import Text


@dataclass(frozen=True, slots=True, kw_only=True)
class LogEntry:
    scid: str
    did: str
    domain: str
    namespace: str
    identifier: str
    logs: list[Any]
    deactivated: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None
    record_version: int = 1


#: Members of an attested resource held by a `Resource` field of their own.
RESOURCE_MEMBER_FIELDS = ("content", "metadata", "proof", "links")


@dataclass(frozen=True, slots=True, kw_only=True)
class Resource:
    """An attested resource. `resource_id` is its digest (`metadata.resourceId`, the last
    path segment of the document's `id`), the id a server's route looks it up by.

    `links` is the document's `links` member (e.g. AnonCreds revocation registry links).
    `envelope` is every top-level member of the document in document order, so the
    served document is rebuilt from the record alone (`document()`), key order
    included: members with a field of their own (`RESOURCE_MEMBER_FIELDS`) appear there
    as null placeholders, the others (`@context`, `type`, `id`, ...) with their value.
    An empty envelope (a record not made from a document) rebuilds the usual shape.
    """

    resource_id: str
    scid: str
    did: str
    resource_type: str
    resource_name: Text
    content: Any
    metadata: Any = None
    proof: Any = None
    links: Any = None
    envelope: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    record_version: int = 1

    def document(self) -> dict[str, Any]:
        """The attested resource as served: the envelope's members in order, each
        placeholder filled from its field."""
        if not self.envelope:
            shape = {"content": None, "metadata": None, "proof": None}
            if self.links is not None:
                shape["links"] = None
            return {k: getattr(self, k) for k in shape}
        return {
            key: getattr(self, key) if key in RESOURCE_MEMBER_FIELDS else value
            for key, value in self.envelope.items()
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class WitnessFile:
    scid: str
    witness_proofs: list[Any]
    record_version: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class WhoisPresentation:
    scid: str
    presentation: dict[str, Any]
    record_version: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Task:
    task_id: str
    task_type: str
    status: str
    progress: dict[str, Any] = field(default_factory=dict)
    message: Text | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    record_version: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    policy_id: str
    version: Text | None = None
    witness: bool = False
    watcher: Text | None = None
    portability: bool = False
    prerotation: bool = False
    endorsement: bool = False
    policy_data: dict[str, Any] = field(default_factory=dict)
    record_version: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Registry:
    registry_id: str
    registry_type: str
    registry_data: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    record_version: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class TestLogEntry:
    __test__: ClassVar[bool] = False  # a record, not a pytest test class
    scid: str
    logs: list[Any]
    tags: dict[str, str] = field(default_factory=dict)
    record_version: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class TestResource:
    __test__: ClassVar[bool] = False  # a record, not a pytest test class
    resource_id: str
    scid: str
    content: Any
    tags: dict[str, str] = field(default_factory=dict)
    record_version: int = 1


AnyRecord: TypeAlias = (
    LogEntry
    | Resource
    | WitnessFile
    | WhoisPresentation
    | Task
    | Policy
    | Registry
    | TestLogEntry
    | TestResource
)
"""A record of any of the nine kinds: what a call naming its kind by string returns
(pass the kind's `KindSpec` instead, e.g. `kinds.LOG_ENTRY`, to get the precise type)."""
