"""Configuration and logging as a server's operator and developer meet them: half-set
PostgreSQL variables, a store configured in code, what is logged on open and on recovered
connection failures, the ORM models' public names, the vectors kept in the repository."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from sqlalchemy import event

from storage_core import (
    AsyncStorageManager,
    Settings,
    StorageError,
    StorageManager,
    ValidationError,
    open_async_storage,
    open_storage,
)
from storage_core.config import database_url_from_env
from storage_core.testing.plugin import provisioned_storage
from storage_core.testing.samples import sample_record
from tests.legacy_store import VECTOR_NAMES
from tests.pg import PgServer

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"POSTGRES_USER": "app"}, ["POSTGRES_SERVER_NAME"]),
        ({"POSTGRES_SERVER_NAME": "db"}, ["POSTGRES_USER"]),
        (
            {"POSTGRES_PASSWORD": "pw", "POSTGRES_DB": "x"},
            ["POSTGRES_USER", "POSTGRES_SERVER_NAME"],
        ),
    ],
)
def test_some_postgres_variables_without_the_others_are_an_error(
    env: dict[str, str], missing: list[str]
) -> None:
    with pytest.raises(ValidationError) as caught:
        database_url_from_env(env)
    assert caught.value.field == "POSTGRES_*"
    for name in missing:
        assert name in str(caught.value)
    assert "pw" not in str(caught.value).replace("POSTGRES_PASSWORD", "")


def test_complete_or_absent_postgres_variables_still_work() -> None:
    assert database_url_from_env({}) == "sqlite:///app.db"
    url = database_url_from_env({"POSTGRES_USER": "app", "POSTGRES_SERVER_NAME": "db"})
    assert url == "postgresql+psycopg2://app@db:5432/postgres"
    given = {"DATABASE_URL": "sqlite:///x.db", "POSTGRES_USER": "ignored"}
    assert database_url_from_env(given) == "sqlite:///x.db"


@pytest.fixture
def no_process_store():
    StorageManager.reset()
    yield
    StorageManager.reset()


def test_a_store_configured_in_code_becomes_the_process_wide_one(
    tmp_path: Path, no_process_store: None
) -> None:
    first = StorageManager.configure(open_storage("sqlalchemy", f"sqlite:///{tmp_path}/a.db"))
    assert StorageManager() is first
    first.init_db()
    first.create_task("t1", "sync_records", "started")
    assert StorageManager().get_task("t1") is not None
    second = StorageManager.configure(Settings.from_env(url=f"sqlite:///{tmp_path}/b.db"))
    assert StorageManager() is second is not first
    assert second.masked_url == f"sqlite:///{tmp_path}/b.db"
    with pytest.raises(StorageError):  # the replaced instance was closed
        first.get_task("t1")


async def test_an_async_store_configured_in_code_becomes_the_process_wide_one(
    tmp_path: Path,
) -> None:
    await AsyncStorageManager.reset()
    try:
        first = await AsyncStorageManager.configure(
            open_async_storage("sqlalchemy", f"sqlite:///{tmp_path}/a.db")
        )
        assert AsyncStorageManager() is first
        await first.provision()
        await first.create_task("t1", "sync_records", "started")
        assert await AsyncStorageManager().get_task("t1") is not None
        second = await AsyncStorageManager.configure(
            Settings.from_env(url=f"sqlite:///{tmp_path}/b.db")
        )
        assert AsyncStorageManager() is second is not first
        assert second.masked_url == f"sqlite:///{tmp_path}/b.db"
        with pytest.raises(StorageError):  # the replaced instance was closed
            await first.get_task("t1")
    finally:
        await AsyncStorageManager.reset()


def test_the_readme_configure_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_process_store: None
) -> None:
    monkeypatch.chdir(tmp_path)
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "configure" in b]
    namespace: dict[str, object] = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["storage"] is StorageManager()
    assert (tmp_path / "server.db").exists()


def test_opening_a_store_logs_backend_and_masked_url_at_info(
    pg_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    with_password = pg_database.replace("postgres@", "postgres:hunter2@", 1)
    assert "hunter2" in with_password  # trust auth: the password is not checked
    with caplog.at_level(logging.INFO, logger="storage_core"):
        open_storage("sqlalchemy", with_password).close()
    opened = [r for r in caplog.records if r.name == "storage_core.manager"]
    assert [r.levelno for r in opened] == [logging.INFO]
    message = opened[0].getMessage()
    assert "backend=sqlalchemy" in message and "postgres:***@" in message
    assert "hunter2" not in caplog.text


def test_a_recovered_connection_failure_is_a_warning(
    pg_server: PgServer, pg_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.test_sqlalchemy_pool import _terminate

    with provisioned_storage({"backend": "sqlalchemy", "url": pg_database}) as store:
        store.create_record(sample_record("task", "kept"))
        killed: list[int] = []

        def kill_first_checkout(dbapi_connection, _record, _proxy) -> None:  # type: ignore[no-untyped-def]
            if not killed:
                killed.append(dbapi_connection.get_backend_pid())
                _terminate(pg_server, killed[0])

        event.listen(store.engine, "checkout", kill_first_checkout)
        try:
            with caplog.at_level(logging.WARNING, logger="webvh_storage_sqlalchemy"):
                assert store.get_task("kept") is not None
        finally:
            event.remove(store.engine, "checkout", kill_first_checkout)
    warnings = [r for r in caplog.records if r.name == "webvh_storage_sqlalchemy.connections"]
    assert [r.levelno for r in warnings] == [logging.WARNING]
    assert "connection lost" in warnings[0].getMessage()


def test_orm_models_have_stable_public_names_and_the_old_names_remain(tmp_path: Path) -> None:
    from webvh_storage_sqlalchemy import models, orm

    with provisioned_storage({"backend": "sqlalchemy", "url": f"sqlite:///{tmp_path}/o.db"}) as s:
        s.create_record(sample_record("log_entry", "abc"))
        s.create_record(sample_record("resource", "r1"))
        with s.get_session() as session:
            (row,) = session.query(orm.LogEntry).all()
            assert row.scid == "abc"
            assert session.query(orm.Resource).one().resource_id == "r1"
    for name in orm.__all__:
        if name != "Base":
            assert getattr(models, f"{name}Row") is getattr(orm, name)
    assert orm.Base is models.Base


def test_the_vectors_are_in_the_repository_so_nothing_skips_for_missing_data() -> None:
    from tests.conftest import VECTORS
    from tests.legacy_store import VECTORS as LEGACY_VECTORS

    data = ROOT / "tests" / "data" / "vectors"
    assert VECTORS == LEGACY_VECTORS == data
    assert sorted(p.name for p in data.iterdir() if p.is_dir()) == sorted(VECTOR_NAMES)
    for name in VECTOR_NAMES:
        assert (data / name / "did.jsonl").read_text().strip()
    provenance = (data / "README.md").read_text()
    assert "Apache-2.0" in provenance and "didwebvh-test-suite" in provenance


def test_install_hints_name_the_extra_of_known_modules_and_commands() -> None:
    from storage_core.install_hints import missing_command_hint, missing_module_hint

    assert missing_module_hint("psycopg2._psycopg") == (
        "the psycopg2 module is not installed; install it with: "
        "pip install 'webvh-storage[postgres]'"
    )
    assert "pip install 'webvh-storage[askar]'" in (missing_module_hint("aries_askar") or "")
    assert missing_module_hint("yaml") is None and missing_module_hint(None) is None
    assert "webvh-storage[askar]" in (missing_command_hint("migrate-askar") or "")
    assert missing_command_hint("nosuch") is None


def test_opening_errors_name_the_setting_and_the_extra() -> None:
    """What the SQL backend reports for a driver ImportError (seen for real in the wheel
    test, where psycopg2 is not installed) and for other failures it does not explain."""
    from storage_core.errors import MissingDependencyError
    from webvh_storage_sqlalchemy.locations import opening_error

    env = {"POSTGRES_USER": "u", "POSTGRES_SERVER_NAME": "h"}
    settings = Settings.from_env(env)
    error = opening_error(ModuleNotFoundError("no psycopg2", name="psycopg2"), settings)
    assert isinstance(error, MissingDependencyError)
    assert str(error).startswith("POSTGRES_* needs a driver: the psycopg2 module")
    assert "pip install 'webvh-storage[postgres]'" in str(error)
    assert opening_error(ModuleNotFoundError("x", name="yaml"), settings) is None
    assert opening_error(RuntimeError("other"), settings) is None
