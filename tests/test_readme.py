"""The README's examples run as written, on every built-in backend and database."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from storage_core import StorageManager

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
API_EXAMPLE, SQL_EXAMPLE = BLOCKS[0], BLOCKS[1]


@pytest.fixture(params=["sqlite", "postgres", "askar-sqlite", "askar-postgres"])
def environment(request, monkeypatch, tmp_path):
    """Configure the process-wide StorageManager() through the environment only."""
    monkeypatch.chdir(tmp_path)
    if request.param == "sqlite":
        pass  # nothing set: the default sqlite:///app.db in the working directory
    elif request.param == "postgres":
        monkeypatch.setenv("DATABASE_URL", request.getfixturevalue("pg_database"))
    elif request.param == "askar-sqlite":
        monkeypatch.setenv("STORAGE_BACKEND", "askar")
    else:
        monkeypatch.setenv("STORAGE_BACKEND", "askar")
        monkeypatch.setenv("ASKAR_DB", request.getfixturevalue("askar_pg_database"))
    StorageManager.reset()
    yield request.param
    StorageManager().init_db(recreate=True)  # the PostgreSQL databases are shared
    StorageManager.reset()


def test_api_example_runs_as_written(environment, tmp_path):
    namespace: dict = {}
    exec(compile(API_EXAMPLE, "README.md", "exec"), namespace)
    storage = namespace["storage"]
    assert storage is StorageManager()
    assert storage.get_log_entry("QmScid") is None  # the example deletes it at the end
    assert storage.get_task("t1").status == "started"
    assert storage.get_policy("active").witness is True
    if environment == "sqlite":
        assert (tmp_path / "app.db").exists()
    if environment == "askar-sqlite":
        assert (tmp_path / "askar.db").exists()
    assert (tmp_path / "other.db").exists()


def test_sql_example_runs_on_sql_backends(environment):
    namespace: dict = {"storage": StorageManager()}
    StorageManager().init_db()
    if environment.startswith("askar"):
        from storage_core import UnsupportedOperationError

        with pytest.raises(UnsupportedOperationError):
            exec(compile(SQL_EXAMPLE, "README.md", "exec"), namespace)
    else:
        exec(compile(SQL_EXAMPLE, "README.md", "exec"), namespace)
