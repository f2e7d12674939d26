"""The example did:webvh server (examples/fastapi_server) over HTTP, on every backend
variant, each selected the way an operator does it: STORAGE_BACKEND and the backend's URL
variable, read when the server starts. Real did:webvh logs and witness files
(tests/data/vectors) go in and must come back out unchanged."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from storage_core import AsyncStorageManager, open_async_storage
from tests.conftest import ROOT, VARIANTS, require_vectors, variant_config

APP_PATH = ROOT / "examples" / "fastapi_server" / "app.py"
SERVER_VARIANTS = [*VARIANTS, "memory"]
ETAG_1 = '"1"'
JSON = {"content-type": "application/json"}


def load_example() -> ModuleType:
    """examples/fastapi_server/app.py, imported by path as uvicorn's --app-dir does."""
    module = sys.modules.get("fastapi_server_app")
    if module is None:
        spec = importlib.util.spec_from_file_location("fastapi_server_app", APP_PATH)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["fastapi_server_app"] = module
        spec.loader.exec_module(module)
    return module


def environment_for(variant: str, request: pytest.FixtureRequest, tmp_path: Path) -> dict:
    """The variables an operator sets for `variant` (tests/conftest.py's variants)."""
    if variant == "memory":
        return {"STORAGE_BACKEND": "memory"}
    config = variant_config(variant, request, tmp_path)
    url_variable = "ASKAR_DB" if config["backend"] == "askar" else "DATABASE_URL"
    return {"STORAGE_BACKEND": config["backend"], url_variable: config["url"]}


@dataclass
class Server:
    client: httpx.AsyncClient
    app: FastAPI

    @property
    def storage(self) -> AsyncStorageManager:
        storage = self.app.state.storage
        assert isinstance(storage, AsyncStorageManager)
        return storage


@pytest.fixture(params=SERVER_VARIANTS)
async def server(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[Server]:
    for name, value in environment_for(request.param, request, tmp_path).items():
        monkeypatch.setenv(name, value)
    async with open_async_storage() as store:  # the PostgreSQL databases are shared
        await store.provision(recreate=True)
    await AsyncStorageManager.reset()
    app = load_example().create_app()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
        ):
            yield Server(client, app)
    finally:
        await AsyncStorageManager.reset()


@pytest.fixture(scope="session")
def vectors() -> Path:
    return require_vectors(ROOT / "tests" / "data" / "vectors")


def lines(path: Path) -> list[Any]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def served_lines(response: httpx.Response) -> list[Any]:
    assert response.text.endswith("\n")
    return [json.loads(line) for line in response.text.splitlines()]


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return dict(body)


async def test_the_store_is_the_one_the_environment_selects(server: Server) -> None:
    assert server.storage is AsyncStorageManager()  # the process-wide instance
    assert server.storage.backend_name == os.environ["STORAGE_BACKEND"]


async def test_a_published_log_is_served_line_for_line(server: Server, vectors: Path) -> None:
    log = vectors / "suite-multi-update" / "did.jsonl"
    created = await server.client.post("/people/alice/did.jsonl", content=log.read_bytes())
    assert created.status_code == 201, created.text
    assert created.headers["etag"] == ETAG_1
    assert created.headers["location"] == "/people/alice/did.jsonl"

    served = await server.client.get("/people/alice/did.jsonl")
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("text/jsonl")
    assert served.headers["etag"] == ETAG_1
    assert served_lines(served) == lines(log)

    scid = lines(log)[0]["parameters"]["scid"]
    stored = await server.storage.get_log_entry(scid)
    assert stored is not None
    assert (stored.namespace, stored.identifier, stored.domain) == (
        "people",
        "alice",
        "example.com",
    )
    assert stored.did == lines(log)[0]["state"]["id"] and stored.deactivated is False


