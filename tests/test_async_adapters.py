"""The adapters that give every backend both faces (storage_core.adapters)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storage_core import AsyncStorageManager, BackendUnavailableError, StorageManager
from storage_core.adapters import LoopThreadBackend, ThreadedAsyncBackend, as_async, as_sync
from storage_core.config import Settings
from storage_core.errors import StorageIOError
from storage_core.kinds import TASK, KindSpec
from storage_core.testing.samples import sample_record
from storage_core.validation import Filters
from webvh_storage_askar.async_backend import AsyncAskarBackend
from webvh_storage_askar.config import AskarConfig
from webvh_storage_memory.backend import MemoryBackend


class _RecordingMemoryBackend(MemoryBackend):
    """The memory plugin, noting the thread each stream is closed in."""

    name = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.closed_in: list[threading.Thread] = []

    def stream(self, spec: KindSpec[Any], filters: Filters, batch_size: int) -> Iterator[Any]:
        try:
            yield from super().stream(spec, filters, batch_size)
        finally:
            self.closed_in.append(threading.current_thread())


async def test_leaving_an_async_stream_early_closes_the_sync_iterator_on_a_pool_thread() -> None:
    backend = _RecordingMemoryBackend()
    storage = AsyncStorageManager(Settings.from_env({}), backend=backend)
    await storage.provision()
    for i in range(10):
        await storage.create_task(f"t{i}", "t", "new")
    async with contextlib.aclosing(storage.stream_records("task", batch_size=3)) as stream:
        async for _ in stream:
            break
    # closed by aclose() itself (not later by the garbage collector), off the loop thread
    assert len(backend.closed_in) == 1
    assert backend.closed_in[0] is not threading.current_thread()
    assert backend.closed_in[0].name.startswith("storage-memory")
    await storage.aclose()


async def test_a_closed_thread_pool_face_is_unavailable() -> None:
    face = ThreadedAsyncBackend(MemoryBackend(), workers=2)
    await face.provision()
    await face.aclose()
    await face.aclose()  # idempotent
    with pytest.raises(BackendUnavailableError):
        await face.get(TASK, "x")
    assert await face.health_check() is False


async def test_faces_are_found_not_stacked(tmp_path: Path) -> None:
    memory = MemoryBackend()
    threaded = as_async(memory, 4)
    assert isinstance(threaded, ThreadedAsyncBackend) and as_sync(threaded) is memory
    assert as_async(threaded, 4) is threaded and as_sync(memory) is memory
    native = AsyncAskarBackend(AskarConfig.from_settings(_askar_settings(tmp_path)))
    bridged = as_sync(native)
    assert isinstance(bridged, LoopThreadBackend) and as_async(bridged, 4) is native
    bridged.close()
    await threaded.aclose()


def _askar_settings(folder: Path) -> Settings:
    return Settings(backend="askar", url=f"sqlite://{folder}/store.db")


def test_an_async_only_backend_serves_the_sync_api_through_a_loop_thread(tmp_path: Path) -> None:
    """A third-party backend may implement the async face only: the sync manager runs it
    on a BackgroundLoop, whatever thread calls."""
    native = AsyncAskarBackend(AskarConfig.from_settings(_askar_settings(tmp_path)))
    with StorageManager(Settings.from_env({}), backend=as_sync(native)) as storage:
        storage.init_db(recreate=True)
        assert storage.health_check() is True
        for i in range(7):
            storage.create_task(f"t{i}", "t", "new")
        assert storage.update_task("t0", expected_version=1, status="done") is not None
        assert storage.upsert_record(sample_record("whois", "w")).record_version == 1
        assert storage.count_tasks() == 7 and len(storage.get_tasks(limit=2)) == 2
        stream = storage.stream_records("task", batch_size=2)
        assert next(stream).task_id == "t0"
        stream.close()  # the async iterator is closed on its loop
        assert [t.task_id for t in storage.stream_records("task", batch_size=3)][-1] == "t6"
        assert storage.delete_task("t6") is True and storage.get_task("t6") is None
        storage.flush()
        assert storage.backend.secrets == native.secrets
        assert storage.masked_url == native.config.masked_uri
        assert storage.backend.refuse_writes_for_testing(TASK, "t9") is True
        with pytest.raises(StorageIOError):
            storage.bulk_upsert("task", [sample_record("task", "t8"), sample_record("task", "t9")])
        assert storage.get_task("t8") is None
    assert storage.health_check() is False
    with pytest.raises(BackendUnavailableError):
        storage.get_task("t1")
    with pytest.raises(BackendUnavailableError):
        asyncio.run(storage.provision())
