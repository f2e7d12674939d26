"""The StorageManager facade: singleton, independent instances, sync/async entry points."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from storage_core import (
    LogEntry,
    StorageError,
    StorageManager,
    UnknownBackendError,
    UnsupportedOperationError,
    ValidationError,
    open_storage,
)
from storage_core.config import Settings
from storage_core.interface import StorageBackend
from storage_core.plugins import get_registry


@pytest.fixture
def sqlite_env(monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/app.db")
    StorageManager.reset()
    yield tmp_path
    StorageManager.reset()


def test_process_wide_instance_is_a_singleton_until_reset(sqlite_env):
    first = StorageManager()
    assert StorageManager() is first
    StorageManager.reset()
    assert StorageManager() is not first


def test_singleton_follows_the_environment(sqlite_env):
    storage = StorageManager()
    storage.init_db()
    storage.create_task("t1", "sync_records", "started")
    assert (sqlite_env / "app.db").exists()
    assert StorageManager().get_task("t1").status == "started"


def test_open_storage_gives_independent_instances(tmp_path):
    with (
        open_storage("sqlalchemy", f"sqlite:///{tmp_path}/a.db") as a,
        open_storage("sqlalchemy", f"sqlite:///{tmp_path}/b.db") as b,
    ):
        a.init_db()
        b.init_db()
        a.create_task("only-in-a", "t", "started")
        assert a.get_task("only-in-a") is not None
        assert b.get_task("only-in-a") is None
        assert a is not StorageManager.__dict__.get("_instance")


async def test_init_db_and_sync_api_work_inside_a_running_loop(tmp_path):
    with open_storage("sqlalchemy", f"sqlite:///{tmp_path}/loop.db") as storage:
        storage.init_db(recreate=True)  # sync wrapper while this coroutine's loop runs
        await storage.provision()  # the async form is a no-op on a provisioned store
        storage.create_task("t", "set_policy", "started")
        assert storage.get_task("t").task_type == "set_policy"
        assert asyncio.get_running_loop().is_running()


def test_sql_only_api_is_a_clear_error_on_askar(tmp_path):
    with open_storage("askar", f"sqlite://{tmp_path}/a.db") as storage:
        storage.init_db()
        for access in (lambda: storage.engine, lambda: storage.SessionLocal, storage.get_session):
            with pytest.raises(UnsupportedOperationError, match="askar"):
                access()


def test_sql_session_api_on_sqlalchemy(tmp_path):
    from sqlalchemy import text

    with open_storage("sqlalchemy", f"sqlite:///{tmp_path}/s.db") as storage:
        storage.init_db()
        storage.create_task("t", "x", "started")
        with storage.get_session() as session:
            assert session.execute(text("select count(*) from tasks")).scalar() == 1
        assert storage.SessionLocal().bind is storage.engine


def test_unknown_backend_lists_the_registered_ones():
    with pytest.raises(UnknownBackendError) as info:
        open_storage("nosuchdb")
    message = str(info.value)
    assert "sqlalchemy" in message and "askar" in message and "install" in message


def test_records_of_unknown_types_are_refused(tmp_path):
    with open_storage("sqlalchemy", f"sqlite:///{tmp_path}/s.db") as storage:
        storage.init_db()
        with pytest.raises(ValidationError) as info:
            storage.create_record({"scid": "x"})
        assert info.value.field == "record"
        with pytest.raises(ValidationError) as info:
            storage.get_record("no_such_kind", "x")
        assert info.value.field == "kind"


class _LeakyBackend(StorageBackend):
    """A plugin that lets a raw exception escape: the manager must still hide it."""

    capabilities: ClassVar[frozenset[str]] = frozenset()
    name = "leaky"

    async def provision(self, recreate: bool = False) -> None:
        raise RuntimeError("connect failed for postgres://u:hunter2@h/db")

    def close(self) -> None:
        pass

    def health_check(self) -> bool:
        raise OSError("down")

    def _boom(self, *args: Any, **kwargs: Any) -> Any:
        raise KeyError("password=hunter2 postgres://u:hunter2@h/db")

    create = get = update = upsert = delete = list = count = bulk_upsert = _boom

    def stream(self, *args: Any) -> Iterator[Any]:
        yield from ()
        raise ValueError("stream broke at postgres://u:hunter2@h/db")


def test_leaked_exceptions_become_masked_storage_errors():
    storage = StorageManager(Settings.from_env({}), backend=_LeakyBackend())
    for call in (
        lambda: storage.get_log_entry("x"),
        lambda: storage.count_tasks(),
        lambda: storage.init_db(),
        lambda: list(storage.stream_records("task")),
    ):
        with pytest.raises(StorageError) as info:
            call()
        assert type(info.value) is StorageError
        assert "hunter2" not in str(info.value)
        assert info.value.__cause__ is None and info.value.__suppress_context__
    assert storage.health_check() is False


class _KeyedLeakyBackend(_LeakyBackend):
    """A backend whose own option (not a Settings field) is a secret it leaks raw."""

    KEY = "k3y-0f-the-backend"

    @property
    def secrets(self) -> list[str]:
        return [self.KEY]

    async def provision(self, recreate: bool = False) -> None:
        raise RuntimeError(f"wrong key {self.KEY}")

    def _boom(self, *args: Any, **kwargs: Any) -> Any:
        raise KeyError(f"store opened with key {self.KEY}")

    create = get = update = upsert = delete = list = count = bulk_upsert = _boom

    def stream(self, *args: Any) -> Iterator[Any]:
        yield from ()
        raise ValueError(f"stream broke, key {self.KEY}")


def test_errors_mask_the_secrets_the_backend_declares():
    """Settings know nothing of a backend's own secrets (ASKAR_KEY is the Askar
    backend's): the manager masks what `StorageBackend.secrets` names as well."""
    storage = StorageManager(Settings.from_env({}), backend=_KeyedLeakyBackend())
    for call in (
        lambda: storage.get_log_entry("x"),
        lambda: storage.init_db(),
        lambda: list(storage.stream_records("task")),
    ):
        with pytest.raises(StorageError) as info:
            call()
        assert _KeyedLeakyBackend.KEY not in str(info.value)
        assert "***" in str(info.value)


def test_settings_secrets_leave_backend_variables_to_the_backend():
    env = {
        "ASKAR_KEY": "askar-k3y",
        "POSTGRES_USER": "app",
        "POSTGRES_PASSWORD": "pg-pw",
        "POSTGRES_SERVER_NAME": "db",
    }
    secrets = get_registry().resolve(Settings.from_env(env)).secrets
    assert "pg-pw" in secrets  # the SQL backend declares POSTGRES_PASSWORD secret
    assert "askar-k3y" not in secrets


def test_bulk_upsert_of_nothing_writes_nothing(tmp_path):
    with open_storage("sqlalchemy", f"sqlite:///{tmp_path}/s.db") as storage:
        storage.init_db()
        assert storage.bulk_upsert("log_entry", []) == 0
        entry = LogEntry(scid="s", did="d", domain="x", namespace="n", identifier="i", logs=[])
        with pytest.raises(ValidationError, match="twice"):
            storage.bulk_upsert("log_entry", [entry, entry])
        assert storage.count_log_entries() == 0
        # the error names the first key met a second time, in the batch's order
        batch = [dataclasses.replace(entry, scid=k) for k in ("a", "b", "c", "b", "a")]
        with pytest.raises(ValidationError) as refused:
            storage.bulk_upsert("log_entry", batch)
        assert (refused.value.field, refused.value.problem) == (
            "scid",
            "'b' appears twice in one bulk upsert",
        )
        assert storage.count_log_entries() == 0