async def test_absent_logs_and_files_are_404(server: Server, vectors: Path) -> None:
    for path in ("did.jsonl", "did-witness.json", "whois.vp", "resources/zQmNothing"):
        assert_problem(await server.client.get(f"/people/nobody/{path}"), 404)
    log = vectors / "suite-basic-update" / "did.jsonl"
    assert (await server.client.post("/people/bob/did.jsonl", content=log.read_bytes())).is_success
    for path in ("did-witness.json", "whois.vp", "resources/zQmNothing"):  # the DID exists
        assert_problem(await server.client.get(f"/people/bob/{path}"), 404)
    assert_problem(await server.client.put("/people/nobody/did.jsonl", content=b"{no"), 422)
    body = log.read_bytes()
    assert_problem(await server.client.put("/people/nobody/did.jsonl", content=body), 404)
    assert_problem(await server.client.patch("/people/nobody/did.jsonl", content=body), 404)
    assert_problem(await server.client.put("/people/nobody/did-witness.json", json=[]), 404)
    assert_problem(await server.client.put("/people/nobody/whois.vp", json={}), 404)
    assert_problem(await server.client.post("/people/nobody/resources", json={}), 404)


async def test_a_deactivated_did_keeps_its_log_served(server: Server, vectors: Path) -> None:
    """A resolver learns of a deactivation from the log's last entry, so the log of a
    deactivated DID stays resolvable (did:webvh 1.0, "Deactivate"): 200, not 404."""
    log = vectors / "suite-deactivate" / "did.jsonl"
    first, second = lines(log)
    created = await server.client.post("/people/carol/did.jsonl", content=json.dumps(first))
    assert created.status_code == 201
    scid = first["parameters"]["scid"]
    assert (await server.storage.get_log_entry(scid)).deactivated is False  # type: ignore[union-attr]

    appended = await server.client.patch(
        "/people/carol/did.jsonl", content=json.dumps(second), headers={"If-Match": ETAG_1}
    )
    assert appended.status_code == 200, appended.text
    assert (await server.storage.get_log_entry(scid)).deactivated is True  # type: ignore[union-attr]
    served = await server.client.get("/people/carol/did.jsonl")
    assert served.status_code == 200 and served_lines(served) == [first, second]


async def test_if_match_guards_every_write_with_412(server: Server, vectors: Path) -> None:
    log = vectors / "suite-basic-update" / "did.jsonl"
    first, second = lines(log)
    await server.client.post("/people/dave/did.jsonl", content=json.dumps(first))
    appended = await server.client.patch(
        "/people/dave/did.jsonl", content=json.dumps(second), headers={"If-Match": ETAG_1}
    )
    assert appended.status_code == 200 and appended.headers["etag"] == '"2"'
    assert served_lines(appended) == [first, second]

    # A writer still holding version 1: refused, nothing written, the current version told.
    for method, headers, params in (
        ("PATCH", {"If-Match": ETAG_1}, {}),
        ("PATCH", {"If-Match": 'W/"1"'}, {}),
        ("PUT", {"If-Match": "1"}, {}),
        ("PUT", {}, {"expected_version": "1"}),
    ):
        stale = await server.client.request(
            method, "/people/dave/did.jsonl", content=json.dumps(first), headers=headers,
            params=params,
        )  # fmt: skip
        assert assert_problem(stale, 412)["current_version"] == 2
    served = await server.client.get("/people/dave/did.jsonl")
    assert served_lines(served) == [first, second] and served.headers["etag"] == '"2"'

    replaced = await server.client.put(
        "/people/dave/did.jsonl", content=log.read_bytes(), headers={"If-Match": '"2"'}
    )
    assert replaced.status_code == 200 and replaced.headers["etag"] == '"3"'
    unconditional = await server.client.put("/people/dave/did.jsonl", content=json.dumps(first))
    assert unconditional.status_code == 200 and served_lines(unconditional) == [first]


