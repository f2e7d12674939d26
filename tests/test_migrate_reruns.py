"""migrate-askar when source or target change between runs, and the reasons it gives.

A re-run must rewrite exactly what differs (and nothing else), verify must see every
difference, key order inside documents included, and every reject must say why.
Expectations come from what the tests wrote, never from the migration's converters.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from storage_core.kinds import LOG_ENTRY, TASK
from storage_core.manager import open_storage
from tests.legacy_store import (
    LegacyFixture,
    build_legacy_store,
    find_vectors,
    load_vectors,
    make_did,
    put_entries,
)
from webvh_storage_migrate.cli import main


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    return find_vectors()


@pytest.fixture
def migrated(tmp_path: Path, vectors_dir: Path) -> tuple[str, str, LegacyFixture]:
    """A legacy store and a SQLite target it was migrated into once."""
    source = f"sqlite://{tmp_path}/legacy.db"
    fx = build_legacy_store(source, vectors_dir, 12)
    target = f"sqlite:///{tmp_path}/target.db"
    assert cli("--askar", source, "--to", target) == 1  # 1: the corrupt entries
    return source, target, fx


def cli(*argv: str) -> int:
    return main(["--quiet", *argv])


def run_report(tmp_path: Path, *argv: str) -> tuple[int, dict[str, Any]]:
    path = tmp_path / "report.json"
    status = cli(*argv, "--report", str(path))
    return status, json.loads(path.read_text())


def written(report: dict[str, Any]) -> dict[str, int]:
    """Categories with something written: {category: entries written}."""
    return {c: s["written"] for c, s in report["categories"].items() if s["written"]}


def as_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


# --- issue 18: key order inside documents is content ---------------------------------------
def test_a_log_reordered_in_the_target_fails_verify_and_a_rerun_restores_it(
    migrated: tuple[str, str, LegacyFixture], tmp_path: Path
) -> None:
    source, target, fx = migrated
    did = fx.logs[0]
    reordered = json.loads(json.dumps(did.logs, sort_keys=True))
    assert reordered == did.logs and as_text(reordered) != as_text(did.logs)
    with open_storage("sqlalchemy", target) as sql:
        stored = sql.get_record(LOG_ENTRY, did.scid)
        assert stored is not None
        sql.bulk_upsert(LOG_ENTRY, [replace(stored, logs=reordered)])  # as stored otherwise

    status, report = run_report(tmp_path, "--askar", source, "--to", target, "--verify-only")
    assert status == 1
    assert report["verify"]["mismatches"] == [
        {
            "category": "logEntries",
            "name": did.client_id,
            "problem": f"log_entry {did.scid!r} differs",
        }
    ]

    status, report = run_report(tmp_path, "--askar", source, "--to", target)
    assert status == 1  # the corrupt entries, as on the first run
    assert written(report) == {"logEntries": 1}
    with open_storage("sqlalchemy", target) as sql:
        restored = sql.get_record(LOG_ENTRY, did.scid)
    assert restored is not None and as_text(restored.logs) == as_text(did.logs)
    assert cli("--askar", source, "--to", target, "--verify-only") == 0


# --- changes in the source between two runs -------------------------------------------------
def test_a_record_edited_in_the_source_is_rewritten_alone(
    migrated: tuple[str, str, LegacyFixture], tmp_path: Path
) -> None:
    source, target, fx = migrated
    task_id, value = fx.tasks[0]
    edited = {**value, "status": "restarted", "progress": {"done": 0, "total": 9}}
    put_entries(source, [("task", task_id, json.dumps(edited), None)])

    status, report = run_report(tmp_path, "--askar", source, "--to", target)
    assert status == 1
    assert written(report) == {"task": 1}
    with open_storage("sqlalchemy", target) as sql:
        task = sql.get_record(TASK, task_id)
    assert task is not None
    assert (task.status, task.progress, task.record_version) == ("restarted", edited["progress"], 2)


@pytest.mark.parametrize("change", ["value", "tags"])
def test_an_archived_entry_changed_in_the_source_is_rewritten(
    migrated: tuple[str, str, LegacyFixture], tmp_path: Path, change: str
) -> None:
    source, target, fx = migrated
    ((category, name, text, tags),) = [a for a in fx.archived if a[0] == "mysteryCategory"]
    if change == "value":
        text = text.replace('"me"', '"me too"')
    else:
        tags = {**tags, "~plain": "changed"}
    put_entries(source, [(category, name, text, tags)])

    status, report = run_report(tmp_path, "--askar", source, "--to", target)
    assert status == 1
    assert written(report) == {category: 1}
    with open_storage("sqlalchemy", target) as sql:
        entry = sql.archive_get(category, [name])[name]
    assert (entry.value, dict(entry.tags)) == (text, tags)


# --- the row-by-row fallback -------------------------------------------------------------------
def test_a_record_refused_by_validation_rejects_only_itself(
    tmp_path: Path, vectors_dir: Path
) -> None:
    source = f"sqlite://{tmp_path}/legacy.db"
    fx = build_legacy_store(source, vectors_dir, 6)
    too_long = {
        "id": "long-status",
        "type": "sync_records",
        "status": "s" * 2000,  # converts, but an indexed field holds at most 1024 bytes
        "created": "2025-10-01T08:00:00+00:00",
        "progress": {},
    }
    put_entries(source, [("task", "long-status", json.dumps(too_long), None)])
    rejects = tmp_path / "rejects.jsonl"
    target = f"sqlite:///{tmp_path}/target.db"

    status, report = run_report(
        tmp_path, "--askar", source, "--to", target, "--rejects", str(rejects)
    )
    assert status == 1
    reasons = {
        (r["category"], r["name"]): r["reason"]
        for r in map(json.loads, rejects.read_text().splitlines())
    }
    assert reasons[("task", "long-status")] == (
        "failed validation: status: is 2000 bytes, the limit is 1024"
    )
    assert report["categories"]["task"]["rejected"] == 2  # with the fixture's bad-task
    assert report["categories"]["task"]["written"] == len(fx.tasks)  # same batch, written
    with open_storage("sqlalchemy", target) as sql:
        assert {t.task_id for t in sql.list_records(TASK)} == {t for t, _ in fx.tasks}


# --- reject reasons -----------------------------------------------------------------------------
def _log_text(vectors_dir: Path, copy: int, client: str, **change: Any) -> tuple[str, Any]:
    """A valid legacy log (JSON text) for client "ns:id", and its DID."""
    namespace, identifier = client.split(":")
    did = make_did(load_vectors(vectors_dir)[0], copy, "example.org", namespace, identifier)
    return json.dumps(did.logs), did


def legacy_rejects(vectors_dir: Path) -> dict[tuple[str, str], tuple[str | bytes, str]]:
    """(category, name) -> (value as stored, the exact reject reason expected)."""
    good_log, good = _log_text(vectors_dir, 1, "ok:one")
    _, other = _log_text(vectors_dir, 2, "ok:two")
    wrong_scid = json.loads(good_log)
    wrong_scid[-1]["state"]["id"] = other.did
    flagged = json.loads(good_log)
    flagged[-1]["parameters"]["deactivated"] = "yes"
    resource = {
        "id": f"{good.did}/resources/z1",
        "metadata": {"resourceId": "z1", "resourceType": "x"},
    }
    return {
        ("logEntries", "ok:one"): (good_log, ""),
        ("logEntries", "dup:one"): (
            good_log,
            f"re-homed log: stored under 'dup:one' but its DID {good.did!r} is at 'ok:one'",
        ),
        ("logEntries", "bad:empty"): ("[]", "logEntries value is an empty log"),
        ("logEntries", "bad:object"): (
            '{"a": 1}',
            "logEntries value must be a JSON array, got dict",
        ),
        ("logEntries", "bad:line"): ("[1]", "log line 1 must be a JSON object, got int"),
        ("logEntries", "bad:scid"): (
            json.dumps(wrong_scid),
            f"DID {other.did!r} does not carry the log's scid {good.scid!r}",
        ),
        ("logEntries", "bad:flag"): (
            json.dumps(flagged),
            "parameters.deactivated must be a bool, got 'yes'",
        ),
        ("witnessFile", "ok:one"): (
            '{"not": "a list"}',
            "witnessFile value must be a JSON array, got dict",
        ),
        ("whois", "ok:one"): ("[]", "whois value must be a JSON object, got list"),
        ("resource", "r:noid"): ('{"content": 1}', "resource value has no id"),
        ("resource", "r:notype"): (
            json.dumps({**resource, "metadata": {"resourceId": "z1"}, "content": 1}),
            "resource metadata has no resourceType",
        ),
        ("resource", "r:nocontent"): (json.dumps(resource), "resource value has no content"),
        ("policy", "active"): ("[]", "policy value must be a JSON object, got list"),
        ("registry", "knownWitnesses"): (
            '{"meta": {}}',
            "registry.registry must be a JSON object, got NoneType",
        ),
        ("task", "t:nostatus"): ('{"type": "x"}', "task value needs string type and status"),
        ("task", "t:message"): (
            '{"type": "x", "status": "y", "message": 3}',
            "task message must be a string, got int",
        ),
        ("tailsFile", "t:binary"): (
            b"\xff\xfe\x00",
            "value is not UTF-8 text; archived as base64",
        ),
        ("tailsFile", "t:nul"): ('"a\u0000b"', "value contains NUL; archived as base64"),
    }


def project_rejects() -> dict[tuple[str, str], tuple[str | bytes, str]]:
    task = {"task_id": "t-other", "task_type": "x", "status": "y"}
    return {
        ("webvh:task", "t-list"): ("[1]", "value must be a JSON object, got list"),
        ("webvh:task", "t-json"): ("{not json", "invalid JSON: "),
        ("webvh:task", "t-fields"): (
            '{"task_id": "t-fields"}',
            "value is not a Task: ",
        ),
        ("webvh:task", "t-name"): (json.dumps(task), "task_id 't-other' differs from entry name"),
    }


@pytest.mark.parametrize("layout", ["legacy", "project"])
def test_every_reject_names_its_reason(tmp_path: Path, vectors_dir: Path, layout: str) -> None:
    cases = legacy_rejects(vectors_dir) if layout == "legacy" else project_rejects()
    source = f"sqlite://{tmp_path}/{layout}.db"
    put_entries(source, [(c, n, v, None) for (c, n), (v, _) in cases.items()], recreate=True)
    rejects = tmp_path / "rejects.jsonl"

    status = cli("--askar", source, "--to", f"sqlite:///{tmp_path}/t.db", "--rejects", str(rejects))
    assert status == 1
    got = {
        (r["category"], r["name"]): r["reason"]
        for r in map(json.loads, rejects.read_text().splitlines())
    }
    expected = {key: reason for key, (_, reason) in cases.items() if reason}
    assert set(got) == set(expected)
    for key, reason in expected.items():
        if reason.endswith(": "):
            assert got[key].startswith(reason), (key, got[key])  # then a library's words
        else:
            assert got[key] == reason, key


def test_missing_vectors_fail_under_ci_and_skip_elsewhere(tmp_path: Path) -> None:
    missing = tmp_path / "no-vectors"
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        find_vectors(missing, env={"CI": "true"})
    with pytest.raises(pytest.skip.Exception):
        find_vectors(missing, env={})
    assert find_vectors(tmp_path, env={"CI": "true"}) == tmp_path
