"""Operator safety of migrate-askar, through the real `storage-core` console script in a
subprocess (issue 12): --to required and never empty, the same store or the other
program's store refused before anything is written (also by `init-db`), the going-live
guard, a dry run that creates nothing, output paths checked first, --quiet, Ctrl-C."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aries_askar import Store

from storage_core import kinds as K
from storage_core.manager import open_storage
from tests.legacy_store import LegacyFixture, build_legacy_store, find_vectors, put_entries
from tests.pg import PgServer, require_pg
from webvh_storage_migrate.safety import Where, locate

CLI = str(Path(sys.executable).with_name("storage-core"))


@pytest.fixture(scope="module")
def vectors_dir() -> Path:
    return find_vectors()


@pytest.fixture
def legacy(tmp_path: Path, vectors_dir: Path) -> tuple[str, LegacyFixture]:
    uri = f"sqlite://{tmp_path}/legacy.db"
    return uri, build_legacy_store(uri, vectors_dir, 6, extras=True, corrupt=False)


def storage_core(
    *argv: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "STORAGE_BACKEND")
    }
    environment.update(env or {})
    return subprocess.run(
        [CLI, *argv], cwd=cwd, env=environment, capture_output=True, text=True, timeout=300
    )


def migrate(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return storage_core("migrate-askar", *argv, cwd=cwd)


def one_error_line(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert lines and "Traceback" not in result.stderr, result.stderr
    assert len([line for line in lines if not line.startswith("usage:")]) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tables(path: Path) -> set[str]:
    db = sqlite3.connect(path)
    try:
        return {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        db.close()


# --- --to ----------------------------------------------------------------------------------
def test_to_is_required(legacy, tmp_path: Path) -> None:
    source, _ = legacy
    result = migrate("--askar", source, cwd=tmp_path)
    assert result.returncode == 2
    one_error_line(result, "--to")
    assert not (tmp_path / "app.db").exists()


def test_an_empty_to_is_refused_and_nothing_is_written(legacy, tmp_path: Path) -> None:
    """`--to "$DATABASE_URL"` with the variable unset used to migrate ./app.db into itself."""
    source, _ = legacy
    before = digest(tmp_path / "legacy.db")
    result = migrate("--askar", source, "--to", "", cwd=tmp_path)
    assert result.returncode == 2
    one_error_line(result, "--to is empty")
    assert not (tmp_path / "app.db").exists() and digest(tmp_path / "legacy.db") == before


@pytest.mark.parametrize("spelling", ["sqlite:///{path}", "sqlite:///./legacy.db"])
def test_the_same_store_on_both_sides_is_refused(legacy, tmp_path: Path, spelling: str) -> None:
    source, _ = legacy
    path = tmp_path / "legacy.db"
    before = digest(path)
    result = migrate("--askar", source, "--to", spelling.format(path=path), cwd=tmp_path)
    assert result.returncode == 2
    one_error_line(result, "same store")
    assert digest(path) == before and tables(path) == {"config", "profiles", "items", "items_tags"}


def test_the_same_postgres_database_on_both_sides_is_refused(
    tmp_path: Path, pg_server: PgServer
) -> None:
    require_pg(pg_server)
    name = pg_server.create_database("mig_same")
    askar = pg_server.askar_uri(name).replace("127.0.0.1", "localhost")
    result = migrate("--askar", askar, "--to", pg_server.sqlalchemy_url(name), cwd=tmp_path)
    assert result.returncode == 2
    one_error_line(result, "same store", f"database '{name}' on 127.0.0.1:5432")
    assert "@" not in result.stderr.split("same store")[1]  # no credentials printed


@pytest.mark.parametrize(
    ("url", "askar", "where"),
    [
        ("sqlite:///:memory:", False, None),
        ("sqlite://:memory:", True, None),
        ("sqlite:///rel.db", False, Where(file=Path("rel.db").absolute())),
        ("sqlite://rel.db", True, Where(file=Path("rel.db").absolute())),
        ("sqlite:////abs/x.db", False, Where(file=Path("/abs/x.db"))),
        ("sqlite:///abs/x.db", True, Where(file=Path("/abs/x.db"))),
        ("postgres://u:p@localhost/db", True, Where(server=("127.0.0.1", 5432, "db"))),
        ("postgresql+psycopg2://u@h:6543/db?x=1", False, Where(server=("h", 6543, "db"))),
        ("memory://", False, None),
        ("no-scheme", False, None),
    ],
)
def test_where_a_store_lives(url: str, askar: bool, where: Where | None) -> None:
    assert locate(url, askar=askar) == where


def test_a_sql_target_holding_an_askar_store_is_refused(legacy, tmp_path: Path) -> None:
    source, _ = legacy
    other = tmp_path / "other-askar.db"
    build_legacy_store(f"sqlite://{other}", find_vectors(), 1, extras=False, corrupt=False)
    before = digest(other)
    for argv in (("--to", f"sqlite:///{other}"), ("--to", f"sqlite:///{other}", "--dry-run")):
        result = migrate("--askar", source, *argv, cwd=tmp_path)
        assert result.returncode == 2
        one_error_line(result, "holds an Askar store")
        assert digest(other) == before


def test_an_askar_target_holding_a_sql_store_is_refused(legacy, tmp_path: Path) -> None:
    source, _ = legacy
    sql = tmp_path / "sql.db"
    with open_storage("sqlalchemy", f"sqlite:///{sql}") as store:
        store.init_db()
    before = tables(sql)
    result = migrate(
        "--askar", source, "--to-backend", "askar", "--to", f"sqlite://{sql}", cwd=tmp_path
    )
    assert result.returncode == 2
    one_error_line(result, "holds a SQL store")
    assert tables(sql) == before
    # and the reverse run, whose Askar side is --askar
    result = migrate(
        "--reverse", "--askar", f"sqlite://{sql}", "--to", "sqlite:///x.db", cwd=tmp_path
    )
    assert result.returncode == 2 and tables(sql) == before


def test_init_db_refuses_an_askar_file(legacy, tmp_path: Path) -> None:
    path = tmp_path / "legacy.db"
    before = digest(path)
    result = storage_core("init-db", cwd=tmp_path, env={"DATABASE_URL": f"sqlite:///{path}"})
    assert result.returncode == 2
    one_error_line(result, "holds an Askar store")
    assert tables(path) == {"config", "profiles", "items", "items_tags"}
    assert digest(path) == before


def test_a_postgres_sql_target_holding_an_askar_store_is_refused(
    legacy, tmp_path: Path, pg_server: PgServer
) -> None:
    require_pg(pg_server)
    source, _ = legacy
    name = pg_server.create_database("mig_askar_in_sql")

    async def provision() -> None:
        store = await Store.provision(pg_server.askar_uri(name), "none", None)
        await store.close()

    asyncio.run(provision())
    result = migrate("--askar", source, "--to", pg_server.sqlalchemy_url(name), cwd=tmp_path)
    assert result.returncode == 2
    one_error_line(result, "holds an Askar store")
    engine = sa.create_engine(pg_server.sqlalchemy_url(name))
    try:
        assert "log_entries" not in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


# --- any target ----------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["askar-sqlite", "askar-postgres"])
def test_to_backend_askar_re_lays_a_legacy_store(
    legacy, tmp_path: Path, target: str, request: pytest.FixtureRequest
) -> None:
    from tests.test_migrate_askar import assert_target_matches

    source, fx = legacy
    if target == "askar-sqlite":
        url = f"sqlite://{tmp_path}/new-askar.db"
    else:
        server: PgServer = request.getfixturevalue("pg_server")
        require_pg(server)
        url = server.askar_uri(server.create_database("mig_to_askar"))
    result = migrate(
        "--askar", source, "--to-backend", "askar", "--to", url, "--verify", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "askar->askar" in result.stdout and "verify: OK" in result.stdout
    assert_target_matches(url, fx, "askar")


# --- going live ----------------------------------------------------------------------------
def report_of(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_a_rerun_after_going_live_keeps_the_newer_records(legacy, tmp_path: Path) -> None:
    source, fx = legacy
    target = f"sqlite:///{tmp_path}/live.db"
    assert migrate("--askar", source, "--to", target, cwd=tmp_path).returncode == 0
    grown, edited = fx.logs[0], fx.logs[1]
    new_line = {**grown.logs[-1], "versionId": "99-QmServerWrote"}
    with open_storage("sqlalchemy", target) as live:  # the new server writes
        live.update_log_entry(grown.scid, logs=[*grown.logs, new_line])
        live.update_record(K.WITNESS_FILE, edited.scid, witness_proofs=[{"versionId": "x"}])
        before = {spec.name: live.list_records(spec) for spec in (K.LOG_ENTRY, K.WITNESS_FILE)}

    report = tmp_path / "r.json"
    result = migrate(
        "--askar", source, "--to", target, "--verify", "--report", str(report), cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    data = report_of(report)
    assert data["totals"]["kept_newer"] == 2 and data["totals"]["written"] == 0
    assert data["categories"]["logEntries"]["kept_newer"] == 1
    assert data["categories"]["witnessFile"]["kept_newer"] == 1
    assert "kept-newer" in result.stdout
    with open_storage("sqlalchemy", target) as live:
        assert {s.name: live.list_records(s) for s in (K.LOG_ENTRY, K.WITNESS_FILE)} == before

    result = migrate(
        "--askar",
        source,
        "--to",
        target,
        "--overwrite-newer",
        "--report",
        str(report),
        cwd=tmp_path,
    )
    assert result.returncode == 0 and report_of(report)["totals"]["written"] == 2
    with open_storage("sqlalchemy", target) as live:
        log = live.get_log_entry(grown.scid)
        assert log is not None and log.logs == grown.logs  # rolled back, as asked


def test_a_location_the_new_server_gave_another_scid_is_not_overwritten(
    legacy, tmp_path: Path
) -> None:
    source, fx = legacy
    target = f"sqlite:///{tmp_path}/live.db"
    taken = fx.logs[0]
    with open_storage("sqlalchemy", target) as live:
        live.init_db()
        live.create_log_entry(
            scid="QmNewServerScid",
            did=taken.did.replace(taken.scid, "QmNewServerScid"),
            domain=taken.domain,
            namespace=taken.namespace,
            identifier=taken.identifier,
            logs=[{"versionId": "1-QmNew"}],
        )
    rejects = tmp_path / "rejects.jsonl"
    result = migrate(
        "--askar", source, "--to", target, "--rejects", str(rejects), "--verify", cwd=tmp_path
    )
    assert result.returncode == 1
    (line,) = [json.loads(x) for x in rejects.read_text().splitlines()]
    assert (line["category"], line["name"]) == ("logEntries", taken.client_id)
    assert "second SCID" in line["reason"] and "QmNewServerScid" in line["reason"]
    assert "verify: OK" in result.stdout
    with open_storage("sqlalchemy", target) as live:
        assert live.get_log_entry(taken.scid) is None
        kept = live.archive_get("logEntries", [taken.client_id])[taken.client_id]
        assert json.loads(kept.value) == taken.logs


# --- dry run, output paths, quiet ----------------------------------------------------------
@pytest.mark.parametrize("backend", ["sqlalchemy", "askar"])
def test_a_dry_run_creates_nothing(legacy, tmp_path: Path, backend: str) -> None:
    source, _ = legacy
    path = tmp_path / "never.db"
    url = f"sqlite:///{path}" if backend == "sqlalchemy" else f"sqlite://{path}"
    result = migrate(
        "--askar", source, "--to-backend", backend, "--to", url, "--dry-run", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "dry run" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["legacy.db"]


@pytest.mark.parametrize("flag", ["--rejects", "--report"])
@pytest.mark.parametrize("where", ["missing-dir/out.json", "."])
def test_unwritable_output_paths_stop_the_run_before_it_starts(
    legacy, tmp_path: Path, flag: str, where: str
) -> None:
    source, _ = legacy
    target = tmp_path / "t.db"
    result = migrate("--askar", source, "--to", f"sqlite:///{target}", flag, where, cwd=tmp_path)
    assert result.returncode == 2
    one_error_line(result, flag, where)
    assert result.stdout == "" and not target.exists()


def test_quiet_prints_one_summary_line_and_the_errors(legacy, tmp_path: Path) -> None:
    source, _ = legacy
    put_entries(source, [("task", "t-bad", "not json", None)])
    target = f"sqlite:///{tmp_path}/t.db"
    result = migrate("--askar", source, "--to", target, "--quiet", cwd=tmp_path)
    assert result.returncode == 1
    (line,) = result.stdout.splitlines()
    assert line.startswith("askar->sqlalchemy: read ") and "rejected 1" in line
    assert result.stderr == ""
    failed = migrate(
        "--askar", f"sqlite://{tmp_path}/none.db", "--to", target, "--quiet", cwd=tmp_path
    )
    assert failed.returncode == 2
    one_error_line(failed, "migrate-askar: error:")
    assert len(failed.stdout.splitlines()) == 1


def test_skipped_categories_show_no_rate(legacy, tmp_path: Path) -> None:
    source, _ = legacy
    result = migrate("--askar", source, "--to", f"sqlite:///{tmp_path}/t.db", cwd=tmp_path)
    (row,) = [line for line in result.stdout.splitlines() if line.startswith("didRecord")]
    assert row.split()[-1] == "-"
    (logs,) = [line for line in result.stdout.splitlines() if line.startswith("logEntries")]
    assert logs.split()[-1].replace(",", "").isdigit()


# --- Ctrl-C ----------------------------------------------------------------------------------
def test_ctrl_c_stops_cleanly_and_a_rerun_completes(tmp_path: Path, vectors_dir: Path) -> None:
    source = f"sqlite://{tmp_path}/big.db"
    fx = build_legacy_store(
        source, vectors_dir, 400, resources_every=0, extras=False, corrupt=False
    )
    target = f"sqlite:///{tmp_path}/t.db"
    report = tmp_path / "r.json"
    process = subprocess.Popen(
        [
            CLI,
            "migrate-askar",
            "--askar",
            source,
            "--to",
            target,
            "--batch-size",
            "1",
            "--report",
            str(report),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:  # wait until the copy of logEntries has started
        if line.startswith("migrate logEntries"):
            break
    deadline = time.monotonic() + 60
    while not report.exists() and time.monotonic() < deadline:
        if _target_rows(tmp_path / "t.db") > 0:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, (out, err)
    assert "Traceback" not in err and "interrupted" in err
    assert "logEntries: interrupted after" in out
    data = report_of(report)
    assert data["interrupted"] and data["categories"]["logEntries"]["interrupted"]
    assert data["categories"]["logEntries"]["rate"] is None
    assert data["categories"]["logEntries"]["read"] < len(fx.logs)

    result = migrate("--askar", source, "--to", target, "--verify", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    with open_storage("sqlalchemy", target) as sql:
        assert sql.count_records(K.LOG_ENTRY) == len(fx.logs)


def _target_rows(path: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return int(db.execute("SELECT count(*) FROM log_entries").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0