async def test_concurrent_unconditional_appends_lose_nothing(server: Server, vectors: Path) -> None:
    """PATCH without If-Match appends to what the server read, conditioned on it: each
    of many concurrent appends is either in the log (200) or refused with 409 (the
    client retries); none is silently overwritten by another."""
    first = lines(vectors / "suite-basic-update" / "did.jsonl")[0]
    await server.client.post("/people/erin/did.jsonl", content=json.dumps(first))
    appends = [{"versionId": f"{n + 2}-Qm{n}", "parameters": {}} for n in range(12)]
    responses = await asyncio.gather(
        *(server.client.patch("/people/erin/did.jsonl", content=json.dumps(a)) for a in appends)
    )
    accepted = [a for a, r in zip(appends, responses, strict=True) if r.status_code == 200]
    for response in responses:
        if response.status_code != 200:
            assert assert_problem(response, 409)["title"] == "Conflict"
    served = served_lines(await server.client.get("/people/erin/did.jsonl"))
    assert served[0] == first and sorted(served[1:], key=str) == sorted(accepted, key=str)
    assert len(served) == 1 + len(accepted) >= 2


async def test_publishing_twice_is_409(server: Server, vectors: Path) -> None:
    body = (vectors / "suite-multi-update" / "did.jsonl").read_bytes()
    assert (await server.client.post("/people/frank/did.jsonl", content=body)).status_code == 201
    assert_problem(await server.client.post("/people/frank/did.jsonl", content=body), 409)
    # The same SCID under another path: the store refuses the duplicate key.
    assert_problem(await server.client.post("/people/other/did.jsonl", content=body), 409)
    assert (await server.client.get("/people/other/did.jsonl")).status_code == 404


async def test_witness_file_and_whois_round_trip(server: Server, vectors: Path) -> None:
    folder = vectors / "py-sample-diddoc"
    log = (folder / "did.jsonl").read_bytes()
    witness = json.loads((folder / "did-witness.json").read_text())
    await server.client.post("/orgs/acme/did.jsonl", content=log)

    put = await server.client.put("/orgs/acme/did-witness.json", json=witness)
    assert put.status_code == 200 and put.headers["etag"] == ETAG_1
    got = await server.client.get("/orgs/acme/did-witness.json")
    assert got.status_code == 200 and got.json() == witness
    assert got.headers["content-type"] == "application/json"
    stale = await server.client.put(
        "/orgs/acme/did-witness.json", json=witness[:1], headers={"If-Match": '"7"'}
    )
    assert assert_problem(stale, 412)["current_version"] == 1
    assert (await server.client.get("/orgs/acme/did-witness.json")).json() == witness

    did = lines(folder / "did.jsonl")[0]["state"]["id"]
    presentation = {
        "@context": ["https://www.w3.org/ns/credentials/v2"],
        "type": ["VerifiablePresentation"],
        "holder": did,
        "verifiableCredential": [{"type": ["VerifiableCredential"], "issuer": did}],
    }
    put = await server.client.put("/orgs/acme/whois.vp", json=presentation)
    assert put.status_code == 200 and put.headers["etag"] == ETAG_1
    again = await server.client.put(
        "/orgs/acme/whois.vp", json=presentation, headers={"If-Match": ETAG_1}
    )
    assert again.headers["etag"] == '"2"'
    got = await server.client.get("/orgs/acme/whois.vp")
    assert got.status_code == 200 and got.json() == presentation
    assert got.headers["etag"] == '"2"'


async def test_an_attested_resource_is_served_member_for_member(
    server: Server, vectors: Path
) -> None:
    first = lines(vectors / "py-sample-diddoc" / "did.jsonl")[0]
    did = first["state"]["id"]
    await server.client.post("/orgs/acme/did.jsonl", content=json.dumps(first))
    digest = "zQmWvQxTqbG2Z9HPJgG57jjwR154cKhbtJenbyYTWkjgF3e"
    document = {
        "@context": ["https://identity.foundation/did-attested-resources/context/v0.1"],
        "type": ["AttestedResource"],
        "id": f"{did}/resources/{digest}",
        "content": {"issuerId": did, "attrNames": ["name", "age"], "name": "person"},
        "metadata": {"resourceId": digest, "resourceType": "anonCredsSchema",
                     "resourceName": "person"},
        "proof": {"type": "DataIntegrityProof", "cryptosuite": "eddsa-jcs-2022",
                  "proofValue": "z3abc"},
    }  # fmt: skip
    created = await server.client.post("/orgs/acme/resources", json=document)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"/orgs/acme/resources/{digest}"
    got = await server.client.get(f"/orgs/acme/resources/{digest}")
    assert got.status_code == 200 and got.json() == document
    assert list(got.json()) == list(document)  # the document's own member order
    assert_problem(await server.client.post("/orgs/acme/resources", json=document), 409)

    other = lines(vectors / "suite-basic-update" / "did.jsonl")[0]
    await server.client.post("/people/gina/did.jsonl", content=json.dumps(other))
    assert_problem(await server.client.get(f"/people/gina/resources/{digest}"), 404)

    no_id = {**document, "metadata": {"resourceType": "x", "resourceName": "y"}}
    bad = assert_problem(await server.client.post("/orgs/acme/resources", json=no_id), 422)
    assert bad["field"] == "metadata.resourceId"
    no_metadata = {key: value for key, value in document.items() if key != "metadata"}
    bad = assert_problem(await server.client.post("/orgs/acme/resources", json=no_metadata), 422)
    assert bad["field"] == "metadata"


