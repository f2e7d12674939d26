"""migrate-askar on real stores: legacy Askar (SQLite/PostgreSQL) -> SQL (SQLite/PostgreSQL).

Expectations are computed here from what tests/legacy_store.py wrote, never from the
migration's own converters.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from storage_core import kinds as K
from storage_core.codec import record_to_dict
from storage_core.interface import Capability
from storage_core.manager import open_storage
from storage_core.records import (
    LogEntry,
    Policy,
    Registry,
    Resource,
    Task,
    WhoisPresentation,
    WitnessFile,
)
from tests.legacy_store import LegacyFixture, build_legacy_store, find_vectors
from tests.pg import PgServer, require_pg
from webvh_storage_askar.config import AskarConfig
from webvh_storage_migrate.cli import main
from webvh_storage_migrate.legacy import Rejected, parse_server_did
from webvh_storage_migrate.runner import Runner, RunOptions, bulk_load_options

ROOT = Path(__file__).resolve().parent.parent
KINDS_MIGRATED = (K.LOG_ENTRY, K.WITNESS_FILE, K.WHOIS, K.RESOURCE, K.TASK, K.POLICY, K.REGISTRY)


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --- expectations, from the fixture -----------------------------------------------------
def expected_records(fx: LegacyFixture) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {spec.name: {} for spec in KINDS_MIGRATED}
    clients = {}
    for d in fx.logs:
        clients[d.client_id] = d.scid
        out["log_entry"][d.scid] = LogEntry(
            scid=d.scid,
            did=d.did,
            domain=d.domain,
            namespace=d.namespace,
            identifier=d.identifier,
            logs=d.logs,
            deactivated=d.deactivated,
            created_at=ts(d.created),
            updated_at=ts(d.updated),
        )
        if d.witness_stored is not None:
            out["witness_file"][d.scid] = WitnessFile(scid=d.scid, witness_proofs=d.witness_stored)
        if d.whois is not None:
            out["whois"][d.scid] = WhoisPresentation(scid=d.scid, presentation=d.whois)
    for _name, value, _tags in fx.resources:
        did = value["id"].split("/")[0]
        created = value["proof"].get("created")
        out["resource"][value["metadata"]["resourceId"]] = Resource(
            resource_id=value["id"].rsplit("/", 1)[-1].split(".")[0],
            scid=did.split(":")[2],
            did=did,
            resource_type=value["metadata"]["resourceType"],
            resource_name=value["metadata"].get("resourceName", ""),
            content=value["content"],
            metadata=value["metadata"],
            proof=value["proof"],
            links=value.get("links"),
            envelope={
                k: None if k in ("content", "metadata", "proof", "links") else v
                for k, v in value.items()
            },
            created_at=ts(created) if created else None,
            updated_at=ts(created) if created else None,
        )
    p = fx.policy
    out["policy"]["active"] = Policy(
        policy_id="active",
        version=p["version"],
        witness=p["witness"],
        watcher=p["watcher"],
        portability=p["portability"],
        prerotation=p["prerotation"],
        endorsement=p["endorsement"],
        policy_data=p,
    )
    out["registry"]["knownWitnesses"] = Registry(
        registry_id="knownWitnesses",
        registry_type="knownWitnesses",
        registry_data=fx.registry["registry"],
        meta=fx.registry["meta"],
    )
    for task_id, value in fx.tasks:
        out["task"][task_id] = Task(
            task_id=task_id,
            task_type=value["type"],
            status=value["status"],
            progress=value["progress"],
            message=value.get("message"),
            created_at=ts(value["created"]),
            updated_at=ts(value["updated"]),
        )
    return out


def as_text(value: Any) -> str:
    """JSON text, key order included: documents must come out byte for byte."""
    return json.dumps(value, ensure_ascii=False)


def fields_without_unknown_times(spec: K.KindSpec, record: Any, expected: Any) -> dict:
    data = record_to_dict(spec, record)
    if spec.timestamps and expected.created_at is None:  # "now" at first write
        data.pop("created_at")
        data.pop("updated_at")
    return data


def assert_target_matches(
    url: str,
    fx: LegacyFixture,
    backend: str = "sqlalchemy",
    extra: dict[str, dict[str, Any]] | None = None,
) -> None:
    """The target holds exactly the fixture's records (plus `extra`: kind -> key ->
    record) and its archive exactly `fx.archived`."""
    expected = expected_records(fx)
    for kind, records in (extra or {}).items():
        expected[kind].update(records)
    with open_storage(backend, url) as target:
        for spec in KINDS_MIGRATED:
            got = {spec.key_of(r): r for r in target.list_records(spec)}
            assert set(got) == set(expected[spec.name]), spec.name
            for key, want in expected[spec.name].items():
                have = got[key]
                for name in spec.all_fields:
                    if name in ("created_at", "updated_at") and getattr(want, name) is None:
                        assert getattr(have, name) is not None
                        continue
                    assert getattr(have, name) == getattr(want, name), (spec.name, key, name)
                    ftype = spec.field_types.get(name)
                    if ftype is not None and ftype.is_json:  # byte for byte: key order too
                        assert as_text(getattr(have, name)) == as_text(getattr(want, name)), (
                            spec.name,
                            key,
                            name,
                        )
        rows = [(e.category, e.name, e.value, dict(e.tags)) for e in target.archive_stream()]
    want_rows = sorted((c, n, v, t) for c, n, v, t in fx.archived)
    assert rows == want_rows


def run_cli(*argv: str) -> int:
    return main(["--quiet", *argv])


# --- stores -------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    return find_vectors()


@pytest.fixture
def pg(pg_server: PgServer) -> PgServer:
    require_pg(pg_server)
    return pg_server


def askar_uri(kind: str, tmp_path: Path, request: pytest.FixtureRequest, tag: str) -> str:
    if kind == "sqlite":
        return f"sqlite://{tmp_path}/{tag}.db"
    server: PgServer = request.getfixturevalue("pg")
    return server.askar_uri(server.create_database(f"mig_{tag}"), max_connections="5")


def sql_url(kind: str, tmp_path: Path, request: pytest.FixtureRequest, tag: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/{tag}.db"
    server: PgServer = request.getfixturevalue("pg")
    return server.sqlalchemy_url(server.create_database(f"mig_{tag}"))


@pytest.fixture
def legacy_sqlite(tmp_path: Path, vectors_dir: Path) -> tuple[str, LegacyFixture]:
    uri = f"sqlite://{tmp_path}/legacy.db"
    return uri, build_legacy_store(uri, vectors_dir, 12)


# --- the migration ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("source_kind", "target_kind"),
    [
        ("sqlite", "sqlite"),
        ("sqlite", "postgres"),
        ("postgres", "sqlite"),
        ("postgres", "postgres"),
    ],
)
def test_migrates_every_record_and_is_idempotent(
    source_kind: str,
    target_kind: str,
    tmp_path: Path,
    vectors_dir: Path,
    request: pytest.FixtureRequest,
) -> None:
    source = askar_uri(source_kind, tmp_path, request, "legacy")
    fx = build_legacy_store(source, vectors_dir, 12)
    target = sql_url(target_kind, tmp_path, request, "target")
    report_path, rejects_path = tmp_path / "report.json", tmp_path / "rejects.jsonl"

    status = run_cli(
        "--askar",
        source,
        "--to",
        target,
        "--batch-size",
        "4",
        "--report",
        str(report_path),
        "--rejects",
        str(rejects_path),
        "--verify",
    )

    assert status == 1  # the corrupt entries were rejected
    assert_target_matches(target, fx)
    rejects = [json.loads(line) for line in rejects_path.read_text().splitlines()]
    assert {(r["category"], r["name"]) for r in rejects} == set(fx.rejects)
    for r in rejects:
        assert fx.rejects[(r["category"], r["name"])] in r["reason"]
    report = json.loads(report_path.read_text())
    assert report["layout"] == "legacy" and report["discovered_categories"] is True
    assert report["verify"]["ok"] is True
    assert report["totals"]["read"] == fx.entries
    assert report["totals"]["rejected"] == len(fx.rejects)
    cats = report["categories"]
    for name, stats in cats.items():
        assert stats["read"] == (
            stats["written"] + stats["unchanged"] + stats["rejected"] + stats["skipped"]
        ), name
    assert cats["logEntries"]["written"] == len(fx.logs)
    assert cats["didRecord"]["skipped"] == fx.skipped["didRecord"]
    assert cats["resourceRecord"]["skipped"] == fx.skipped["resourceRecord"]
    assert set(report["archived_categories"]) == {"tailsFile", "didDocument", "mysteryCategory"}
    assert report["skipped_categories"]["didRecord"]["reason"]
    # the record holds the whole document: only the rejected resource is archived
    assert cats["resource"]["archived"] == sum(1 for c, _ in fx.rejects if c == "resource")
    assert cats["witnessFile"]["archived"] == 1  # the orphan

    second = tmp_path / "second.json"
    assert run_cli("--askar", source, "--to", target, "--report", str(second)) == 1
    totals = json.loads(second.read_text())["totals"]
    assert totals["written"] == 0
    assert totals["unchanged"] == report["totals"]["written"]
    assert_target_matches(target, fx)


#: A file-backed store URL per backend a forward run can write to.
TARGET_URLS = {"sqlalchemy": "sqlite:///{dir}/target.db", "askar": "sqlite://{dir}/target.askar"}


@pytest.mark.parametrize("backend", sorted(TARGET_URLS))
def test_the_runner_writes_to_any_backend_with_an_archive(
    legacy_sqlite, tmp_path: Path, backend: str
) -> None:
    """Nothing in the runner is particular to the SQL backend: a backend with the archive
    capability receives the same records and archive entries."""
    source, fx = legacy_sqlite
    url = TARGET_URLS[backend].format(dir=tmp_path)
    with open_storage(backend, url) as probe:
        if Capability.ARCHIVE not in probe.capabilities:
            pytest.skip(f"backend {backend!r} keeps no archive (yet)")
    runner = Runner(RunOptions(AskarConfig(uri=source), url, target_backend=backend, quiet=True))
    try:
        report = runner.run()
    finally:
        runner.close()
    assert report.error is None and report.direction == f"askar->{backend}"
    assert report.rejected == len(fx.rejects)
    assert_target_matches(url, fx, backend)


def test_sqlite_tuning_is_only_for_the_sql_backend_on_sqlite() -> None:
    tuned = {"sqlite_synchronous": "NORMAL", "sqlite_wal_autocheckpoint": 10_000}
    assert bulk_load_options("sqlalchemy", "sqlite:////srv/app.db") == tuned
    assert bulk_load_options("sqlalchemy", "sqlite+pysqlite:///app.db") == tuned
    assert bulk_load_options("sqlalchemy", "postgresql+psycopg2://u:p@db/webvh") == {}
    assert bulk_load_options("askar", "sqlite://app.db") == {}
    assert bulk_load_options("sqlalchemy", None) == {}


def test_dry_run_writes_nothing(legacy_sqlite, tmp_path: Path) -> None:
    source, fx = legacy_sqlite
    target = f"sqlite:///{tmp_path}/target.db"
    with open_storage("sqlalchemy", target) as sql:
        sql.init_db()
    report_path = tmp_path / "dry.json"
    assert (
        run_cli("--askar", source, "--to", target, "--dry-run", "--report", str(report_path)) == 1
    )
    report = json.loads(report_path.read_text())
    assert report["dry_run"] is True
    assert report["totals"]["rejected"] == len(fx.rejects)
    assert report["categories"]["logEntries"]["written"] == len(fx.logs)  # would write
    with open_storage("sqlalchemy", target) as sql:
        assert all(sql.count_records(spec) == 0 for spec in KINDS_MIGRATED)
        assert sql.archive_count() == 0


def test_dry_run_on_an_empty_database_creates_no_schema(legacy_sqlite, tmp_path: Path) -> None:
    source, _fx = legacy_sqlite
    db = tmp_path / "untouched.db"
    assert run_cli("--askar", source, "--to", f"sqlite:///{db}", "--dry-run") == 1
    if db.exists():
        tables = sqlite3.connect(db).execute("select name from sqlite_master").fetchall()
        assert tables == []


def test_verify_catches_a_record_altered_after_migration(legacy_sqlite, tmp_path: Path) -> None:
    source, fx = legacy_sqlite
    target = f"sqlite:///{tmp_path}/target.db"
    run_cli("--askar", source, "--to", target)
    assert run_cli("--askar", source, "--to", target, "--verify-only") == 0
    task_id = fx.tasks[0][0]
    engine = sa.create_engine(target)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE tasks SET status = 'tampered' WHERE task_id = :t"), {"t": task_id}
        )
        conn.execute(sa.text("DELETE FROM askar_archive WHERE category = 'tailsFile'"))
    engine.dispose()
    report_path = tmp_path / "verify.json"
    assert (
        run_cli("--askar", source, "--to", target, "--verify-only", "--report", str(report_path))
        == 1
    )
    verify = json.loads(report_path.read_text())["verify"]
    assert verify["ok"] is False
    problems = {(m["category"], m["name"]): m["problem"] for m in verify["mismatches"]}
    assert "differs" in problems[("task", task_id)]
    assert verify["categories"]["task"]["different"] == 1
    assert (
        verify["categories"]["task"]["source_digest"]
        != (verify["categories"]["task"]["target_digest"])
    )
    assert any(c == "tailsFile" for c, _ in problems)


def test_strict_stops_at_the_first_bad_entry(legacy_sqlite, tmp_path: Path) -> None:
    source, _fx = legacy_sqlite
    rejects = tmp_path / "rejects.jsonl"
    status = run_cli(
        "--askar",
        source,
        "--to",
        f"sqlite:///{tmp_path}/t.db",
        "--strict",
        "--rejects",
        str(rejects),
    )
    assert status == 1
    assert len(rejects.read_text().splitlines()) == 1


def test_whois_alone_resolves_scids_from_the_logs(legacy_sqlite, tmp_path: Path) -> None:
    source, fx = legacy_sqlite
    target = f"sqlite:///{tmp_path}/t.db"
    assert run_cli("--askar", source, "--to", target, "--categories", "whois") == 1
    with open_storage("sqlalchemy", target) as sql:
        assert sql.count_records(K.LOG_ENTRY) == 0
        got = {w.scid: w.presentation for w in sql.list_records(K.WHOIS)}
    assert got == {d.scid: d.whois for d in fx.logs if d.whois}


def test_reverse_round_trip(legacy_sqlite, tmp_path: Path) -> None:
    source, fx = legacy_sqlite
    first = f"sqlite:///{tmp_path}/first.db"
    run_cli("--askar", source, "--to", first)
    # make a version and a timestamp differ from what a conversion would produce
    with open_storage("sqlalchemy", first) as sql:
        sql.update_record(K.TASK, fx.tasks[0][0], status="finished")
    back = f"sqlite://{tmp_path}/back.db"
    assert run_cli("--reverse", "--askar", back, "--to", first, "--verify") == 0
    second = f"sqlite:///{tmp_path}/second.db"
    report_path = tmp_path / "again.json"
    # rejected entries were archived verbatim, so the reverse run put them back as they
    # were: the second forward run rejects (and archives) exactly them again
    assert run_cli("--askar", back, "--to", second, "--verify", "--report", str(report_path)) == 1
    again = json.loads(report_path.read_text())
    assert again["layout"] == "mixed"
    assert again["totals"]["rejected"] == len(fx.rejects) and again["verify"]["ok"]
    with open_storage("sqlalchemy", first) as a, open_storage("sqlalchemy", second) as b:
        for spec in KINDS_MIGRATED:
            left = {spec.key_of(r): as_text(record_to_dict(spec, r)) for r in a.list_records(spec)}
            right = {spec.key_of(r): as_text(record_to_dict(spec, r)) for r in b.list_records(spec)}
            assert left == right, spec.name
        assert list(a.archive_stream()) == list(b.archive_stream())


def test_resume_after_sigkill_equals_an_uninterrupted_run(tmp_path: Path, vectors_dir) -> None:
    source = f"sqlite://{tmp_path}/big.db"
    fx = build_legacy_store(source, vectors_dir, 500, resources_every=2)
    killed_db = tmp_path / "killed.db"
    cmd = [
        sys.executable,
        str(ROOT / "tools" / "migrate_askar.py"),
        "--quiet",
        "--askar",
        source,
        "--to",
        f"sqlite:///{killed_db}",
        "--batch-size",
        "2",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        written = 0
        while time.monotonic() < deadline and proc.poll() is None:
            written = _count(killed_db, "log_entries")
            if written > 0:
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert 0 < _count(killed_db, "log_entries") < len(fx.logs)  # really cut mid-way

    resumed = subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=120)
    assert resumed.returncode == 1, resumed.stderr  # 1: the corrupt entries
    clean = f"sqlite:///{tmp_path}/clean.db"
    assert run_cli("--askar", source, "--to", clean) == 1
    assert_target_matches(f"sqlite:///{killed_db}", fx)
    expected = expected_records(fx)
    with (
        open_storage("sqlalchemy", f"sqlite:///{killed_db}") as a,
        open_storage("sqlalchemy", clean) as b,
    ):
        for spec in KINDS_MIGRATED:
            want = expected[spec.name]
            left = {
                spec.key_of(r): fields_without_unknown_times(spec, r, want[spec.key_of(r)])
                for r in a.list_records(spec)
            }
            right = {
                spec.key_of(r): fields_without_unknown_times(spec, r, want[spec.key_of(r)])
                for r in b.list_records(spec)
            }
            assert left == right, spec.name
        assert list(a.archive_stream()) == list(b.archive_stream())


def _count(db: Path, table: str) -> int:
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.05)
        try:
            return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def test_storage_core_subcommand(legacy_sqlite, tmp_path: Path) -> None:
    from storage_core.cli import main as storage_core_main

    source, fx = legacy_sqlite
    target = f"sqlite:///{tmp_path}/t.db"
    assert storage_core_main(["migrate-askar", "--quiet", "--askar", source, "--to", target]) == 1
    assert_target_matches(target, fx)


def test_storage_core_help_lists_the_command_without_importing_aries_askar() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from storage_core.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
        "assert 'migrate-askar' in out.getvalue(), out.getvalue()\n"
        "assert 'aries_askar' not in sys.modules, 'imported aries_askar'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_secrets_are_never_printed(legacy_sqlite, tmp_path: Path, capsys, monkeypatch) -> None:
    source, _fx = legacy_sqlite
    monkeypatch.setenv("ASKAR_KEY", "s3cr3t-key-value")
    target = f"sqlite:///{tmp_path}/t.db"
    status = main(["--askar", source, "--askar-key-method", "raw", "--to", target])
    assert status == 2  # wrong key method for this store
    out = capsys.readouterr()
    assert "s3cr3t-key-value" not in out.out + out.err
    assert "error" in out.err


def test_a_keyed_store_migrates_with_its_key_and_never_prints_it(
    legacy_sqlite, tmp_path: Path, capsys, monkeypatch
) -> None:
    import asyncio

    from aries_askar import Store

    source, fx = legacy_sqlite
    key = Store.generate_raw_key(b"k" * 32)

    async def rekey() -> None:
        store = await Store.open(source, "none", None)
        await store.rekey("raw", key)
        await store.close()

    asyncio.run(rekey())
    monkeypatch.setenv("ASKAR_KEY", key)
    target = f"sqlite:///{tmp_path}/t.db"
    status = main(["--askar", source, "--askar-key-method", "raw", "--to", target, "--verify"])
    assert status == 1  # the corrupt entries, nothing else
    assert_target_matches(target, fx)
    out = capsys.readouterr()
    assert key not in out.out + out.err
    assert "verify: OK" in out.out


def test_postgres_uri_password_is_masked(tmp_path: Path, capsys) -> None:
    status = main(
        [
            "--askar",
            "postgres://user:hunter2@127.0.0.1:1/none?connect_timeout=1",
            "--to",
            f"sqlite:///{tmp_path}/t.db",
            "--quiet",
        ]
    )
    assert status == 2
    out = capsys.readouterr()
    assert "hunter2" not in out.out + out.err


@pytest.mark.parametrize(
    ("did", "parts"),
    [
        ("did:webvh:QmA:example.org:ns:id", ("QmA", "example.org", "ns", "id")),
        ("did:webvh:QmA:localhost%3A8000:ns:id", ("QmA", "localhost:8000", "ns", "id")),
    ],
)
def test_server_did_parsing(did: str, parts: tuple[str, ...]) -> None:
    parsed = parse_server_did(did)
    assert (parsed.scid, parsed.domain, parsed.namespace, parsed.identifier) == parts


@pytest.mark.parametrize(
    "did",
    ["did:webvh:QmA:example.org", "did:web:x:a:b", "", None, "did:webvh:QmA:example.org:a:b:c"],
)
def test_unparseable_dids_are_rejected(did: Any) -> None:
    with pytest.raises(Rejected):
        parse_server_did(did)
