"""Read replicas on the async face (`AsyncStorageManager`, the native async SQL face):
the same routing as the sync face (tests/test_deployment_replicas.py), from the same
`replicas.ReadPolicy`. Reads go to the standby, writes to the primary; a task reads its
own writes and every read inside `async with storage.primary()` from the primary; a
standby that lags or is killed is skipped, and used again once back.

Against the real streaming standby (tests/standby.py). Where a read went is told by what
it sees: with the standby's replay paused, a record written since is on the primary only.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest
import pytest_asyncio

from storage_core import AsyncStorageManager, StorageManager, open_async_storage, open_storage
from storage_core.adapters import LoopThreadBackend, ThreadedAsyncBackend
from storage_core.errors import BackendUnavailableError
from tests.deployment import entry as _entry
from tests.standby import replicated_pair  # noqa: F401 (the fixture)
from tests.test_deployment_replicas import (  # noqa: F401 (stores: the fixture)
    EVERYWHERE,
    NOWHERE,
    Stores,
    _set_replay,
    stores,
)
from webvh_storage_sqlalchemy.replicas import LAG_SQL

T = TypeVar("T")


class AsyncStores:
    """Async readers over the `stores` fixture's pair, closed afterwards."""

    def __init__(self, found: Stores) -> None:
        self.stores = found
        self.pair = found.pair
        self.opened: list[AsyncStorageManager] = []

    def reader(self, **options: Any) -> AsyncStorageManager:
        """An async store that reads from the standby; lag checked on every read."""
        given = {"read_urls": self.stores.standby_url, "replica_check_interval": 0, **options}
        store = open_async_storage("sqlalchemy", self.stores.primary_url, **given)
        self.opened.append(store)
        return store


@pytest_asyncio.fixture
async def async_stores(stores: Stores) -> AsyncIterator[AsyncStores]:  # noqa: F811
    found = AsyncStores(stores)
    yield found
    for store in found.opened:
        await store.aclose()


async def _seen(store: AsyncStorageManager, scid: str) -> dict[str, bool]:
    """Whether each kind of read finds `scid` (list and stream, also in an order)."""
    listed = {e.scid for e in await store.get_log_entries({"namespace": "people"})}
    ordered = {e.scid for e in await store.get_log_entries(order_by="-created_at")}
    streamed = {e.scid async for e in store.stream_records("log_entry")}
    by_order = {e.scid async for e in store.stream_records("log_entry", order_by="created_at")}
    seen = {
        "get": await store.get_log_entry(scid) is not None,
        "list": scid in listed and scid in ordered,
        "count": await store.count_log_entries({"identifier": scid}) == 1,
        "stream": scid in streamed and scid in by_order,
    }
    assert len({scid in listed, scid in ordered}) == 1, "both lists went to one database"
    assert len({scid in streamed, scid in by_order}) == 1, "both streams went to one database"
    return seen


async def _as_another_caller(work: Callable[[], Awaitable[T]]) -> T:
    """`work` in a task of its own context, as another request's handler (a task
    started here would inherit this one's recent writes and primary() blocks)."""
    loop = asyncio.get_running_loop()
    return await loop.create_task(_awaited(work), context=contextvars.Context())


async def _awaited(work: Callable[[], Awaitable[T]]) -> T:
    return await work()


def _usable(store: AsyncStorageManager) -> list[bool]:
    return [r["usable"] for r in store.backend.describe()["read_replicas"]]


async def test_reads_go_to_the_replica_writes_to_the_primary(async_stores: AsyncStores):
    writer = async_stores.stores.open()
    reader = async_stores.reader(replica_max_lag=3600)
    writer.create_record(_entry("old"))
    async_stores.pair.wait_replayed()
    _set_replay(async_stores.pair, paused=True)
    writer.create_record(_entry("new"))  # on the primary only, for now

    assert await _seen(reader, "old") == EVERYWHERE
    assert await _seen(reader, "new") == NOWHERE  # every kind of read went to the standby
    async with reader.primary():
        assert await _seen(reader, "new") == EVERYWHERE
        # tasks started inside the block inherit it
        assert await asyncio.create_task(_seen(reader, "new")) == EVERYWHERE
    assert await _seen(reader, "new") == NOWHERE

    await reader.update_log_entry("old", logs=[1])  # a write goes to the primary
    assert writer.get_log_entry("old").logs == [1]
    assert await _seen(reader, "new") == EVERYWHERE  # the task's own write: primary reads
    assert (await reader.get_log_entry("old")).logs == [1]
    # another caller, who wrote nothing, still reads the standby
    assert await _as_another_caller(lambda: _seen(reader, "new")) == NOWHERE

    async def write_in_a_transaction() -> dict[str, bool]:
        async with reader.transaction():
            assert await _seen(reader, "new") == EVERYWHERE  # inside: the primary
            await reader.create_record(_entry("in-block"))
        return await _seen(reader, "in-block")  # after the commit: its own write

    assert await _as_another_caller(write_in_a_transaction) == EVERYWHERE
    assert await _as_another_caller(lambda: _seen(reader, "in-block")) == NOWHERE