async def test_bad_input_is_422_naming_the_field_and_writes_nothing(
    server: Server, vectors: Path
) -> None:
    first = lines(vectors / "suite-basic-update" / "did.jsonl")[0]
    for body, field in (
        (b"{not json", "did.jsonl"),
        (b"[1, 2]", "did.jsonl"),
        (b"\n\n", "did.jsonl"),
        (json.dumps({**first, "parameters": {}}).encode(), "did.jsonl"),
        (json.dumps({**first, "state": {"id": "did:web:example.com"}}).encode(), "did.jsonl"),
    ):
        response = await server.client.post("/people/hank/did.jsonl", content=body)
        assert assert_problem(response, 422)["field"] == field
    # NUL in a path segment: refused by the library's own validation, naming the field.
    response = await server.client.post("/people/ha%00nk/did.jsonl", content=json.dumps(first))
    assert assert_problem(response, 422)["field"] == "filters.identifier"
    assert await server.storage.count_log_entries() == 0

    await server.client.post("/people/hank/did.jsonl", content=json.dumps(first))
    response = await server.client.patch(
        "/people/hank/did.jsonl", content=json.dumps(first), headers={"If-Match": "abc"}
    )
    assert assert_problem(response, 422)["field"] == "If-Match"
    response = await server.client.patch(
        "/people/hank/did.jsonl", content=json.dumps(first), params={"expected_version": "x"}
    )
    assert assert_problem(response, 422)["field"] == "expected_version"
    response = await server.client.put("/people/hank/did-witness.json", json={"not": "a list"})
    assert assert_problem(response, 422)["field"] == "body"
    response = await server.client.put("/people/hank/whois.vp", content=b"{", headers=JSON)
    assert assert_problem(response, 422)["field"] == "body"
    assert_problem(await server.client.get("/people/hank/did-witness.json"), 404)
    assert_problem(await server.client.get("/people/hank/whois.vp"), 404)
    other = lines(vectors / "py-sample-diddoc" / "did.jsonl")[0]  # another DID's log
    response = await server.client.put("/people/hank/did.jsonl", content=json.dumps(other))
    assert assert_problem(response, 422)["field"] == "did.jsonl"
    served = await server.client.get("/people/hank/did.jsonl")
    assert served_lines(served) == [first] and served.headers["etag"] == ETAG_1


async def test_a_closed_store_is_503_with_retry_after(server: Server, vectors: Path) -> None:
    """An outage the handlers cannot mend: the store is gone (closed under the server).
    Every route answers 503 with Retry-After and a body naming no host or path."""
    await server.storage.aclose()
    for response in (
        await server.client.get("/people/alice/did.jsonl"),
        await server.client.post(
            "/people/alice/did.jsonl",
            content=(vectors / "suite-basic-update/did.jsonl").read_bytes(),
        ),
        await server.client.get("/people/alice/resources/zQm1"),
    ):
        body = assert_problem(response, 503)
        assert int(response.headers["retry-after"]) > 0
        assert "closed" not in body["detail"] and "/" not in body["detail"]
