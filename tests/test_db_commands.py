"""`storage-core db ...` from this checkout, on SQLite and PostgreSQL (the installed-wheel
run is in test_packaging.py): the packaged revisions, the library's own configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage_core import open_storage
from tests.pg import PgServer
from tests.test_cli_operator import assert_one_line_error, run_cli


@pytest.fixture
def fresh_pg(pg_server: PgServer) -> str:
    from tests.pg import require_pg

    require_pg(pg_server)
    return pg_server.sqlalchemy_url(pg_server.create_database("webvh_test_db_cli"))


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/db.sqlite"
    return str(request.getfixturevalue("fresh_pg"))


def test_upgrade_current_check_downgrade_stamp(database: str, tmp_path: Path) -> None:
    def db(*args: str):  # type: ignore[no-untyped-def]
        return run_cli("db", *args, cwd=tmp_path, DATABASE_URL=database)

    if database.startswith("postgresql"):
        assert db("current").stdout.strip() == "none (not provisioned)"
    assert db("upgrade").returncode == 0
    assert db("current").stdout.strip() == "0008_long_keys (head)"
    assert db("check").returncode == 0
    assert db("downgrade", "0001_initial").returncode == 0
    assert db("current").stdout.startswith("0001_initial (head is 0008_long_keys)")
    assert_one_line_error(db("check"), "not up to date")
    assert db("stamp", "head").returncode == 0
    differs = db("check")
    assert differs.returncode == 1
    assert "record_version" in differs.stderr and "Traceback" not in differs.stderr
    assert db("stamp", "0001_initial").returncode == 0
    assert run_cli("db", "--url", database, "upgrade", "head", cwd=tmp_path).returncode == 0
    with open_storage("sqlalchemy", database) as storage:
        storage.init_db()  # provision() agrees: already at head, nothing to do
        storage.create_task("t1", "sync_records", "started")
        assert storage.info()["schema_revision"] == "0008_long_keys"


def test_history_needs_no_database(tmp_path: Path) -> None:
    run = run_cli("db", "history", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1].startswith("<base> -> 0001_initial")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("action", ["current", "check", "downgrade"])
def test_read_only_actions_create_no_sqlite_file(tmp_path: Path, action: str) -> None:
    args = [action, "base"] if action == "downgrade" else [action]
    run = run_cli("db", *args, cwd=tmp_path)
    assert_one_line_error(run, "no database at app.db", "nothing was created")
    assert list(tmp_path.iterdir()) == []


def test_failures_are_one_masked_line(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("db", "--url", "nope", "upgrade", cwd=tmp_path), "url:")
    unreachable = "postgresql+psycopg2://postgres:hunter2@127.0.0.1:1/x"
    run = run_cli("db", "upgrade", cwd=tmp_path, DATABASE_URL=unreachable)
    assert_one_line_error(run, "db upgrade")
    assert "hunter2" not in run.stderr
    run = run_cli("db", "--url", f"sqlite:///{tmp_path}/a.db", "stamp", "nosuch", cwd=tmp_path)
    assert_one_line_error(run, "nosuch")
