"""Build Askar stores with the legacy did:webvh server layout, quirks included.

Written with aries_askar directly (key method "none", default profile), exactly as the
old server did (`json.dumps` values), from the real logs in ../shared/vectors rewritten
into server DIDs `did:webvh:{SCID}:{domain}:{namespace}:{identifier}`. Each copy of a
vector gets its own scid. The returned `LegacyFixture` says what was written, so tests
compute their expectations from it and never from the code under test.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

#: The real did:webvh logs kept in the repository (tests/data/vectors).
VECTORS = Path(__file__).resolve().parent / "data" / "vectors"

VECTOR_NAMES = (
    "suite-basic-update",
    "suite-deactivate",
    "suite-multi-update",
    "suite-pre-rotation-consume",
    "suite-witness-threshold",
    "suite-witness-update",
    "py-sample-diddoc",
)
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def find_vectors(path: Path = VECTORS, env: Mapping[str, str] | None = None) -> Path:
    """The vectors folder. Missing, tests that need it skip on a developer's machine but
    fail under CI=true, where a skip would hide that the migration tests never ran."""
    if path.is_dir():
        return path
    reason = f"shared test vectors not found at {path}"
    ci = (os.environ if env is None else env).get("CI", "").lower() in ("1", "true", "yes")
    if ci:
        pytest.fail(f"CI=true and the migration tests need them: {reason}", pytrace=False)
    pytest.skip(reason)


def b58(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    out = ""
    while number:
        number, rest = divmod(number, 58)
        out = _B58[rest] + out
    return out or "1"


def derived_scid(original: str, copy: int) -> str:
    return ("Qm" + b58(hashlib.sha256(f"{original}/{copy}".encode()).digest()))[:46]


@dataclass(frozen=True)
class Vector:
    name: str
    lines: list[str]  # raw did.jsonl lines
    witness: list[dict[str, Any]] | None  # did-witness.json, oldest first
    scid: str
    did: str  # state.id of the last line

    @classmethod
    def load(cls, folder: Path) -> Vector:
        lines = [line for line in (folder / "did.jsonl").read_text().splitlines() if line.strip()]
        first, last = json.loads(lines[0]), json.loads(lines[-1])
        witness_path = folder / "did-witness.json"
        witness = json.loads(witness_path.read_text()) if witness_path.exists() else None
        return cls(folder.name, lines, witness, first["parameters"]["scid"], last["state"]["id"])


def load_vectors(vectors_dir: Path) -> list[Vector]:
    return [Vector.load(vectors_dir / name) for name in VECTOR_NAMES]


@dataclass
class GeneratedDid:
    client_id: str
    scid: str
    did: str
    domain: str  # as it appears decoded (host[:port])
    namespace: str
    identifier: str
    logs: list[dict[str, Any]]
    deactivated: bool
    created: str  # versionTime of the first line
    updated: str  # versionTime of the last line
    witness_stored: list[Any] | None = None  # as written: newest first, or [] ; None = absent
    whois: dict[str, Any] | None = None
    log_written: bool = True


@dataclass
class LegacyFixture:
    dids: list[GeneratedDid] = field(default_factory=list)
    resources: list[tuple[str, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    policy: dict[str, Any] | None = None
    registry: dict[str, Any] | None = None
    tasks: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: every entry expected verbatim in askar_archive: (category, name, value text, tags)
    archived: list[tuple[str, str, str, dict[str, str]]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    #: (category, name) -> a fragment of the expected reject reason
    rejects: dict[tuple[str, str], str] = field(default_factory=dict)
    entries: int = 0

    @property
    def logs(self) -> list[GeneratedDid]:
        return [d for d in self.dids if d.log_written]


def human_date(iso: str) -> str:
    from datetime import datetime

    return datetime.fromisoformat(iso).strftime("%B %d, %Y")


def make_did(
    vector: Vector,
    copy: int,
    domain: str,
    namespace: str,
    identifier: str,
    deactivate_flag_from_lines: bool = True,
) -> GeneratedDid:
    """Rewrite a vector into a server DID with a fresh scid (text rewrite, proofs unchecked)."""
    scid = derived_scid(vector.scid, copy)
    encoded_host = domain.replace(":", "%3A")
    new_did = f"did:webvh:{scid}:{encoded_host}:{namespace}:{identifier}"
    host = vector.did.split(":", 3)[3]
    lines = []
    for raw in vector.lines:
        text = raw.replace(vector.did, new_did)
        web = f'"did:web:{encoded_host}:{namespace}:{identifier}"'
        text = text.replace(f'"did:web:{host}"', web)
        text = text.replace(vector.scid, scid)
        lines.append(json.loads(text))
    deactivated = False
    for line in lines:
        if "deactivated" in line.get("parameters", {}):
            deactivated = line["parameters"]["deactivated"]
    return GeneratedDid(
        client_id=f"{namespace}:{identifier}",
        scid=scid,
        did=new_did,
        domain=domain,
        namespace=namespace,
        identifier=identifier,
        logs=lines,
        deactivated=deactivated,
        created=lines[0]["versionTime"],
        updated=lines[-1]["versionTime"],
    )


def did_tags(d: GeneratedDid, *, stale: bool = False) -> dict[str, str]:
    """The DID tags the newer server releases wrote ("True"/"False" strings)."""
    return {
        "did": d.did,
        "scid": "stale" + d.scid if stale else d.scid,
        "domain": d.domain,
        "namespace": d.namespace,
        "identifier": d.identifier,
        "created": human_date(d.created),
        "updated": human_date(d.updated),
        "deactivated": str(not d.deactivated if stale else d.deactivated),
    }


def attested_resource(
    d: GeneratedDid, number: int, *, with_created: bool, with_links: bool
) -> dict[str, Any]:
    content = {
        "issuerId": d.did,
        "name": f"Schema {number}",
        "version": "1.0",
        "attrNames": ["name", "age", f"attr{number}"],
    }
    digest = "z" + b58(hashlib.sha256(json.dumps(content).encode()).digest())
    proof = {
        "type": "DataIntegrityProof",
        "cryptosuite": "eddsa-jcs-2022",
        "proofPurpose": "assertionMethod",
        "verificationMethod": f"{d.did}#key-01",
        "proofValue": "z" + b58(hashlib.sha256(digest.encode()).digest() * 2),
    }
    if with_created:
        proof["created"] = f"2025-10-0{1 + number % 9}T12:00:00Z"
    value: dict[str, Any] = {
        "@context": ["https://identity.foundation/did-attested-resources/context/v0.1"],
        "type": ["AttestedResource"],
        "id": f"{d.did}/resources/{digest}",
        "content": content,
        "metadata": {
            "resourceId": digest,
            "resourceType": "anonCredsSchema",
            **({"resourceName": f"Schema {number}"} if number % 3 else {}),
        },
    }
    if with_links:
        value["links"] = [{"id": f"{d.did}/resources/zLinked", "type": "anonCredsStatusList"}]
    value["proof"] = proof
    return value


def whois_vp(d: GeneratedDid) -> dict[str, Any]:
    return {
        "@context": ["https://www.w3.org/ns/credentials/v2"],
        "type": ["VerifiablePresentation"],
        "holder": d.did,
        "verifiableCredential": [
            {
                "type": ["VerifiableCredential"],
                "issuer": d.did,
                "credentialSubject": {"id": d.did, "name": d.identifier},
            }
        ],
        "proof": {
            "type": "DataIntegrityProof",
            "cryptosuite": "eddsa-jcs-2022",
            "verificationMethod": f"{d.did}#key-01",
            "proofValue": "zSig",
        },
    }


class _Writer:
    """Inserts into an open store in transactions of `per_txn` entries."""

    def __init__(self, store: Any, per_txn: int = 2000) -> None:
        self.store = store
        self.per_txn = per_txn
        self.pending: list[tuple[str, str, str, dict[str, str] | None]] = []
        self.count = 0

    async def add(
        self, category: str, name: str, value: str, tags: dict[str, str] | None = None
    ) -> None:
        self.pending.append((category, name, value, tags))
        self.count += 1
        if len(self.pending) >= self.per_txn:
            await self.flush()

    async def flush(self) -> None:
        if not self.pending:
            return
        async with self.store.transaction() as txn:
            for category, name, value, tags in self.pending:
                await txn.insert(category, name, value, tags=tags)
            await txn.commit()
        self.pending = []


async def _build(
    uri: str, vectors: list[Vector], n_dids: int, resources_every: int, extras: bool, corrupt: bool
) -> LegacyFixture:
    from aries_askar import Store

    store = await Store.provision(uri, "none", None, recreate=True)
    fx = LegacyFixture()
    w = _Writer(store)
    try:
        for i in range(n_dids):
            vector = vectors[i % len(vectors)]
            domain = "localhost:8000" if i % 5 == 4 else "example.org"
            d = make_did(vector, i, domain, f"ns{i % 3}", f"id{i:06d}")
            fx.dids.append(d)
            style = i % 4  # 0: no tags (<= 0.3.4), 1: tags, 2: stale tags, 3: tags
            tags = None if style == 0 else did_tags(d, stale=style == 2)
            await w.add("logEntries", d.client_id, json.dumps(d.logs), tags)
            if vector.witness is not None:
                d.witness_stored = list(reversed(vector.witness))  # newest first
            else:
                d.witness_stored = []
            await w.add("witnessFile", d.client_id, json.dumps(d.witness_stored), tags)
            if resources_every and i % resources_every == 0:
                r = attested_resource(d, i, with_created=i % 2 == 0, with_links=i % 3 == 0)
                name = f"{d.client_id}:{r['id'].rsplit('/', 1)[-1]}"
                rtags = {
                    "did": d.did,
                    "scid": d.scid,
                    "resource_id": r["metadata"]["resourceId"],
                    "resource_type": "anonCredsSchema",
                }
                await w.add("resource", name, json.dumps(r), rtags)
                fx.resources.append((name, r, rtags))
        if extras:
            await _extras(w, fx, vectors)
        if corrupt:
            await _corrupt(w, fx, vectors)
        await w.flush()
    finally:
        await store.close()
    fx.entries = w.count
    return fx


async def _extras(w: _Writer, fx: LegacyFixture, vectors: list[Vector]) -> None:
    dids = fx.dids
    # whois for a few DIDs
    for d in dids[:3]:
        d.whois = whois_vp(d)
        await w.add("whois", d.client_id, json.dumps(d.whois))
    # a log without its witnessFile
    lone = make_did(vectors[0], 9001, "example.org", "solo", "nowitness")
    fx.dids.append(lone)
    await w.add("logEntries", lone.client_id, json.dumps(lone.logs))
    # a witnessFile without its log: kept verbatim as an orphan
    orphan = [{"versionId": "1-QmOrphan", "proof": []}]
    orphan_tags = {"did": "did:webvh:QmGone:example.org:gone:away", "deactivated": "False"}
    await w.add("witnessFile", "gone:away", json.dumps(orphan), orphan_tags)
    fx.archived.append(("witnessFile", "gone:away", json.dumps(orphan), orphan_tags))
    # policy, registry, tasks
    fx.policy = {
        "version": "1.0",
        "witness": True,
        "watcher": "https://watcher.example.org",
        "portability": False,
        "prerotation": True,
        "endorsement": False,
        "validity": 0,
        "witness_registry_url": "https://example.org/registry.json",
    }
    await w.add("policy", "active", json.dumps(fx.policy))
    fx.registry = {
        "meta": {"created": "2025-10-08T10:00:00Z", "updated": "2025-10-09T10:00:00Z"},
        "registry": {
            "did:key:z6MkwitnessAAA": {"name": "Witness A"},
            "did:key:z6MkwitnessBBB": {"name": "Witness B"},
        },
    }
    await w.add("registry", "knownWitnesses", json.dumps(fx.registry))
    for n, (ttype, status) in enumerate(
        [("set_policy", "finished"), ("sync_records", "started"), ("sync_records", "abandonned")]
    ):
        task_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"task-{n}"))
        value = {
            "id": task_id,
            "type": ttype,
            "created": f"2025-10-0{n + 1}T08:00:00+00:00",
            "updated": f"2025-10-0{n + 1}T09:30:00+00:00",
            "status": status,
            "progress": {"done": n, "total": 3},
        }
        if status != "started":
            value["message"] = f"{status} after {n} steps"
        await w.add("task", task_id, json.dumps(value), {"status": status, "task_type": ttype})
        fx.tasks.append((task_id, value))
    # tailsFile: the value is a JSON *string* of hex
    tails_hex = hashlib.sha256(b"tails").hexdigest() * 4
    tails_name = b58(hashlib.sha256(bytes.fromhex(tails_hex)).digest())
    await w.add("tailsFile", tails_name, json.dumps(tails_hex))
    fx.archived.append(("tailsFile", tails_name, json.dumps(tails_hex), {}))
    # derived caches: skipped
    for d in dids[:4]:
        await w.add(
            "didRecord",
            d.client_id,
            json.dumps({"did": d.did, "logs": len(d.logs)}),
            did_tags(d) if d.identifier.endswith("0") else None,
        )
    fx.skipped["didRecord"] = 4
    if fx.resources:
        name, value, rtags = fx.resources[0]
        await w.add("resourceRecord", name, json.dumps({"id": value["id"]}), rtags)
        fx.skipped["resourceRecord"] = 1
    # an older release's category, and one nobody knows
    d = dids[0]
    web = f"did:web:example.org:{d.namespace}:{d.identifier}"
    doc = json.dumps({"@context": "https://www.w3.org/ns/did/v1", "id": web})
    await w.add("didDocument", web, doc)
    fx.archived.append(("didDocument", web, doc, {}))
    await w.add("mysteryCategory", "thing-1", '{"keep": "me",  "spacing":  1}', {"~plain": "x"})
    fx.archived.append(
        ("mysteryCategory", "thing-1", '{"keep": "me",  "spacing":  1}', {"~plain": "x"})
    )


async def add_rejected(
    w: _Writer,
    fx: LegacyFixture,
    category: str,
    name: str,
    text: str,
    reason: str,
    tags: dict[str, str] | None = None,
) -> None:
    """Write an entry the migration must reject (`reason`: a fragment of the reason) and
    keep verbatim in the archive."""
    await w.add(category, name, text, tags)
    fx.rejects[(category, name)] = reason
    fx.archived.append((category, name, text, dict(tags or {})))


async def _corrupt(w: _Writer, fx: LegacyFixture, vectors: list[Vector]) -> None:
    # a whois without a log: rejected
    gone = json.dumps({"type": ["VerifiablePresentation"]})
    await add_rejected(w, fx, "whois", "gone:whois", gone, "no convertible logEntries entry")
    await add_rejected(w, fx, "logEntries", "bad:json", '[{"versionId": "1-Qm", ', "invalid JSON")
    noscid = make_did(vectors[0], 9100, "example.org", "bad", "noscid")
    lines = [dict(line) for line in noscid.logs]
    lines[0] = {
        **lines[0],
        "parameters": {k: v for k, v in lines[0]["parameters"].items() if k != "scid"},
    }
    await add_rejected(w, fx, "logEntries", "bad:noscid", json.dumps(lines), "no scid")
    baddid = make_did(vectors[0], 9200, "example.org", "bad", "did")
    text = json.dumps(baddid.logs).replace(baddid.did, f"did:webvh:{baddid.scid}:example.org")
    await add_rejected(w, fx, "logEntries", "bad:did", text, "does not parse as a server DID")
    shape = json.dumps([1, 2, 3])
    await add_rejected(w, fx, "resource", "bad:shape:z1", shape, "must be a JSON object")
    bad_task = {"id": "bad-task", "type": "sync_records", "status": "started", "created": "x"}
    await add_rejected(w, fx, "task", "bad-task", json.dumps(bad_task), "not a timestamp")


def build_legacy_store(
    uri: str,
    vectors_dir: Path,
    n_dids: int = 12,
    *,
    resources_every: int = 3,
    extras: bool = True,
    corrupt: bool = True,
) -> LegacyFixture:
    """Provision `uri` afresh and fill it; returns what was written."""
    vectors = load_vectors(vectors_dir)
    return asyncio.run(_build(uri, vectors, n_dids, resources_every, extras, corrupt))


Entry = tuple[str, str, str | bytes, dict[str, str] | None]  # category, name, value, tags


async def _put(uri: str, entries: list[Entry], recreate: bool) -> None:
    from aries_askar import Store

    if recreate:
        store = await Store.provision(uri, "none", None, recreate=True)
    else:
        store = await Store.open(uri, "none", None)
    try:
        async with store.transaction() as txn:
            for category, name, value, tags in entries:
                if await txn.fetch(category, name, for_update=True) is None:
                    await txn.insert(category, name, value, tags=tags)
                else:
                    await txn.replace(category, name, value, tags=tags)
            await txn.commit()
    finally:
        await store.close()


def put_entries(uri: str, entries: list[Entry], *, recreate: bool = False) -> None:
    """Insert or replace entries as the legacy server would (e.g. between two migration
    runs); `recreate` provisions an empty store first."""
    asyncio.run(_put(uri, entries, recreate))


# --- the odd store: every odd case of the legacy layout at once ----------------------------
ENCODING_TAG = "migrate-askar:encoding"  # how the archive marks a value kept as base64


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@dataclass
class OddCases:
    """What build_odd_store added on top of the usual fixture."""

    #: records that must be in the target besides the fixture's (kind -> key -> value dict)
    native_log: dict[str, Any] = field(default_factory=dict)
    rehomed_client: str = ""
    second_scid_client: str = ""


async def _odd(uri: str, fx: LegacyFixture, vectors: list[Vector]) -> OddCases:
    import base64

    from aries_askar import Store

    odd = OddCases()
    store = await Store.open(uri, "none", None)
    w = _Writer(store)
    try:
        # a log stored under people:alice whose DID says orgs:other (never re-homed)
        other = make_did(vectors[0], 9300, "example.org", "orgs", "other")
        odd.rehomed_client = "people:alice"
        await add_rejected(
            w, fx, "logEntries", "people:alice", json.dumps(other.logs), "re-homed log", {}
        )
        # a second SCID at a location this project's layout already gives another scid
        first = make_did(vectors[1], 9301, "example.org", "taken", "spot")
        second = make_did(vectors[0], 9302, "example.org", "taken", "spot")
        odd.native_log = {
            "scid": first.scid,
            "did": first.did,
            "domain": first.domain,
            "namespace": first.namespace,
            "identifier": first.identifier,
            "logs": first.logs,
            "deactivated": first.deactivated,
            "created_at": "2025-10-01T00:00:00+00:00",
            "updated_at": "2025-10-02T00:00:00+00:00",
            "record_version": 3,
        }
        await w.add("webvh:log_entry", first.scid, json.dumps(odd.native_log), {})
        odd.second_scid_client = second.client_id
        await add_rejected(
            w, fx, "logEntries", second.client_id, json.dumps(second.logs), "second SCID"
        )
        # resources: resourceId disagreeing with the id; an id with a file extension
        d = fx.dids[1]
        good = attested_resource(d, 1, with_created=True, with_links=True)
        wrong = json.loads(json.dumps(good))
        wrong["metadata"]["resourceId"] = "zSomethingElse"
        wrong_name = f"{d.client_id}:{good['id'].rsplit('/', 1)[-1]}x"
        await add_rejected(w, fx, "resource", wrong_name, json.dumps(wrong), "disagrees", {})
        ext = attested_resource(d, 2, with_created=True, with_links=False)
        ext["id"] += ".json"
        ext_name = f"{d.client_id}:{ext['metadata']['resourceId']}"
        await w.add("resource", ext_name, json.dumps(ext), {})
        fx.resources.append((ext_name, ext, {}))
        # hostile values, one per entry
        await add_rejected(
            w, fx, "logEntries", "deep:json", _nested(1100), "nested deeper than 254"
        )
        await add_rejected(
            w, fx, "whois", fx.dids[3].client_id, _nested(300), "nested deeper than 254"
        )
        await add_rejected(
            w,
            fx,
            "task",
            "t-surrogate",
            '{"type": "x", "status": "y", "message": "\\ud800"}',
            "lone surrogate",
            {},
        )
        big = '{"type": "x", "status": "y", "progress": {"done": ' + str(2**70) + "}}"
        await add_rejected(w, fx, "task", "t-bigint", big, "integer beyond 64 bits", {})
        dup = '{"type": "x", "status": "started", "status": "finished"}'
        await add_rejected(w, fx, "task", "t-dupkey", dup, "duplicate key 'status'", {})
        await add_rejected(w, fx, "task", "t-nan", '{"type": "x", "status": NaN}', "NaN", {})
        await add_rejected(w, fx, "whois", fx.dids[4].client_id, "this is not JSON", "invalid JSON")
        nul = '{"type": "x", "status": "y\\u0000z"}'  # valid JSON, refused when written
        await add_rejected(w, fx, "task", "t-nul", nul, "NUL", {})
        for category, name, raw in (
            ("logEntries", "bin:ary", b"\xff\xfe[1]"),
            ("tailsFile", "zBinaryTails", b"tails\x00hex"),
        ):
            await w.add(category, name, raw, None)  # type: ignore[arg-type]
            fx.rejects[(category, name)] = "not UTF-8" if raw[0] == 0xFF else "NUL"
            encoded = base64.b64encode(raw).decode()
            fx.archived.append((category, name, encoded, {ENCODING_TAG: "base64"}))
        await w.flush()
    finally:
        await store.close()
    fx.entries += w.count
    return odd


def build_odd_store(
    uri: str, vectors_dir: Path, n_dids: int = 12
) -> tuple[LegacyFixture, OddCases]:
    """The usual fixture (extras and corrupt entries included) plus every odd case above."""
    fx = build_legacy_store(uri, vectors_dir, n_dids)
    odd = asyncio.run(_odd(uri, fx, load_vectors(vectors_dir)))
    return fx, odd
