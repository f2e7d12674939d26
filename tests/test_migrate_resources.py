"""The Resource kind keeps the whole attested resource (issue 12): `links` and every
other top-level member, key order included, on every backend; the migration keys a
resource by its digest (`metadata.resourceId`), as the original server's routes do."""

from __future__ import annotations

import json
from argparse import Namespace
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from storage_core import kinds as K
from storage_core.manager import open_storage
from storage_core.records import Resource
from storage_core.testing.plugin import provisioned_storage
from tests.conftest import VARIANTS, variant_config
from tests.legacy_store import (
    attested_resource,
    build_legacy_store,
    find_vectors,
    load_vectors,
    make_did,
)
from webvh_storage_migrate.cli import main

ROOT = Path(__file__).resolve().parent.parent


def as_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def a_document() -> dict[str, Any]:
    """An attested resource whose members are in an unusual order, with links and an
    extra member."""
    d = make_did(load_vectors(find_vectors())[0], 7, "example.org", "ns", "id")
    value = attested_resource(d, 1, with_created=True, with_links=True)
    return {"type": value["type"], "extra": {"b": 1, "a": 2}, **value}


def from_document(value: dict[str, Any]) -> Resource:
    """Built here from the document itself, not by the migration's converter."""
    held = ("content", "metadata", "proof", "links")
    return Resource(
        resource_id=value["metadata"]["resourceId"],
        scid="QmScid",
        did=value["id"].split("/")[0],
        resource_type=value["metadata"]["resourceType"],
        resource_name="",
        content=value["content"],
        metadata=value["metadata"],
        proof=value["proof"],
        links=value["links"],
        envelope={k: None if k in held else v for k, v in value.items()},
    )


@pytest.mark.parametrize("variant", [*VARIANTS, "memory"])
def test_a_resource_rebuilds_its_whole_document_on_every_backend(
    variant: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    config = (
        {"backend": "memory", "url": None}
        if variant == "memory"
        else variant_config(variant, request, tmp_path)
    )
    document = a_document()
    with provisioned_storage(config) as store:
        store.bulk_upsert(K.RESOURCE, [from_document(document)])
        got = store.get_record(K.RESOURCE, document["metadata"]["resourceId"])
    assert got is not None
    assert as_text(got.document()) == as_text(document)
    assert got.links == document["links"]


def test_a_record_without_an_envelope_rebuilds_the_usual_shape() -> None:
    plain = Resource(
        resource_id="z1", scid="s", did="d", resource_type="t", resource_name="", content=1
    )
    assert list(plain.document()) == ["content", "metadata", "proof"]
    linked = Resource(
        resource_id="z1",
        scid="s",
        did="d",
        resource_type="t",
        resource_name="",
        content=1,
        links=[{"id": "x"}],
    )
    assert linked.document()["links"] == [{"id": "x"}]


def test_migrated_resources_are_keyed_by_their_digest_and_rebuild_byte_for_byte(
    tmp_path: Path,
) -> None:
    source = f"sqlite://{tmp_path}/legacy.db"
    fx = build_legacy_store(source, find_vectors(), 9, extras=False, corrupt=False)
    target = f"sqlite:///{tmp_path}/t.db"
    assert main(["--quiet", "--askar", source, "--to", target, "--verify"]) == 0
    with open_storage("sqlalchemy", target) as sql:
        assert sql.archive_count() == 0  # nothing left only in the archive
        for _name, value, _tags in fx.resources:
            digest = value["id"].rsplit("/", 1)[-1]
            got = sql.get_resource(digest)  # what the server's route does
            assert got is not None and got.resource_id == value["metadata"]["resourceId"]
            assert as_text(got.document()) == as_text(value)


def test_upgrading_a_0003_database_keeps_its_resources(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    config = Config(str(ROOT / "alembic.ini"), cmd_opts=Namespace(x=[f"url={url}"]))
    command.upgrade(config, "0003_askar_archive")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO resources (resource_id, scid, did, resource_type, resource_name,"
                " content, metadata, proof, created_at, updated_at, record_version, seq)"
                " VALUES ('z1', 's', 'd', 't', '', '{\"a\": 1}', 'null', 'null',"
                " '2025-01-01 00:00:00.000000', '2025-01-01 00:00:00.000000', 1, 1)"
            )
        )
    engine.dispose()
    with open_storage("sqlalchemy", url) as store:
        store.init_db()  # upgrades to head
        got = store.get_record(K.RESOURCE, "z1")
    assert got is not None and (got.links, got.envelope) == (None, {})
    assert got.document() == {"content": {"a": 1}, "metadata": None, "proof": None}
