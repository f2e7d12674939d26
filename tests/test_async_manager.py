"""AsyncStorageManager: the process-wide and independent instances, error masking, and
an event loop that keeps running while calls are in flight."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from storage_core import (
    AsyncStorageManager,
    BackendUnavailableError,
    StorageError,
    ValidationError,
    open_async_storage,
    open_storage,
)
from storage_core.adapters import DEFAULT_WORKERS, ThreadedAsyncBackend
from storage_core.async_manager import workers_for
from storage_core.config import Settings
from tests.test_manager import _KeyedLeakyBackend, _LeakyBackend


@pytest.fixture
async def sqlite_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/app.db")
    await AsyncStorageManager.reset()
    yield tmp_path
    await AsyncStorageManager.reset()


async def test_process_wide_instance_is_one_until_reset(sqlite_env: Path) -> None:
    first = AsyncStorageManager()
    assert AsyncStorageManager() is first
    assert open_async_storage() is not first
    await first.init_db()
    await first.create_task("t", "type", "new")
    await AsyncStorageManager.reset()
    second = AsyncStorageManager()
    assert second is not first
    assert (await second.get_task("t")) is not None  # same environment, same file


async def test_both_faces_share_one_store_and_its_records(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/both.db"
    with open_storage("sqlalchemy", url) as sync_storage:
        sync_storage.init_db()
        written = sync_storage.create_log_entry("s", "did:webvh:s:x", "x", "n", "i", [{"a": 1}])
        async with open_async_storage("sqlalchemy", url) as storage:
            assert await storage.get_log_entry("s") == written
            updated = await storage.update_log_entry("s", expected_version=1, deactivated=True)
            assert sync_storage.get_log_entry("s") == updated


async def test_a_call_waiting_on_the_database_leaves_the_loop_free(tmp_path: Path) -> None:
    """The issue's frozen event loop: a call from an `async def` handler that waits on
    the database (here a write lock another connection holds) must not stop the loop.
    Through the sync API the task below held the loop until the lock wait gave up, so it
    had finished (failed) when the loop next ran; through the async API it is still
    waiting, the loop runs on and the write goes through once the lock is released."""
    path = tmp_path / "locked.db"
    async with open_async_storage("sqlalchemy", f"sqlite:///{path}") as storage:
        await storage.provision()
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # the write lock, held by another connection
        try:
            write = asyncio.create_task(storage.create_task("t", "type", "new"))
            await asyncio.sleep(0.2)  # the loop runs while the write waits in its thread
            assert not write.done()
        finally:
            holder.execute("COMMIT")
            holder.close()
        assert (await write).task_id == "t"


async def test_leaked_exceptions_become_masked_storage_errors() -> None:
    for backend, secret in ((_LeakyBackend(), "hunter2"), (_KeyedLeakyBackend(), "k3y-0f")):
        storage = AsyncStorageManager(Settings.from_env({}), backend=backend)
        for call in (
            storage.get_log_entry("x"),
            storage.count_tasks(),
            storage.provision(),
            _drain(storage),
        ):
            with pytest.raises(StorageError) as info:
                await call
            assert type(info.value) is StorageError
            assert secret not in str(info.value)
            assert info.value.__cause__ is None and info.value.__suppress_context__
        assert await storage.health_check() is False
        await storage.aclose()


async def _drain(storage: AsyncStorageManager) -> list[object]:
    return [record async for record in storage.stream_records("task")]


async def test_closed_store_is_unavailable_and_validation_comes_first(tmp_path: Path) -> None:
    storage = open_async_storage("sqlalchemy", f"sqlite:///{tmp_path}/c.db")
    await storage.provision()
    await storage.aclose()
    await storage.aclose()
    with pytest.raises(ValidationError):
        await storage.get_task("")
    with pytest.raises(BackendUnavailableError):
        await storage.get_task("t")
    assert await storage.health_check() is False


def test_repr_masks_the_password_and_open_is_not_a_coroutine() -> None:
    storage = open_async_storage("sqlalchemy", "postgresql://u:s3cret@127.0.0.1:1/db")
    assert isinstance(storage, AsyncStorageManager)
    assert "s3cret" not in repr(storage) and "postgresql://u:***@" in repr(storage)
    asyncio.run(storage.aclose())


def test_thread_pool_follows_the_pool_size(tmp_path: Path) -> None:
    # the SQL backend has a native async face now (tests/test_async_sqlalchemy.py): the
    # thread pool serves a sync-only backend, sized by the store's connection pool
    storage = open_async_storage("memory")
    assert isinstance(storage.backend, ThreadedAsyncBackend)
    sync = storage.backend.sync
    face = ThreadedAsyncBackend(sync, workers_for(Settings(options={"pool_size": 3})))
    assert face._executor._max_workers == 3
    assert workers_for(Settings()) == DEFAULT_WORKERS
    face._executor.shutdown()
    asyncio.run(storage.aclose())
