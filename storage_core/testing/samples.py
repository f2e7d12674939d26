"""Valid sample records and changes for every kind, so suite tests stay kind-agnostic.

Samples are built from `storage_core.kinds.KINDS`: a kind added there without a sample
here fails `sample_record` loudly instead of being silently left out of the suite.
"""

from __future__ import annotations

from typing import Any, TypeVar, overload

import orjson

from storage_core.kinds import KINDS, SPEC_BY_RECORD, KindSpec, R, spec_for

T = TypeVar("T")
TIMESTAMPED_KINDS = tuple(name for name, spec in KINDS.items() if spec.timestamps)


def _sample_fields(kind: str, key: str) -> dict[str, Any]:
    did = f"did:webvh:{key}:example.com"
    samples: dict[str, dict[str, Any]] = {
        "log_entry": {
            "scid": key,
            "did": did,
            "domain": "example.com",
            "namespace": "people",
            "identifier": f"id-{key}",
            "logs": [{"versionId": f"1-{key}", "parameters": {"method": "did:webvh:1.0"}}],
            "deactivated": False,
        },
        "resource": {
            "resource_id": key,
            "scid": "scid-1",
            "did": "did:webvh:scid-1:example.com",
            "resource_type": "anonCredsSchema",
            "resource_name": f"schema-{key}",
            "content": {"attrNames": ["name", "age"], "version": "1.0"},
            "metadata": {"resourceId": key},
            "proof": {"type": "DataIntegrityProof", "proofValue": "z3abc"},
        },
        "witness_file": {"scid": key, "witness_proofs": [{"versionId": "1-x", "proof": []}]},
        "whois": {
            "scid": key,
            "presentation": {"type": ["VerifiablePresentation"], "holder": did},
        },
        "task": {
            "task_id": key,
            "task_type": "sync",
            "status": "pending",
            "progress": {"done": 0, "total": 10},
            "message": None,
        },
        "policy": {
            "policy_id": key,
            "version": "1.0",
            "witness": True,
            "watcher": None,
            "portability": False,
            "prerotation": True,
            "endorsement": False,
            "policy_data": {"witness": True, "prerotation": True},
        },
        "registry": {
            "registry_id": key,
            "registry_type": "witnesses",
            "registry_data": {"registry": {"did:key:z6Mk1": {"name": "w1"}}},
            "meta": {"created": "2025-01-01T00:00:00Z"},
        },
        "test_log_entry": {"scid": key, "logs": [{"n": 1}], "tags": {"run": "r1"}},
        "test_resource": {
            "resource_id": key,
            "scid": "scid-1",
            "content": {"blob": "x"},
            "tags": {"run": "r1"},
        },
    }
    try:
        return samples[kind]
    except KeyError:
        raise LookupError(f"the conformance suite has no sample for kind {kind!r}") from None


#: A valid change per kind that differs from the sample in every field it names.
SAMPLE_CHANGES: dict[str, dict[str, Any]] = {
    "log_entry": {"logs": [{"versionId": "1-a"}, {"versionId": "2-b"}], "deactivated": True},
    "resource": {"resource_name": "renamed", "content": {"attrNames": ["other"]}},
    "witness_file": {"witness_proofs": [{"versionId": "2-y", "proof": [{"p": 1}]}]},
    "whois": {"presentation": {"type": ["VerifiablePresentation"], "changed": True}},
    "task": {"status": "finished", "progress": {"done": 10, "total": 10}, "message": "ok"},
    "policy": {"witness": False, "watcher": "https://watch.example", "policy_data": {"v": 2}},
    "registry": {"registry_data": {"registry": {}}, "meta": {"updated": True}},
    "test_log_entry": {"logs": [{"n": 2}], "tags": {"run": "r2"}},
    "test_resource": {"content": "plain text now", "tags": {}},
}


@overload
def sample_record(kind: KindSpec[R], key: str, **overrides: Any) -> R: ...
@overload
def sample_record(kind: str, key: str, **overrides: Any) -> Any: ...
def sample_record(kind: str | KindSpec[Any], key: str, **overrides: Any) -> Any:
    """A valid record of `kind` with `key`; `overrides` replace sample fields.

    Typed by the spec when given one; a kind named by string gives `Any`, so tests
    looping over every kind can read kind-specific fields."""
    spec = spec_for(kind)
    return spec.record(**{**_sample_fields(spec.name, key), **overrides})


def present(value: T | None) -> T:
    """`value`, failing the test when it is None (a record the store must hold)."""
    assert value is not None, "expected a stored record, got None"
    return value


def data_of(record: Any) -> dict[str, Any]:
    """The caller-settable fields of a record (no timestamps, no record_version)."""
    spec = SPEC_BY_RECORD[type(record)]
    return {name: getattr(record, name) for name in spec.data_fields}


def json_bytes(value: Any) -> bytes:
    """Exact JSON text: equal bytes mean equal values *and* equal key order."""
    return orjson.dumps(value)
