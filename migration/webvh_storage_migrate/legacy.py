"""The layouts an Askar source can hold, and the converters of the legacy one.

A did:webvh server's store (releases up to 0.3.5) holds the legacy layout: categories
such as `logEntries` or `whois`, values written with `json.dumps`. This project's Askar
backend writes `webvh:<kind>` categories, records as stored. Here: which categories a
store holds, which layout that is and what becomes of each category (docs/migration.md),
then one function per legacy category turning an entry's parsed JSON value into a
record. Every field comes from the value, never from tags (older releases wrote none;
newer ones wrote "True"/"False" strings). Values that cannot be converted raise
`Rejected`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from storage_core.kinds import (
    KINDS,
    LOG_ENTRY,
    POLICY,
    REGISTRY,
    RESOURCE,
    TASK,
    WHOIS,
    WITNESS_FILE,
    KindSpec,
)
from storage_core.records import (
    RESOURCE_MEMBER_FIELDS,
    LogEntry,
    Policy,
    Registry,
    Resource,
    Task,
    WhoisPresentation,
    WitnessFile,
)


class Rejected(Exception):
    """Raised by a converter: the entry cannot be converted, for `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- categories and plans -----------------------------------------------------------------
CONVERTED = ("logEntries", "witnessFile", "whois", "resource", "policy", "registry", "task")
SKIPPED = {
    "didRecord": "derived explorer cache, rebuilt from logEntries/witnessFile/whois",
    "resourceRecord": "derived explorer cache, rebuilt from resource",
}
KNOWN_ARCHIVED = (
    "tailsFile",
    "didDocument",
    "registrationKey",
    "authorizedKey",
    "didLogs",
    "didRegistration",
    "updateKey",
)
#: This project's layout: a category per kind.
NATIVE: dict[str, KindSpec[Any]] = {spec.category: spec for spec in KINDS.values()}
KNOWN = (*CONVERTED, *SKIPPED, *KNOWN_ARCHIVED, *NATIVE)


class Action(Enum):
    CONVERT = "convert"  # legacy category -> records
    NATIVE = "native"  # this project's layout: records as stored
    ARCHIVE = "archive"  # kept verbatim in the target's archive
    SKIP = "skip"  # derived cache: counted, not copied


@dataclass(frozen=True, slots=True)
class CategoryPlan:
    category: str
    action: Action
    total: int
    reason: str = ""

    @property
    def spec(self) -> KindSpec[Any] | None:
        return NATIVE.get(self.category)


def action_for(category: str) -> tuple[Action, str]:
    if category in CONVERTED:
        return Action.CONVERT, ""
    if category in NATIVE:
        return Action.NATIVE, ""
    if category in SKIPPED:
        return Action.SKIP, SKIPPED[category]
    if category in KNOWN_ARCHIVED:
        return Action.ARCHIVE, "category of the legacy layout with no record kind"
    return Action.ARCHIVE, "unknown category"


def _order(category: str) -> tuple[int, int, str]:
    """This project's layout first (newer: it wins when a legacy entry converts to the
    same key), then the legacy categories with logEntries first (the client_id index is
    built from it), then archives and skipped caches."""
    if category in NATIVE:
        return (0, 0, category)
    if category in CONVERTED:
        return (1, CONVERTED.index(category), category)
    if category in SKIPPED:
        return (3, 0, category)
    return (2, 0, category)


def plan_categories(
    counts: dict[str, int], only: tuple[str, ...] | None = None
) -> list[CategoryPlan]:
    """A plan per category present (count > 0), in processing order."""
    chosen = counts if only is None else {c: counts.get(c, 0) for c in only}
    plans = []
    for category in sorted(chosen, key=_order):
        if chosen[category] <= 0 and only is None:
            continue
        action, reason = action_for(category)
        plans.append(CategoryPlan(category, action, chosen[category], reason))
    return plans


def detect_layout(counts: dict[str, int]) -> str:
    """ "legacy", "webvh" (this project's), "mixed", or "empty"."""
    present = [c for c, n in counts.items() if n > 0]
    native = any(c in NATIVE for c in present)
    legacy = any(c not in NATIVE for c in present)
    if native and legacy:
        return "mixed"
    return "webvh" if native else "legacy" if legacy else "empty"


# --- DIDs and timestamps as the legacy server wrote them ---------------------------------
_DID_PREFIX = "did:webvh:"
_HUMAN_FORMATS = ("%B %d, %Y", "%B %d, %Y %H:%M:%S")


@dataclass(frozen=True, slots=True)
class ServerDid:
    """A server DID `did:webvh:{SCID}:{host}:{namespace}:{identifier}`, split. The
    store's tags may be missing or stale, so every DID field of a migrated log entry
    comes from the DID itself."""

    did: str
    scid: str
    domain: str  # the host, with a `%3A`-encoded port decoded to ":"
    namespace: str
    identifier: str


def parse_server_did(did: object) -> ServerDid:
    """Parse a did:webvh DID with exactly two path segments, or raise Rejected."""
    if not isinstance(did, str) or not did.startswith(_DID_PREFIX):
        raise Rejected(f"not a did:webvh DID: {did!r:.120}")
    parts = did[len(_DID_PREFIX) :].split(":")
    if len(parts) != 4 or not all(parts):
        raise Rejected(
            f"DID {did!r:.160} does not parse as a server DID "
            "did:webvh:{SCID}:{domain}:{namespace}:{identifier}"
        )
    scid, host, namespace, identifier = parts
    return ServerDid(did, scid, host.replace("%3A", ":").replace("%3a", ":"), namespace, identifier)


def parse_legacy_time(field: str, value: object) -> datetime:
    """ISO-8601 (with Z), "October 08, 2025", or epoch seconds, as an aware UTC datetime;
    anything else rejects."""
    if isinstance(value, bool):
        raise Rejected(f"{field} is not a timestamp: {value!r}")
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        parsed: datetime | None
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            parsed = _parse_human(value.strip())
        if parsed is not None:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise Rejected(f"{field} is not a timestamp: {value!r:.80}")


def _parse_human(text: str) -> datetime | None:
    for fmt in _HUMAN_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


# --- the converters -----------------------------------------------------------------------
#: Keys of legacy values that map to fields; anything else is kept in the archive too.
_REGISTRY_KEYS = frozenset({"registry", "meta"})
_TASK_KEYS = frozenset({"id", "type", "created", "updated", "status", "message", "progress"})
_JSON_NAMES: dict[type, str] = {dict: "object", list: "array", str: "string"}


def _need(value: Any, kind: type, what: str) -> Any:
    if not isinstance(value, kind):
        raise Rejected(f"{what} must be a JSON {_JSON_NAMES[kind]}, got {type(value).__name__}")
    return value


def log_entry_from_log(name: str, value: Any) -> LogEntry:
    """A LogEntry whose every field is derived from the did:webvh log itself."""
    lines = _need(value, list, "logEntries value")
    if not lines:
        raise Rejected("logEntries value is an empty log")
    for number, line in enumerate(lines, 1):
        _need(line, dict, f"log line {number}")
    first_params = lines[0].get("parameters")
    scid = first_params.get("scid") if isinstance(first_params, dict) else None
    if not isinstance(scid, str) or not scid:
        raise Rejected("log has no scid: parameters.scid of the first line is missing")
    state = lines[-1].get("state")
    did = parse_server_did(state.get("id") if isinstance(state, dict) else None)
    if did.scid != scid:
        raise Rejected(f"DID {did.did!r} does not carry the log's scid {scid!r}")
    entry = LogEntry(
        scid=scid,
        did=did.did,
        domain=did.domain,
        namespace=did.namespace,
        identifier=did.identifier,
        logs=lines,
        deactivated=_deactivated(lines),
        created_at=parse_legacy_time("versionTime of the first line", lines[0].get("versionTime")),
        updated_at=parse_legacy_time("versionTime of the last line", lines[-1].get("versionTime")),
    )
    location = f"{did.namespace}:{did.identifier}"
    if name != location:
        raise Rejected(
            f"re-homed log: stored under {name!r:.200} but its DID {did.did!r:.300} "
            f"is at {location!r:.200}"
        )
    return entry


def _deactivated(lines: list[dict[str, Any]]) -> bool:
    """`parameters.deactivated` of the last line that sets it (default false)."""
    for line in reversed(lines):
        params = line.get("parameters")
        if isinstance(params, dict) and "deactivated" in params:
            flag = params["deactivated"]
            if not isinstance(flag, bool):
                raise Rejected(f"parameters.deactivated must be a bool, got {flag!r:.40}")
            return flag
    return False


def witness_file(scid: str, value: Any) -> WitnessFile:
    """The witness file array verbatim: legacy order (newest first) is kept as stored."""
    return WitnessFile(scid=scid, witness_proofs=_need(value, list, "witnessFile value"))


def whois(scid: str, value: Any) -> WhoisPresentation:
    return WhoisPresentation(scid=scid, presentation=_need(value, dict, "whois value"))


def resource_id_of(document_id: str) -> str:
    """The digest a resource is served by: the last path segment of its `id`, without a
    file extension (`.../resources/zQm...` or `.../resources/zQm....json`)."""
    last = document_id.rstrip("/").rsplit("/", 1)[-1]
    return last.split(".", 1)[0]


def resource(name: str, value: Any) -> Resource:
    """resource_id = `metadata.resourceId` (the digest in the route, what the original
    SQL server keys by); the whole document is kept (`links`, `envelope`)."""
    value = _need(value, dict, "resource value")
    document_id = value.get("id")
    if not isinstance(document_id, str) or not document_id:
        raise Rejected("resource value has no id")
    did = parse_server_did(document_id.split("/", 1)[0])
    metadata = _need(value.get("metadata"), dict, "resource metadata")
    resource_id = metadata.get("resourceId")
    if not isinstance(resource_id, str) or not resource_id:
        raise Rejected("resource metadata has no resourceId")
    if resource_id != resource_id_of(document_id):
        raise Rejected(
            f"metadata.resourceId {resource_id!r:.80} disagrees with the last segment of "
            f"the resource id {document_id!r:.200}"
        )
    resource_type = metadata.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        raise Rejected("resource metadata has no resourceType")
    if "content" not in value:
        raise Rejected("resource value has no content")
    resource_name = metadata.get("resourceName")
    proof = value.get("proof")
    created = _proof_created(proof)
    return Resource(
        resource_id=resource_id,
        scid=did.scid,
        did=did.did,
        resource_type=resource_type,
        resource_name=resource_name if isinstance(resource_name, str) else "",
        content=value["content"],
        metadata=metadata,
        proof=proof,
        links=value.get("links"),
        envelope={k: None if k in RESOURCE_MEMBER_FIELDS else v for k, v in value.items()},
        created_at=created,
        updated_at=created,
    )


def _proof_created(proof: Any) -> Any:
    """The proof's `created`, the only timestamp an attested resource carries (or None)."""
    first = proof[0] if isinstance(proof, list) and proof else proof
    created = first.get("created") if isinstance(first, dict) else None
    if created is None:
        return None
    try:
        return parse_legacy_time("proof.created", created)
    except Rejected:
        return None


def policy(name: str, value: Any) -> Policy:
    value = _need(value, dict, "policy value")
    known = {f: value[f] for f in POLICY.field_types if f in value and f != "policy_data"}
    known.pop("policy_id", None)
    for flag in ("witness", "portability", "prerotation", "endorsement"):
        if known.get(flag) is None:
            known.pop(flag, None)
    return Policy(policy_id=name, policy_data=value, **known)


def registry(name: str, value: Any) -> Registry:
    value = _need(value, dict, "registry value")
    data = _need(value.get("registry"), dict, "registry.registry")
    meta = value.get("meta")
    return Registry(
        registry_id=name,
        registry_type=name,
        registry_data=data,
        meta={} if meta is None else _need(meta, dict, "registry.meta"),
    )


def task(name: str, value: Any) -> Task:
    """Status is kept verbatim (including the legacy spelling "abandonned")."""
    value = _need(value, dict, "task value")
    task_type, status = value.get("type"), value.get("status")
    if not isinstance(task_type, str) or not isinstance(status, str):
        raise Rejected("task value needs string type and status")
    progress = value.get("progress")
    message = value.get("message")
    if message is not None and not isinstance(message, str):
        raise Rejected(f"task message must be a string, got {type(message).__name__}")
    created = value.get("created")
    updated = value.get("updated", created)
    return Task(
        task_id=name,
        task_type=task_type,
        status=status,
        progress={} if progress is None else _need(progress, dict, "task progress"),
        message=message,
        created_at=None if created is None else parse_legacy_time("task created", created),
        updated_at=None if updated is None else parse_legacy_time("task updated", updated),
    )


def is_lossy(category: str, value: Any) -> bool:
    """True when the record cannot rebuild the legacy value: keep a verbatim copy too."""
    if category == "registry":
        return isinstance(value, dict) and not set(value) <= _REGISTRY_KEYS
    if category == "task":
        return isinstance(value, dict) and not set(value) <= _TASK_KEYS
    return False


#: Categories converted by entry name (no lookup needed).
BY_NAME: dict[str, tuple[KindSpec[Any], Callable[[str, Any], Any]]] = {
    "logEntries": (LOG_ENTRY, log_entry_from_log),
    "resource": (RESOURCE, resource),
    "policy": (POLICY, policy),
    "registry": (REGISTRY, registry),
    "task": (TASK, task),
}
#: Categories keyed by client_id whose record is keyed by the scid of that client's log.
BY_CLIENT_SCID: dict[str, tuple[KindSpec[Any], Callable[[str, Any], Any]]] = {
    "witnessFile": (WITNESS_FILE, witness_file),
    "whois": (WHOIS, whois),
}
