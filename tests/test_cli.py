"""`storage-core` and `tools/init_db.py`, run the way an operator runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from storage_core.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_init_db_then_info_on_a_sqlite_file(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/cli.db"
    assert main(["init-db", "--url", url]) == 0
    assert "provisioned sqlalchemy store" in capsys.readouterr().out
    assert main(["info", "--url", url, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["backend"] == "sqlalchemy"
    assert info["schema_revision"]
    assert info["rows"]["log_entry"] == 0
    assert set(info["rows"]) >= {"log_entry", "resource", "task", "policy", "registry"}


def test_info_counts_rows(tmp_path, capsys):
    from storage_core import open_storage

    url = f"sqlite:///{tmp_path}/cli.db"
    with open_storage("sqlalchemy", url) as storage:
        storage.init_db()
        storage.create_task("t1", "sync_records", "started")
    assert main(["info", "--url", url]) == 0
    out = capsys.readouterr().out
    assert any(line.split() == ["task", "1"] for line in out.splitlines())


def test_backends_lists_builtins_with_their_provider(capsys):
    assert main(["backends", "--json"]) == 0
    listing = {b["name"]: b for b in json.loads(capsys.readouterr().out)["backends"]}
    assert listing["sqlalchemy"]["distribution"] == "webvh-storage-sqlalchemy"
    assert listing["askar"]["distribution"] == "webvh-storage-askar"
    assert "sql_sessions" in listing["sqlalchemy"]["capabilities"]
    assert "sql_sessions" not in listing["askar"]["capabilities"]
    assert listing["askar"]["dependencies_installed"] is True


def test_errors_are_one_line_with_the_password_masked(capsys):
    url = "postgresql+psycopg2://postgres:hunter2@127.0.0.1:1/nowhere"
    os.environ["STORAGE_CONNECT_TIMEOUT"] = "2"
    try:
        assert main(["init-db", "--url", url]) == 2
    finally:
        del os.environ["STORAGE_CONNECT_TIMEOUT"]
    captured = capsys.readouterr()
    assert captured.err.startswith("storage-core: error:")
    assert "hunter2" not in captured.err + captured.out
    assert main(["info", "--backend", "nosuchdb"]) == 2
    assert "registered" in capsys.readouterr().err


def test_quick_start_command_and_init_db_script(tmp_path):
    """The README's first command: provisions ./app.db in the working directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STORAGE_", "DATABASE_"))}
    run = subprocess.run(
        [sys.executable, "-m", "storage_core.cli", "init-db", "--info"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "app.db").exists()
    assert "schema_revision" in run.stdout
    script = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "init_db.py"), "--recreate", "--yes"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert script.returncode == 0, script.stderr
    assert "recreated sqlalchemy store" in script.stdout
