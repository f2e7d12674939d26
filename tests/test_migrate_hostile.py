"""Hostile entries never abort or alter a run, and one store holding every odd case of
the legacy layout at once migrates everything else exactly (issue 12).

Each hostile value is one rejected entry: its reason in the rejects file, the entry
kept verbatim in the archive, exit status 1; every other entry still migrates, and
verify (exact content) passes.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aries_askar import Store

from storage_core import kinds as K
from storage_core.codec import record_from_dict
from storage_core.manager import open_storage
from tests.legacy_store import (
    ENCODING_TAG,
    build_legacy_store,
    build_odd_store,
    find_vectors,
    put_entries,
)
from tests.pg import PgServer, require_pg
from tests.test_migrate_askar import assert_target_matches
from webvh_storage_migrate.cli import main


@pytest.fixture(scope="module")
def vectors_dir() -> Path:
    return find_vectors()


def migrate(tmp_path: Path, *argv: str) -> tuple[int, dict[str, Any], dict[tuple[str, str], str]]:
    """Run migrate-askar; (exit status, report, rejects by (category, name))."""
    report, rejects = tmp_path / "report.json", tmp_path / "rejects.jsonl"
    status = main(["--quiet", *argv, "--report", str(report), "--rejects", str(rejects)])
    lines = [json.loads(line) for line in rejects.read_text().splitlines()]
    return (
        status,
        json.loads(report.read_text()),
        {(r["category"], r["name"]): r["reason"] for r in lines},
    )


def balanced(report: dict[str, Any]) -> bool:
    """read = written + unchanged + rejected + skipped + kept-newer in every category."""
    return all(
        c["read"] == c["written"] + c["unchanged"] + c["rejected"] + c["skipped"] + c["kept_newer"]
        for c in report["categories"].values()
    )


# --- one hostile value at a time ---------------------------------------------------------
HOSTILE: dict[str, tuple[str, str, bytes, str]] = {
    # today: RecursionError aborts the whole run, nothing migrated
    "deep": ("logEntries", "deep:json", b"[" * 1100 + b"]" * 1100, "nested deeper than 254"),
    # today: migrated, then --verify crashes with TypeError
    "surrogate": (
        "task",
        "t-surrogate",
        b'{"type": "x", "status": "y", "message": "\\udc80"}',
        "lone surrogate",
    ),
    # today: stored as a float (1.1805916207174113e+21) and verify says ok
    "bigint": (
        "task",
        "t-bigint",
        b'{"type": "x", "status": "y", "progress": {"n": 1180591620717411303424}}',
        "integer beyond 64 bits",
    ),
    # today: the last "status" silently wins
    "duplicate": (
        "task",
        "t-dup",
        b'{"type": "x", "status": "started", "status": "finished"}',
        "duplicate key 'status'",
    ),
    "utf8": ("whois", "ns0:id000000", b'{"name": "\xff"}', "not UTF-8"),
    "not-json": ("policy", "active", b"{'version': '1.0'}", "invalid JSON"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_value_is_one_archived_reject(
    case: str, tmp_path: Path, vectors_dir: Path
) -> None:
    category, name, raw, reason = HOSTILE[case]
    source = f"sqlite://{tmp_path}/legacy.db"
    fx = build_legacy_store(source, vectors_dir, 4, extras=False, corrupt=False)
    put_entries(source, [(category, name, raw, None)])
    target = f"sqlite:///{tmp_path}/target.db"

    status, report, rejects = migrate(tmp_path, "--askar", source, "--to", target, "--verify")

    assert status == 1
    assert list(rejects) == [(category, name)] and reason in rejects[(category, name)]
    assert report["verify"]["ok"] and report["error"] is None
    with open_storage("sqlalchemy", target) as sql:
        assert sql.count_records(K.LOG_ENTRY) == len(fx.logs)  # everything else migrated
        kept = sql.archive_get(category, [name]).get(name)
    assert kept is not None, "the rejected entry is archived verbatim"
    if case == "utf8":  # text cannot hold it: base64, marked by a tag
        assert base64.b64decode(kept.value) == raw
        assert dict(kept.tags) == {ENCODING_TAG: "base64"}
    else:
        assert (kept.value.encode(), dict(kept.tags)) == (raw, {})
    assert balanced(report)


def test_verify_compares_exact_content(tmp_path: Path, vectors_dir: Path) -> None:
    """A number changed to a float in the target is a difference, not a match."""
    source = f"sqlite://{tmp_path}/legacy.db"
    build_legacy_store(source, vectors_dir, 3, extras=False, corrupt=False)
    value = '{"type": "x", "status": "y", "progress": {"n": 10}}'
    put_entries(source, [("task", "t-num", value, None)])
    target = f"sqlite:///{tmp_path}/target.db"
    assert main(["--quiet", "--askar", source, "--to", target]) == 0
    with open_storage("sqlalchemy", target) as sql:
        task = sql.get_record(K.TASK, "t-num")
        assert task is not None
        sql.bulk_upsert(K.TASK, [replace(task, progress={"n": 10.0})])  # 10 == 10.0
    status, report, _ = migrate(tmp_path, "--askar", source, "--to", target, "--verify-only")
    assert status == 1
    assert report["verify"]["mismatches"] == [
        {"category": "task", "name": "t-num", "problem": "task 't-num' differs"}
    ]


# --- every odd case at once ------------------------------------------------------------------
def _target(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[str, str]:
    if kind == "sqlite":
        return "sqlalchemy", f"sqlite:///{tmp_path}/target.db"
    if kind == "askar":
        return "askar", f"sqlite://{tmp_path}/target-askar.db"
    server: PgServer = request.getfixturevalue("pg_server")
    require_pg(server)
    return "sqlalchemy", server.sqlalchemy_url(server.create_database("mig_odd"))


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "askar"])
def test_the_odd_store_rejects_each_odd_entry_and_migrates_everything_else(
    kind: str, tmp_path: Path, vectors_dir: Path, request: pytest.FixtureRequest
) -> None:
    source = f"sqlite://{tmp_path}/odd.db"
    fx, odd = build_odd_store(source, vectors_dir)
    backend, url = _target(kind, tmp_path, request)
    argv = ("--askar", source, "--to-backend", backend, "--to", url, "--verify")

    status, report, rejects = migrate(tmp_path, *argv)

    assert status == 1, report["error"]
    assert report["error"] is None and report["verify"]["ok"], report["verify"]["mismatches"]
    assert set(rejects) == set(fx.rejects)
    for key, fragment in fx.rejects.items():
        assert fragment in rejects[key], (key, rejects[key])
    assert balanced(report)
    assert report["totals"]["rejected"] == len(fx.rejects)
    native = record_from_dict(K.LOG_ENTRY, odd.native_log)
    assert_target_matches(url, fx, backend, extra={"log_entry": {native.scid: native}})

    # a second run finds everything in place and rejects the same entries again
    status, again, rejected_again = migrate(tmp_path, *argv)
    assert status == 1 and set(rejected_again) == set(fx.rejects)
    assert again["totals"]["written"] == 0 and again["verify"]["ok"]


def test_a_binary_value_comes_back_byte_for_byte_from_a_reverse_run(
    tmp_path: Path, vectors_dir: Path
) -> None:
    source = f"sqlite://{tmp_path}/legacy.db"
    build_legacy_store(source, vectors_dir, 2, extras=False, corrupt=False)
    raw = b"\x00\x01\xfe tails"
    put_entries(source, [("tailsFile", "zTails", raw, {"~kind": "tails"})])
    target = f"sqlite:///{tmp_path}/target.db"
    assert main(["--quiet", "--askar", source, "--to", target]) == 1
    back = f"sqlite://{tmp_path}/back.db"
    assert main(["--quiet", "--reverse", "--askar", back, "--to", target, "--verify"]) == 0

    async def read() -> tuple[bytes, dict[str, str]]:
        store = await Store.open(back, "none", None)
        try:
            async with store.session() as session:
                entry = await session.fetch("tailsFile", "zTails")
                return bytes(entry.raw_value), dict(entry.tags)
        finally:
            await store.close()

    assert asyncio.run(read()) == (raw, {"~kind": "tails"})
