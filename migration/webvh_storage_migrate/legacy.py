"""Converters for the categories of the legacy server layout (docs/migration.md).

One function per category turns an entry's parsed JSON value into a record. Every
field comes from the value, never from tags (older releases wrote none; newer ones
wrote "True"/"False" strings). Values that cannot be converted raise `Rejected`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from storage_core import kinds as K
from storage_core.records import (
    LogEntry,
    Policy,
    Registry,
    Resource,
    Task,
    WhoisPresentation,
    WitnessFile,
)
from webvh_storage_migrate.didparse import parse_server_did
from webvh_storage_migrate.items import Rejected
from webvh_storage_migrate.timestamps import parse_legacy_time

#: Keys of legacy values that map to fields; anything else is kept in the archive too.
_REGISTRY_KEYS = frozenset({"registry", "meta"})
_TASK_KEYS = frozenset({"id", "type", "created", "updated", "status", "message", "progress"})


def _need(value: Any, kind: type, what: str) -> Any:
    if not isinstance(value, kind):
        raise Rejected(f"{what} must be a JSON {_JSON_NAMES[kind]}, got {type(value).__name__}")
    return value


_JSON_NAMES = {dict: "object", list: "array", str: "string"}


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
    return LogEntry(
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


def resource(name: str, value: Any) -> Resource:
    """resource_id is the attested resource's full `id` (a DID URL, unique per DID)."""
    value = _need(value, dict, "resource value")
    resource_id = value.get("id")
    if not isinstance(resource_id, str) or not resource_id:
        raise Rejected("resource value has no id")
    did = parse_server_did(resource_id.split("/", 1)[0])
    metadata = _need(value.get("metadata"), dict, "resource metadata")
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
    known = {f: value[f] for f in K.POLICY.field_types if f in value and f != "policy_data"}
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
    if category == "resource":
        return True  # @context, type, links and key order live only in the value
    if category == "registry":
        return isinstance(value, dict) and not set(value) <= _REGISTRY_KEYS
    if category == "task":
        return isinstance(value, dict) and not set(value) <= _TASK_KEYS
    return False


#: Categories converted by entry name (no lookup needed).
BY_NAME: dict[str, tuple[K.KindSpec, Callable[[str, Any], Any]]] = {
    "logEntries": (K.LOG_ENTRY, log_entry_from_log),
    "resource": (K.RESOURCE, resource),
    "policy": (K.POLICY, policy),
    "registry": (K.REGISTRY, registry),
    "task": (K.TASK, task),
}
#: Categories keyed by client_id whose record is keyed by the scid of that client's log.
BY_CLIENT_SCID: dict[str, tuple[K.KindSpec, Callable[[str, Any], Any]]] = {
    "witnessFile": (K.WITNESS_FILE, witness_file),
    "whois": (K.WHOIS, whois),
}
