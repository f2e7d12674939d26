"""The Askar backend's native async face: the caller's loop, a store of its own."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aries_askar import Store  # type: ignore[import-untyped]

from storage_core import BackendUnavailableError, StorageError, open_async_storage, open_storage
from storage_core.kinds import TASK
from storage_core.testing.samples import sample_record
from webvh_storage_askar.async_backend import AsyncAskarBackend
from webvh_storage_askar.backend import AskarBackend


async def test_async_face_is_native_and_shares_the_file_with_the_sync_face(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/askar.db"
    async with open_async_storage("askar", url) as storage:
        face = storage.backend
        assert isinstance(face, AsyncAskarBackend)
        assert "AsyncAskarBackend(url=" in repr(face)
        await storage.provision()
        written = await storage.create_task("t", "type", "new")
        # the sync face's loop thread never opened a store: nothing ran through it
        assert isinstance(face._owner, AskarBackend) and face._owner._slot.store is None
        with open_storage("askar", url) as sync_storage:
            assert sync_storage.get_task("t") == written
            sync_storage.update_task("t", status="done")
        assert (await storage.get_task("t")).status == "done"  # type: ignore[union-attr]
        assert await storage.health_check() is True
    assert await storage.health_check() is False
    with pytest.raises(BackendUnavailableError):
        await storage.get_task("t")
    await face.aclose()  # idempotent


async def test_a_call_from_another_event_loop_is_refused(tmp_path: Path) -> None:
    async with open_async_storage("askar", f"sqlite://{tmp_path}/askar.db") as storage:
        await storage.provision()
        with pytest.raises(BackendUnavailableError, match="another event loop"):
            await asyncio.to_thread(asyncio.run, storage.get_task("t"))
        assert await storage.get_task("t") is None  # its own loop still works


async def test_opening_errors_are_translated_and_masked(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/keyed.db"
    key, wrong = Store.generate_raw_key(), Store.generate_raw_key()
    with open_storage("askar", url, key=key, key_method="raw") as sync_storage:
        sync_storage.init_db()
    async with open_async_storage("askar", url, key=wrong, key_method="raw") as storage:
        with pytest.raises(StorageError) as info:
            await storage.get_task("t")
        assert wrong not in str(info.value) and key not in str(info.value)
        with pytest.raises(StorageError) as info:
            await storage.provision()
        assert wrong not in str(info.value)


async def test_refused_bulk_write_leaves_nothing(tmp_path: Path) -> None:
    async with open_async_storage("askar", "sqlite://:memory:") as storage:
        await storage.provision()
        face = storage.backend
        assert await face.refuse_writes_for_testing(TASK, "b") is True
        with pytest.raises(StorageError):
            await storage.bulk_upsert(
                "task", [sample_record("task", "a"), sample_record("task", "b")]
            )
        assert await storage.count_tasks() == 0


async def test_gets_counts_and_first_pages_reuse_one_idle_read_session(tmp_path: Path) -> None:
    """Plain reads run on the one idle session (opening one costs two native round
    trips, as much as the read): a first page too, not only gets and counts. Writes
    still open their own sessions and transactions."""
    async with open_async_storage("askar", f"sqlite://{tmp_path}/askar.db") as storage:
        await storage.provision()
        for n in range(3):
            await storage.create_task(f"t{n}", "type", "new")
        store = storage.backend._slot.store  # type: ignore[attr-defined]
        opened = 0
        real_session = store.session

        def counting_session(*args: object, **kwargs: object) -> object:
            nonlocal opened
            opened += 1
            return real_session(*args, **kwargs)

        store.session = counting_session
        for _ in range(5):
            page = await storage.get_tasks({"status": "new"}, limit=2)
            assert [t.task_id for t in page] == ["t0", "t1"]
            assert (await storage.get_task("t2")) is not None
            assert await storage.count_tasks({"status": "new"}) == 3
        assert opened <= 1  # the idle one, if the writes left none behind
        before = opened
        await storage.create_task("t3", "type", "new")
        assert opened == before + 1  # a write opens its own
        assert [t.task_id for t in await storage.get_tasks({"status": "new"}, limit=5)] == [
            "t0",
            "t1",
            "t2",
            "t3",
        ]