async def test_archive_writes_count_as_writes(async_stores: AsyncStores):
    """An archive write sends the task's reads to the primary too (as any write)."""
    writer = async_stores.stores.open()
    reader = async_stores.reader(replica_max_lag=3600)
    async_stores.pair.wait_replayed()
    _set_replay(async_stores.pair, paused=True)
    writer.create_record(_entry("new"))
    assert (await _as_another_caller(lambda: _seen(reader, "new")))["get"] is False

    async def archive_then_read() -> bool:
        from storage_core import ArchivedEntry

        await reader.archive_upsert([ArchivedEntry("c", "n", "v")])
        return await reader.get_log_entry("new") is not None

    assert await _as_another_caller(archive_then_read) is True


async def test_the_faces_share_one_policy(async_stores: AsyncStores):
    """Both faces of one store: the async face's primary() and recent writes route its
    reads, and each face's replica health is the other's."""
    reader = async_stores.reader(replica_max_lag=3600)
    sync_face = reader.backend._owner  # the store's sync face
    assert sync_face._reads.policy is reader.backend._reads.policy
    assert _usable(reader) == [True]
    assert [r["usable"] for r in sync_face.describe()["read_replicas"]] == [True]


async def test_a_lagging_replica_is_skipped_until_it_catches_up(async_stores: AsyncStores):
    writer = async_stores.stores.open()
    reader = async_stores.reader(replica_max_lag=0.5)
    writer.create_record(_entry("old"))
    async_stores.pair.wait_replayed()
    _set_replay(async_stores.pair, paused=True)
    writer.create_record(_entry("new"))
    while float(async_stores.pair.standby.execute(LAG_SQL)[0][0]) <= 0.5:
        await asyncio.sleep(0.05)  # the standby falls behind

    assert await _seen(reader, "new") == EVERYWHERE  # the standby is skipped
    assert _usable(reader) == [False]

    _set_replay(async_stores.pair, paused=False)
    async_stores.pair.wait_replayed()
    assert await _seen(reader, "new") == EVERYWHERE
    assert _usable(reader) == [True]  # back in use


@pytest.mark.timeout(300)
async def test_reads_carry_on_when_the_standby_is_killed(async_stores: AsyncStores):
    """Tasks read without pause; the standby is killed (pg_ctl -m immediate) while they
    do: every read still returns the right answer, from the primary. The standby comes
    back and is used again."""
    writer = async_stores.stores.open()
    writer.bulk_upsert("log_entry", [_entry(f"e{n}") for n in range(20)])
    async_stores.pair.wait_replayed()
    reader = async_stores.reader(replica_max_lag=3600)
    reads = [0] * 4
    stop = asyncio.Event()

    async def read_on(worker: int) -> None:
        while not stop.is_set():
            n = reads[worker] % 20
            assert (await reader.get_log_entry(f"e{n}")).scid == f"e{n}"
            assert await reader.count_log_entries() == 20
            assert len(await reader.get_log_entries(limit=5, offset=n)) == min(5, 20 - n)
            reads[worker] += 1

    async def until(done: Callable[[], bool]) -> None:
        while not done():
            if any(task.done() for task in tasks):
                return  # a reader failed: gather() below raises its error
            await asyncio.sleep(0.01)

    tasks = [asyncio.create_task(read_on(w)) for w in range(4)]
    try:
        await until(lambda: min(reads) >= 3)
        await asyncio.to_thread(async_stores.pair.standby.stop, "immediate")
        before = list(reads)
        await until(lambda: all(r >= b + 5 for r, b in zip(reads, before, strict=True)))
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    # after the kill: every kind of read, streams included (a stream cut mid-way by the
    # kill fails, as on the sync face: only one that served nothing yet runs again)
    assert len([e async for e in reader.stream_records("log_entry", batch_size=7)]) == 20
    assert await _seen(reader, "e3") == EVERYWHERE
    assert _usable(reader) == [False]

    await asyncio.to_thread(async_stores.pair.standby.start)
    async_stores.pair.wait_replayed()
    _set_replay(async_stores.pair, paused=True)
    writer.create_record(_entry("new"))
    assert await reader.get_log_entry("new") is None  # from the standby again
    assert _usable(reader) == [True]


@pytest.mark.timeout(300)
async def test_a_read_the_replica_fails_runs_again_on_the_primary(async_stores: AsyncStores):
    """No lag check between the standby going down and the reads (checked once an hour):
    the stream and the get meet the dead replica first, and each runs on the primary."""
    writer = async_stores.stores.open()
    writer.bulk_upsert("log_entry", [_entry(f"e{n}") for n in range(10)])
    async_stores.pair.wait_replayed()
    reader = async_stores.reader(replica_max_lag=3600, replica_check_interval=3600)
    assert await reader.get_log_entry("e0") is not None  # the check: usable
    await asyncio.to_thread(async_stores.pair.standby.stop, "immediate")
    try:
        assert _usable(reader) == [True]  # not checked since
        streamed = [e.scid async for e in reader.stream_records("log_entry", batch_size=3)]
        assert streamed == [f"e{n}" for n in range(10)]
        assert _usable(reader) == [False]  # the failed read took it out
        assert (await reader.get_log_entry("e9")).scid == "e9"
    finally:
        await asyncio.to_thread(async_stores.pair.standby.start)
        async_stores.pair.wait_replayed()


