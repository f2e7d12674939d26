"""A small did:webvh read/write server on webvh-storage's async API and its FastAPI module.

Run it (the backend is chosen by STORAGE_BACKEND and its URL variable at start-up):

    STORAGE_BACKEND=sqlalchemy DATABASE_URL=sqlite:///server.db \\
        uv run --extra fastapi uvicorn --app-dir examples/fastapi_server app:create_app --factory

Reads serve what a did:webvh resolver fetches; writes store what a controller publishes.
It shows the storage side only: it does not verify proofs, witness thresholds or that
the DID's path matches `/{namespace}/{identifier}` (a real server runs did-webvh's
verification before it stores anything).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import unquote

import orjson
from fastapi import APIRouter, Body, FastAPI, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from storage_core import AsyncStorageManager, DuplicateRecordError, LogEntry, ValidationError
from storage_core.fastapi import Storage, install_error_handlers, storage_lifespan
from storage_core.records import RESOURCE_MEMBER_FIELDS, Resource

#: The did:webvh log's media type (the did:webvh watcher API serves it as text/jsonl).
JSONL = "text/jsonl"
NOT_FOUND = {"type": "about:blank", "title": "Not found", "status": 404}

router = APIRouter()

IfMatch = Annotated[str | None, Header(description='the record_version ETag, e.g. "3"')]
ExpectedVersion = Annotated[int | None, Query(ge=1, description="the same as If-Match")]


def create_app(storage: AsyncStorageManager | None = None, *, freeze_gc: bool = True) -> FastAPI:
    """The application. Without `storage`, the process-wide `AsyncStorageManager()` is
    built from the environment when the server starts, provisioned, and closed at
    shutdown (`storage_core.fastapi.storage_lifespan`). `freeze_gc`: what start-up built
    is frozen out of the garbage collector's full collections, which otherwise walk it
    all on the event loop every few hundred concurrent requests (`frozen_gc`)."""
    lifespan = storage_lifespan(storage, freeze_gc=freeze_gc)
    app = FastAPI(title="did:webvh example server", lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(router)
    return app


# --- helpers ------------------------------------------------------------------------------
def not_found(what: str) -> JSONResponse:
    body = {**NOT_FOUND, "detail": f"{what} not found"}
    return JSONResponse(body, status_code=404, media_type="application/problem+json")


def etag(version: int) -> dict[str, str]:
    return {"ETag": f'"{version}"'}


def expected_version(if_match: str | None, query: int | None) -> int | None:
    """The record_version the client conditions its write on: If-Match (`"3"`, `W/"3"`
    or `3`) or `?expected_version=3`; None for an unconditional write."""
    if if_match is None:
        return query
    tag = if_match.strip().removeprefix("W/").strip('"')
    if not tag.isdigit() or int(tag) < 1:
        raise ValidationError("If-Match", 'expected a record_version ETag such as "3"')
    return int(tag)


def parse_jsonl(body: bytes) -> list[Any]:
    """The entries of a did.jsonl body, one JSON object per non-empty line."""
    entries: list[Any] = []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise ValidationError("did.jsonl", f"line {number} is not JSON") from None
        if not isinstance(entry, dict):
            raise ValidationError("did.jsonl", f"line {number} is not a JSON object")
        entries.append(entry)
    if not entries:
        raise ValidationError("did.jsonl", "no log entries")
    return entries


def deactivated(entries: list[Any], current: bool = False) -> bool:
    """Whether the log ends deactivated: parameters are deltas, the last one set wins."""
    for entry in entries:
        parameters = entry.get("parameters")
        if isinstance(parameters, dict) and "deactivated" in parameters:
            current = parameters["deactivated"] is True
    return current


def identity(entries: list[Any]) -> tuple[str, str, str]:
    """(scid, did, domain) from the first entry: `parameters.scid` and `state.id`,
    `did:webvh:{SCID}:{domain}[:{path}...]`."""
    first = entries[0]
    scid = (first.get("parameters") or {}).get("scid")
    if not isinstance(scid, str) or not scid:
        raise ValidationError("did.jsonl", "the first entry has no parameters.scid")
    did = (first.get("state") or {}).get("id")
    parts = did.split(":") if isinstance(did, str) else []
    if not isinstance(did, str) or len(parts) < 4 or parts[:3] != ["did", "webvh", scid]:
        raise ValidationError("did.jsonl", f"state.id is not a did:webvh DID of SCID {scid}")
    return scid, did, unquote(parts[3])


async def find_log(
    storage: AsyncStorageManager, namespace: str, identifier: str
) -> LogEntry | None:
    found = await storage.get_log_entries(
        {"namespace": namespace, "identifier": identifier}, limit=1
    )
    return found[0] if found else None


def jsonl(entry: LogEntry) -> Response:
    body = b"".join(orjson.dumps(line) + b"\n" for line in entry.logs)
    return Response(body, media_type=JSONL, headers=etag(entry.record_version))


# --- the DID log --------------------------------------------------------------------------
@router.get("/{namespace}/{identifier}/did.jsonl")
async def get_log(namespace: str, identifier: str, storage: Storage) -> Response:
    """The log, one entry per line. A deactivated DID's log is served too: a resolver
    learns of the deactivation from its last entry (`parameters.deactivated`)."""
    entry = await find_log(storage, namespace, identifier)
    return not_found("DID log") if entry is None else jsonl(entry)


@router.post("/{namespace}/{identifier}/did.jsonl", status_code=201)
async def create_log(
    namespace: str, identifier: str, request: Request, storage: Storage
) -> Response:
    """Publish a new DID: the body is its did.jsonl. 409 if the path or SCID is taken."""
    entries = parse_jsonl(await request.body())
    scid, did, domain = identity(entries)
    if await find_log(storage, namespace, identifier) is not None:
        raise DuplicateRecordError("log_entry", f"{namespace}/{identifier}")
    entry = await storage.create_log_entry(
        scid, did, domain, namespace, identifier, entries, deactivated(entries)
    )
    headers = {**etag(entry.record_version), "Location": f"/{namespace}/{identifier}/did.jsonl"}
    return Response(status_code=201, headers=headers)


@router.put("/{namespace}/{identifier}/did.jsonl")
async def replace_log(
    namespace: str,
    identifier: str,
    request: Request,
    storage: Storage,
    if_match: IfMatch = None,
    expected: Annotated[int | None, Query(alias="expected_version", ge=1)] = None,
) -> Response:
    """Replace the whole log. With If-Match (or ?expected_version=), only if the stored
    record_version is that one: else 412 and nothing written."""
    version = expected_version(if_match, expected)
    entries = parse_jsonl(await request.body())
    current = await find_log(storage, namespace, identifier)
    if current is None:
        return not_found("DID log")
    if identity(entries)[0] != current.scid:
        raise ValidationError("did.jsonl", f"the log's SCID is not {current.scid}")
    updated = await storage.update_log_entry(
        current.scid, expected_version=version, logs=entries, deactivated=deactivated(entries)
    )
    return not_found("DID log") if updated is None else jsonl(updated)


@router.patch("/{namespace}/{identifier}/did.jsonl")
async def append_log(
    namespace: str,
    identifier: str,
    request: Request,
    storage: Storage,
    if_match: IfMatch = None,
    expected: Annotated[int | None, Query(alias="expected_version", ge=1)] = None,
) -> Response:
    """Append new entries (the body: the new lines only), the usual did:webvh update.
    Conditional (If-Match): 412 if the log moved on. Unconditional: the server appends to
    what it read, conditioned on that version, so a concurrent append is never lost: the
    loser gets 409 and retries."""
    version = expected_version(if_match, expected)
    entries = parse_jsonl(await request.body())
    current = await find_log(storage, namespace, identifier)
    if current is None:
        return not_found("DID log")
    updated = await storage.update_log_entry(
        current.scid,
        expected_version=current.record_version if version is None else version,
        logs=[*current.logs, *entries],
        deactivated=deactivated(entries, current.deactivated),
    )
    return not_found("DID log") if updated is None else jsonl(updated)


# --- witness file and whois ---------------------------------------------------------------
@router.get("/{namespace}/{identifier}/did-witness.json")
async def get_witness(namespace: str, identifier: str, storage: Storage) -> Response:
    entry = await find_log(storage, namespace, identifier)
    witness = None if entry is None else await storage.get_witness_file(entry.scid)
    if witness is None:
        return not_found("witness file")
    return JSONResponse(witness.witness_proofs, headers=etag(witness.record_version))


@router.put("/{namespace}/{identifier}/did-witness.json")
async def put_witness(
    namespace: str,
    identifier: str,
    proofs: Annotated[list[Any], Body()],
    storage: Storage,
    if_match: IfMatch = None,
    expected: Annotated[int | None, Query(alias="expected_version", ge=1)] = None,
) -> Response:
    version = expected_version(if_match, expected)
    entry = await find_log(storage, namespace, identifier)
    if entry is None:
        return not_found("DID log")
    witness = await storage.create_or_update_witness_file(entry.scid, proofs, version)
    return JSONResponse(witness.witness_proofs, headers=etag(witness.record_version))


@router.get("/{namespace}/{identifier}/whois.vp")
async def get_whois(namespace: str, identifier: str, storage: Storage) -> Response:
    entry = await find_log(storage, namespace, identifier)
    whois = None if entry is None else await storage.get_whois(entry.scid)
    if whois is None:
        return not_found("whois presentation")
    return JSONResponse(whois.presentation, headers=etag(whois.record_version))


@router.put("/{namespace}/{identifier}/whois.vp")
async def put_whois(
    namespace: str,
    identifier: str,
    presentation: Annotated[dict[str, Any], Body()],
    storage: Storage,
    if_match: IfMatch = None,
    expected: Annotated[int | None, Query(alias="expected_version", ge=1)] = None,
) -> Response:
    version = expected_version(if_match, expected)
    entry = await find_log(storage, namespace, identifier)
    if entry is None:
        return not_found("DID log")
    whois = await storage.create_or_update_whois(entry.scid, presentation, version)
    return JSONResponse(whois.presentation, headers=etag(whois.record_version))


# --- attested resources -------------------------------------------------------------------
@router.get("/{namespace}/{identifier}/resources/{resource_id}")
async def get_resource(
    namespace: str, identifier: str, resource_id: str, storage: Storage
) -> Response:
    entry = await find_log(storage, namespace, identifier)
    resource = None if entry is None else await storage.get_resource(resource_id)
    if resource is None or entry is None or resource.scid != entry.scid:
        return not_found("resource")
    return JSONResponse(resource.document(), headers=etag(resource.record_version))


@router.post("/{namespace}/{identifier}/resources", status_code=201)
async def create_resource(
    namespace: str,
    identifier: str,
    document: Annotated[dict[str, Any], Body()],
    storage: Storage,
) -> Response:
    """Store an attested resource: its id is `metadata.resourceId`, and it is served back
    member for member, in its own order."""
    entry = await find_log(storage, namespace, identifier)
    if entry is None:
        return not_found("DID log")
    metadata = document.get("metadata")
    if not isinstance(metadata, dict):
        raise ValidationError("metadata", "an attested resource needs a metadata object")
    fields: dict[str, str] = {}
    for name in ("resourceId", "resourceType", "resourceName"):
        value = metadata.get(name)
        if not isinstance(value, str) or not value:
            raise ValidationError(f"metadata.{name}", "missing")
        fields[name] = value
    resource = await storage.create_record(
        Resource(
            resource_id=fields["resourceId"],
            scid=entry.scid,
            did=entry.did,
            resource_type=fields["resourceType"],
            resource_name=fields["resourceName"],
            content=document.get("content"),
            metadata=metadata,
            proof=document.get("proof"),
            links=document.get("links"),
            envelope={k: None if k in RESOURCE_MEMBER_FIELDS else v for k, v in document.items()},
        )
    )
    location = f"/{namespace}/{identifier}/resources/{resource.resource_id}"
    return Response(
        status_code=201, headers={**etag(resource.record_version), "Location": location}
    )
