"""The async face (`AsyncStorageManager`): the key contract tests awaited, on the
`async_storage_manager` fixture, so every backend is judged on both faces.

Concurrency here is tasks, not threads: hundreds of coroutines on one event loop
sharing one store, as a FastAPI server's handlers do.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any

import pytest

from storage_core.async_manager import AsyncStorageManager
from storage_core.errors import ConflictError, DuplicateRecordError, ValidationError
from storage_core.kinds import KINDS, LOG_ENTRY, TASK
from storage_core.testing.samples import SAMPLE_CHANGES, data_of, present, sample_record

#: Concurrent tasks per test: more than any pool has connections or threads.
TASKS = 300
RACERS = 50
#: Not sorted by any rule a backend could reproduce except insertion order.
UNSORTED_KEYS = ["m", "c", "z", "a", "k", "b", "y", "e", "q", "d"]


async def _settled(calls: list[Awaitable[Any]]) -> list[Any]:
    """Results or exceptions, in order, of calls run as concurrent tasks."""
    return list(await asyncio.gather(*calls, return_exceptions=True))


async def _seed(sm: AsyncStorageManager) -> None:
    for i, key in enumerate(UNSORTED_KEYS):
        await sm.create_record(
            sample_record(
                "log_entry",
                key,
                domain="a.example" if i % 2 == 0 else "b.example",
                deactivated=i % 4 == 0,
            )
        )


def _keys(records: list[Any]) -> list[str]:
    return [LOG_ENTRY.key_of(r) for r in records]


@pytest.mark.asyncio
class TestAsyncCrud:
    async def test_every_kind_round_trips(self, async_storage_manager: AsyncStorageManager) -> None:
        sm = async_storage_manager
        for kind, spec in KINDS.items():
            record = sample_record(kind, "k")
            created = await sm.create_record(record)
            assert type(created) is spec.record, kind
            assert data_of(created) == data_of(record), kind
            assert await sm.get_record(kind, "k") == created, kind
            updated = present(await sm.update_record(spec, "k", **SAMPLE_CHANGES[kind]))
            assert data_of(updated) == {**data_of(record), **SAMPLE_CHANGES[kind]}, kind
            assert updated.record_version == 2, kind
            replaced = await sm.upsert_record(sample_record(kind, "k"))
            assert (data_of(replaced), replaced.record_version) == (data_of(record), 3), kind
            assert await sm.count_records(kind) == 1, kind
            assert await sm.delete_record(kind, "k") is True, kind
            assert await sm.delete_record(kind, "k") is False, kind
            assert await sm.get_record(kind, "k") is None, kind

    async def test_named_api_matches_the_sync_one(
        self, async_storage_manager: AsyncStorageManager
    ) -> None:
        sm = async_storage_manager
        entry = await sm.create_log_entry("s1", "did:webvh:s1:x", "x.example", "ns", "id", [1])
        assert await sm.get_log_entry("s1") == entry
        assert await sm.get_log_entries({"domain": "x.example"}, limit=1) == [entry]
        assert await sm.count_log_entries({"namespace": "other"}) == 0
        changed = present(await sm.update_log_entry("s1", expected_version=1, deactivated=True))
        assert (changed.deactivated, changed.record_version) == (True, 2)
        resource = await sm.create_resource("r1", "s1", "did", "t", "n", {"c": 1})
        assert await sm.get_resources({"scid": "s1"}) == [resource]
        assert await sm.count_resources() == 1
        assert present(await sm.update_resource("r1", metadata={"m": 1})).metadata == {"m": 1}
        task = await sm.create_task("t1", "type", "new")
        assert task.progress == {}
        assert await sm.get_tasks({"status": "new"}) == [task]
        assert present(await sm.update_task("t1", status="done")).status == "done"
        assert await sm.count_tasks({"status": "done"}) == 1
        policy = await sm.create_or_update_policy("p", {"witness": True})
        assert await sm.get_policy("p") == policy
        registry = await sm.create_or_update_registry("reg", "t", {"a": 1})
        assert await sm.get_registry("reg") == registry
        witness = await sm.create_or_update_witness_file("s1", [{"p": 1}])
        assert await sm.get_witness_file("s1") == witness
        whois = await sm.create_or_update_whois("s1", {"vp": 1}, expected_version=0)
        assert await sm.get_whois("s1") == whois
        load_entry = await sm.create_test_log_entry("tl", [1])
        assert await sm.get_test_log_entry("tl") == load_entry
        load_resource = await sm.create_test_resource("tr", "tl", {"c": 1})
        assert await sm.get_test_resource("tr") == load_resource
        for delete in (
            sm.delete_log_entry("s1"),
            sm.delete_resource("r1"),
            sm.delete_task("t1"),
            sm.delete_test_log_entry("tl"),
            sm.delete_test_resource("tr"),
        ):
            assert await delete is True
        assert await sm.bulk_upsert("task", [sample_record("task", "b1")]) == 1
        assert await sm.bulk_upsert("task", []) == 0
        assert (await sm.info())["rows"]["task"] == 1
        assert await sm.health_check() is True
        await sm.flush()

    async def test_primary_block_works_on_every_backend(
        self, async_storage_manager: AsyncStorageManager
    ) -> None:
        """`async with storage.primary():` (a no-op without read replicas): reads inside
        see the writes before and inside it, blocks nest, and a failure inside leaves."""
        sm = async_storage_manager
        before = await sm.create_record(sample_record(TASK, "before"))
        async with sm.primary():
            assert await sm.get_record("task", "before") == before
            inside = await sm.create_record(sample_record(TASK, "inside"))
            async with sm.primary():
                assert [r async for r in sm.stream_records(TASK)] == [before, inside]
            assert await sm.list_records("task") == [before, inside]
        with pytest.raises(DuplicateRecordError):
            async with sm.primary():
                await sm.create_record(sample_record("task", "inside"))
        assert await sm.count_records("task") == 2


@pytest.mark.asyncio
class TestAsyncErrors:
    async def test_duplicate_and_conflict_leave_the_store_unchanged(
        self, async_storage_manager: AsyncStorageManager
    ) -> None:
        sm = async_storage_manager
        first = await sm.create_task("t", "type", "new")
        with pytest.raises(DuplicateRecordError) as dup:
            await sm.create_task("t", "type", "other")
        assert (dup.value.kind, dup.value.key) == ("task", "t")
        with pytest.raises(ConflictError) as conflict:
            await sm.update_task("t", expected_version=5, status="late")
        assert (conflict.value.expected, conflict.value.actual) == (5, 1)
        with pytest.raises(ConflictError):
            await sm.create_or_update_whois("w", {"p": 1}, expected_version=3)
        assert await sm.get_task("t") == first
        assert await sm.get_whois("w") is None
        assert await sm.update_task("missing", status="x") is None

    async def test_bad_input_is_refused_before_the_backend(
        self, async_storage_manager: AsyncStorageManager
    ) -> None:
        sm = async_storage_manager
        with pytest.raises(ValidationError) as err:
            await sm.get_record("task", "")
        assert err.value.field == "task_id"
        with pytest.raises(ValidationError) as err:
            await sm.get_log_entries({"no_such_field": 1})
        with pytest.raises(ValidationError) as err:
            await sm.get_tasks(limit=-1)
        with pytest.raises(ValidationError) as err:
            await sm.update_task("t", expected_version=0, status="x")
        assert err.value.field == "expected_version"
        with pytest.raises(ValidationError) as err:
            await sm.create_or_update_policy("p", ["not", "a", "dict"])  # type: ignore[arg-type]
        assert err.value.field == "data"
        with pytest.raises(ValidationError):
            await sm.bulk_upsert("task", [sample_record("task", "x"), sample_record("task", "x")])
        with pytest.raises(ValidationError):
            sm.stream_records("task", batch_size=0)  # refused at the call, not on iteration
        assert await sm.count_tasks() == 0


@pytest.mark.asyncio
class TestAsyncQueries:
    async def test_filters_order_limit_and_offset(
        self, async_storage_manager: AsyncStorageManager
    ) -> None:
        sm = async_storage_manager
        await _seed(sm)
        assert _keys(await sm.get_log_entries()) == UNSORTED_KEYS
        assert _keys(await sm.get_log_entries(limit=3, offset=2)) == UNSORTED_KEYS[2:5]
        assert await sm.get_log_entries(limit=0) == []
        a_domain = [k for i, k in enumerate(UNSORTED_KEYS) if i % 2 == 0]
        assert _keys(await sm.get_log_entries({"domain": "a.example"})) == a_domain
        assert await sm.count_log_entries({"domain": ["a.example", "b.example"]}) == 10
        assert await sm.count_log_entries({"domain": []}) == 0
        assert await sm.get_log_entries({"domain": []}) == []
        both = {"domain": "a.example", "deactivated": True}
        expected = [k for i, k in enumerate(UNSORTED_KEYS) if i % 4 == 0]
        assert _keys(await sm.get_log_entries(both)) == expected


@pytest.mark.asyncio
class TestAsyncStream:
    async def test_stream_yields_everything_in_order(
        self, async_storage_manager: AsyncStorageManager
    ) -> None:
        sm = async_storage_manager
        await _seed(sm)
        streamed = [r async for r in sm.stream_records(LOG_ENTRY, batch_size=3)]
        assert _keys(streamed) == UNSORTED_KEYS
        filtered = [r async for r in sm.stream_records("log_entry", {"domain": "b.example"})]
        assert _keys(filtered) == [k for i, k in enumerate(UNSORTED_KEYS) if i % 2 == 1]
        assert [r async for r in sm.stream_records("log_entry", {"domain": []})] == []

    async def test_streams_left_early_release_their_connections(
        self, async_storage_manager: AsyncStorageManager
    ) -> None:
        """More streams left early than any pool has connections; writes still succeed
        and every later read sees them."""
        sm = async_storage_manager
        await _seed(sm)
        for round_ in range(40):
            async with contextlib.aclosing(sm.stream_records(LOG_ENTRY, batch_size=2)) as it:
                async for record in it:
                    assert LOG_ENTRY.key_of(record) == UNSORTED_KEYS[0]
                    break
            await sm.create_task(f"after-{round_}", "t", "new")
        assert await sm.count_tasks() == 40
        assert len([r async for r in sm.stream_records("task", batch_size=7)]) == 40

    async def test_streams_interleave(self, async_storage_manager: AsyncStorageManager) -> None:
        sm = async_storage_manager
        await _seed(sm)
        first = sm.stream_records("log_entry", batch_size=2)
        second = sm.stream_records("log_entry", batch_size=3)
        pairs = [(await anext(first), await anext(second)) for _ in UNSORTED_KEYS]
        assert [_keys(list(pair)) for pair in pairs] == [[k, k] for k in UNSORTED_KEYS]
        await first.aclose()
        await second.aclose()


@pytest.mark.asyncio
class TestAsyncConcurrency:
    async def test_hundreds_of_tasks_lose_nothing(
        self, async_storage_manager: AsyncStorageManager
    ) -> None:
        sm = async_storage_manager
        await sm.create_task("shared", "shared", "new")
        results = await _settled(
            [sm.create_task(f"t{i}", "own", "new", progress={"i": i}) for i in range(TASKS)]
            + [sm.update_task("shared", status=f"s{i}") for i in range(RACERS)]
            + [sm.get_tasks({"task_type": "own"}, limit=5) for _ in range(RACERS)]
        )
        assert [r for r in results if isinstance(r, BaseException)] == []
        assert await sm.count_tasks({"task_type": "own"}) == TASKS
        reads = await _settled([sm.get_task(f"t{i}") for i in range(TASKS)])
        assert [present(r).progress for r in reads] == [{"i": i} for i in range(TASKS)]
        assert present(await sm.get_task("shared")).record_version == 1 + RACERS

    async def test_exactly_one_racing_conditional_write_wins(
        self, async_storage_manager: AsyncStorageManager
    ) -> None:
        sm = async_storage_manager
        await sm.create_task("race", "t", "new")
        updates = await _settled(
            [sm.update_task("race", expected_version=1, status=f"w{i}") for i in range(RACERS)]
        )
        winners = [r for r in updates if not isinstance(r, BaseException)]
        assert len(winners) == 1, updates
        assert all(isinstance(r, ConflictError) for r in updates if r not in winners), updates
        creates = await _settled(
            [sm.create_record(sample_record("log_entry", "same")) for _ in range(RACERS)]
        )
        assert sum(not isinstance(r, BaseException) for r in creates) == 1, creates
        assert all(
            isinstance(r, DuplicateRecordError) for r in creates if isinstance(r, BaseException)
        ), creates
        upserts = await _settled(
            [sm.create_or_update_whois("fresh", {"i": i}, expected_version=0) for i in range(20)]
        )
        assert sum(not isinstance(r, BaseException) for r in upserts) == 1, upserts
        assert present(await sm.get_whois("fresh")).record_version == 1