async def test_a_spent_replica_pool_is_the_callers_wait_not_a_replica_failure(
    async_stores: AsyncStores,
):
    writer = async_stores.stores.open()
    writer.bulk_upsert("log_entry", [_entry(f"e{n}") for n in range(5)])
    async_stores.pair.wait_replayed()
    reader = async_stores.reader(replica_max_lag=3600, pool_size=1, max_overflow=0, pool_timeout=1)
    assert (await reader.get_log_entry("e0")).scid == "e0"
    (replica,) = reader.backend._reads.replicas
    await replica.connections.release_idle()
    async with replica.connections.engine.connect():  # the replica pool's only connection
        with pytest.raises(BackendUnavailableError, match="no pooled connection"):
            await reader.get_log_entry("e1")
        assert _usable(reader) == [True]
    assert (await reader.get_log_entry("e1")).scid == "e1"


@pytest.mark.timeout(300)
async def test_the_budget_holds_per_server_with_a_replica(async_stores: AsyncStores):
    """40 tasks of gets, writes and streams through a 2 + 1 pool (per server): never
    more than 3 connections at the primary, nor at the standby."""
    from tests.pg import PgServer
    from tests.test_sqlalchemy_pool import ConnectionSampler

    store = async_stores.reader(
        replica_max_lag=3600, replica_check_interval=0.2, pool_size=2, max_overflow=1
    )

    async def work(worker: int) -> None:
        for n in range(5):
            key = f"w{worker}-{n}"
            if worker % 2:  # writers (who then read their own writes from the primary)
                await store.create_record(_entry(key))
                await store.update_log_entry(key, logs=[n], expected_version=1)
                assert (await store.get_log_entry(key)).logs == [n]
            else:  # readers: the replica
                await store.get_log_entry(f"w{worker + 1}-{n}")
            async for _ in store.stream_records("log_entry", batch_size=4):
                pass
            await store.count_log_entries()

    pair = async_stores.pair
    database = async_stores.stores.database
    with (
        ConnectionSampler(PgServer(pair.primary.dsn), database) as at_primary,
        ConnectionSampler(PgServer(pair.standby.dsn), database) as at_standby,
    ):
        await asyncio.gather(*(work(w) for w in range(40)))
    assert max(at_primary.samples) <= 3
    assert 1 <= max(at_standby.samples) <= 3


async def test_primary_crosses_the_adapters(async_stores: AsyncStores):
    """primary() on a face the framework adapts: the sync SQL face on the thread pool
    (ThreadedAsyncBackend) and the native async face from sync code (LoopThreadBackend)
    carry the block to the calls inside it."""
    writer = async_stores.stores.open()
    async_stores.pair.wait_replayed()
    _set_replay(async_stores.pair, paused=True)
    writer.create_record(_entry("new"))
    options = {"read_urls": async_stores.stores.standby_url, "replica_max_lag": 3600}

    sync_store = open_storage("sqlalchemy", async_stores.stores.primary_url, **options)
    threaded = AsyncStorageManager(
        sync_store.settings, backend=ThreadedAsyncBackend(sync_store.backend)
    )
    try:
        assert await threaded.get_log_entry("new") is None
        async with threaded.primary():
            assert await threaded.get_log_entry("new") is not None
        assert await threaded.get_log_entry("new") is None
    finally:
        await threaded.aclose()

    native = open_async_storage("sqlalchemy", async_stores.stores.primary_url, **options)

    def from_sync_code() -> list[bool]:
        # the native face runs on the adapter's loop thread, which closes it
        with StorageManager(native.settings, backend=LoopThreadBackend(native.backend)) as looped:
            seen = [looped.get_log_entry("new") is not None]
            with looped.primary():
                seen.append(looped.get_log_entry("new") is not None)
            seen.append(looped.get_log_entry("new") is not None)
        return seen

    assert await asyncio.to_thread(from_sync_code) == [False, True, False]


async def test_an_unreachable_replica_is_skipped_and_its_password_never_shown(
    tmp_path, caplog: pytest.LogCaptureFixture
):
    replica = "postgresql+psycopg2://reader:s3cret-replica@127.0.0.1:1/webvh"
    store = open_async_storage(
        "sqlalchemy", f"sqlite:///{tmp_path}/p.db", read_urls=[replica], connect_timeout=1
    )
    try:
        await store.provision()
        await store.create_record(_entry("a"))
        with caplog.at_level("INFO"):
            seen = await _as_another_caller(lambda: _seen(store, "a"))
        assert seen == EVERYWHERE  # from the primary
        described = store.backend.describe()["read_replicas"]
        assert described == [{"url": replica.replace("s3cret-replica", "***"), "usable": False}]
        assert "s3cret-replica" in store.backend.secrets
        assert "s3cret-replica" not in caplog.text + repr(store) + str(await store.info())
    finally:
        await store.aclose()
