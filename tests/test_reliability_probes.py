"""What hostile probing broke (issue 15), one test per finding, on every backend variant.

Each test ran against the code before the fix and failed there (the failure is quoted
in its docstring); docs/reliability.md lists them in its table.

Reproduce: `uv run pytest tests/test_reliability_probes.py -q`
"""

from __future__ import annotations

import enum
import gc
import itertools
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import psycopg2
import pytest

from storage_core import Resource, StorageManager, Task
from storage_core.errors import StorageError, ValidationError
from storage_core.kinds import RESOURCE, TASK
from storage_core.validation import MAX_BATCH_SIZE, MAX_FILTER_VALUES, MAX_JSON_DEPTH
from tests.pg import admin_url
from tests.test_differential import ALL_VARIANTS, nested, open_variants
from webvh_storage_askar.streams import MAX_OPEN_SCANS


@pytest.fixture(scope="module")
def every(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[dict[str, StorageManager]]:
    """Every variant (the six built-in ones and the memory plugin), opened once."""
    opened = open_variants(request, tmp_path_factory.mktemp("probes"))
    yield opened
    for store in opened.values():
        store.close()


@pytest.fixture
def stores(every: dict[str, StorageManager]) -> dict[str, StorageManager]:
    """Every variant, emptied for this test."""
    for store in every.values():
        store.init_db(recreate=True)
    return every


def add_tasks(stores: dict[str, StorageManager], n: int) -> list[str]:
    keys = [f"t{i:04d}" for i in range(n)]
    for store in stores.values():
        store.bulk_upsert(TASK, [Task(task_id=k, task_type="sync", status="s") for k in keys])
    return keys


def refusal(call: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        call()
    return info.value


# --- 1. batch_size ------------------------------------------------------------------------


def test_streams_serve_every_record_once_and_batch_size_has_an_upper_bound(stores):
    """Before: PostgreSQL with batch_size 2**31 gave a syntax error, 2**32 and 2**62
    looped forever on the first row (FETCH FORWARD 0), 2**63-1 returned one row."""
    keys = add_tasks(stores, 23)
    for name, store in stores.items():
        for batch in (1, 4, 22, 23, 24, MAX_BATCH_SIZE):
            served = [t.task_id for t in store.stream_records(TASK, batch_size=batch)]
            assert served == keys, (name, batch)
        for batch in (MAX_BATCH_SIZE + 1, 2**31, 2**32, 2**62, 2**63 - 1, 2**63):
            error = refusal(lambda s=store, b=batch: s.stream_records(TASK, batch_size=b))
            assert error.field == "batch_size" and str(MAX_BATCH_SIZE) in str(error), name


# --- 2. limit and offset beyond 64 bits -------------------------------------------------


def test_limit_and_offset_beyond_2_63_are_validation_errors_everywhere(stores):
    """Before: SQL raised a generic StorageError (bigint out of range), Askar wrapped
    modulo 2**64 (limit=2**64+1 returned one row), Askar-PostgreSQL reported
    BackendUnavailableError 'OFFSET must not be negative'."""
    keys = add_tasks(stores, 3)
    for name, store in stores.items():
        assert [t.task_id for t in store.list_records(TASK, limit=2**63 - 1)] == keys, name
        assert store.list_records(TASK, offset=2**63 - 1) == [], name
        assert [t.task_id for t in store.list_records(TASK, limit=2, offset=1)] == keys[1:], name
        for kwargs, field in (
            ({"limit": 2**63}, "limit"),
            ({"limit": 2**64 + 1}, "limit"),
            ({"offset": 2**63}, "offset"),
            ({"offset": 2**64}, "offset"),
        ):
            error = refusal(lambda s=store, k=kwargs: s.list_records(TASK, **k))
            assert error.field == field, (name, kwargs)
        assert store.count_records(TASK) == 3


# --- 4. Askar on PostgreSQL rides out a blip ----------------------------------------------


def terminate_idle_connections(database: str) -> int:
    """What a restart or failover does to a pool: the server ends every connection."""
    conn = psycopg2.connect(admin_url())
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            )
            return cursor.rowcount
    finally:
        conn.close()


@pytest.mark.parametrize("variant", ["postgres", "askar-postgres"])
def test_postgresql_connections_terminated_while_idle_do_not_fail_the_next_call(stores, variant):
    """Before: on Askar-PostgreSQL the next get after pg_terminate_backend failed with
    BackendUnavailableError 'terminating connection due to administrator command', 3 times
    of 3 (the SQL backend already recovered)."""
    store = stores[variant]
    store.create_task("blip", "sync", "s")
    url = store.backend.describe()["url"]
    database = url.rsplit("/", 1)[1].partition("?")[0]
    for round_ in range(3):
        for _ in range(3):  # warm the pool; the last get leaves an idle reader session
            list(store.stream_records(TASK))
            assert store.get_task("blip") is not None
        assert terminate_idle_connections(database) >= 1
        assert store.get_task("blip") is not None, round_
        store.create_task(f"after-{round_}", "sync", "s")
        assert store.count_tasks() == 2 + round_


# --- 5. one JSON depth limit ----------------------------------------------------------------


def test_json_depth_limit_is_254_on_every_backend_and_every_write_path(stores):
    """Before: 254 levels were stored by SQL and refused by Askar as a StorageError
    ('TypeError: Recursion limit reached')."""
    deepest, too_deep = nested(MAX_JSON_DEPTH), nested(MAX_JSON_DEPTH + 1)
    exact = orjson.dumps(deepest)

    def resource(key: str) -> Resource:
        return Resource(
            resource_id=key,
            scid="s",
            did="d",
            resource_type="t",
            resource_name="n",
            content=deepest,
        )

    for name, store in stores.items():
        store.create_resource("c", "s", "d", "t", "n", deepest)
        store.update_resource("c", metadata=deepest)
        store.upsert_record(resource("u"))
        store.bulk_upsert(RESOURCE, [resource("b")])
        for read in (
            [store.get_resource(k) for k in ("c", "u", "b")],
            store.get_resources(),
            list(store.stream_records(RESOURCE)),
        ):
            assert [orjson.dumps(r.content) for r in read] == [exact] * 3, name
        assert orjson.dumps(store.get_resource("c").metadata) == exact, name
        error = refusal(lambda s=store: s.create_resource("x", "s", "d", "t", "n", too_deep))
        assert error.field == "content" and f"limit of {MAX_JSON_DEPTH}" in str(error), name
        error = refusal(lambda s=store: s.update_resource("c", content=too_deep))
        assert error.field == "content", name
        assert store.count_resources() == 3, name


# --- 6. only JSON types ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "path", "type_name"),
    [
        ((1, 2), "content['a']", "tuple"),
        (datetime(2026, 1, 1, tzinfo=UTC), "content['a']", "datetime"),
        (uuid.UUID(int=1), "content['a']", "UUID"),
        (enum.Enum("Colour", "RED").RED, "content['a']", "Colour"),
        (enum.IntEnum("Size", "ONE").ONE, "content['a']", "Size"),
        ({"x"}, "content['a']", "set"),
        (b"x", "content['a']", "bytes"),
        (type("Name", (str,), {})("n"), "content['a']", "Name"),
        ([[{"deep": (1,)}]], "content['a'][0][0]['deep']", "tuple"),
    ],
)
def test_non_json_python_values_are_refused_naming_the_path(stores, value, path, type_name):
    """Before: tuples, datetimes, UUIDs, dataclasses and Enums were stored converted, and
    create() returned the caller's object on SQL but the converted value on Askar."""
    for name, store in stores.items():
        error = refusal(lambda s=store: s.create_resource("r", "s", "d", "t", "n", {"a": value}))
        assert error.field == "content", name
        assert path in str(error) and type_name in str(error), (name, str(error))
        assert store.get_resource("r") is None, name


def test_a_dataclass_and_a_non_str_key_are_refused_too(stores):
    import dataclasses

    @dataclasses.dataclass
    class Point:
        x: int

    for name, store in stores.items():
        error = refusal(lambda s=store: s.create_resource("r", "s", "d", "t", "n", [Point(1)]))
        assert "content[0] is a Point" in str(error), name
        error = refusal(lambda s=store: s.create_resource("r", "s", "d", "t", "n", {1: "x"}))
        assert "content[1] has a int key" in str(error), name
        created = store.create_resource("r", "s", "d", "t", "n", {"a": [1, 2.5, None]})
        assert created == store.get_resource("r"), name


# --- 7. many values in one filter -------------------------------------------------------------


def test_filter_value_lists_have_one_documented_limit_everywhere(stores):
    """Before: 40,000 values in one filter list failed only on Askar-SQLite ('variable
    number must be between ?1 and ?32766'). Now MAX_FILTER_VALUES values work on every
    backend and one more is a ValidationError on every backend."""
    keys = add_tasks(stores, 5)
    wanted = [*keys[1:3], *(f"none-{i}" for i in range(MAX_FILTER_VALUES - 2))]
    for name, store in stores.items():
        found = store.get_tasks({"task_id": wanted})
        assert [t.task_id for t in found] == keys[1:3], name
        assert store.count_tasks({"task_id": wanted}) == 2, name
        for too_many in (
            {"task_id": [*wanted, "one-more"]},
            {"task_id": wanted, "status": ["s"]},
            {"task_id": [f"v{i}" for i in range(40_000)]},
        ):
            for call in (
                lambda s=store, f=too_many: s.get_tasks(f),
                lambda s=store, f=too_many: s.count_tasks(f),
                lambda s=store, f=too_many: s.stream_records(TASK, f),
            ):
                error = refusal(call)
                assert str(MAX_FILTER_VALUES) in str(error), name


# --- 8. streams dropped inside reference cycles ------------------------------------------------


class _Holder:
    """An object that refers to itself: only the cyclic garbage collector frees it."""

    def __init__(self, stream: Iterator[Any]) -> None:
        self.me = self
        self.stream = stream


def test_streams_dropped_in_reference_cycles_pin_no_connection_and_finalise_silently(stores, capfd):
    """Before: Askar-SQLite blocked after 4 such streams, Askar-PostgreSQL after 20 (then
    every stream waited 30 s and failed); on SQLAlchemy-PostgreSQL the collector printed
    'Error closing cursor' and 'Exception ignored ... connection already closed' and
    closed 10 pooled connections instead of returning them."""
    add_tasks(stores, 12)
    gc.collect()
    gc.disable()
    try:
        for name, store in stores.items():
            for _ in range(40):  # far more than any pool here holds
                holder = _Holder(store.stream_records(TASK, batch_size=5))
                assert next(holder.stream).task_id == "t0000"
                del holder
            # the collector has not run: every stream above is still alive
            assert store.get_task("t0011") is not None, name
            assert len(list(store.stream_records(TASK, batch_size=5))) == 12, name
            if name == "postgres":
                pool = store.engine.pool
                assert pool.checkedout() - store.backend._connections.idle_count == 0
    finally:
        gc.enable()
    gc.collect()
    for name, store in stores.items():
        assert store.count_tasks() == 12, name
    captured = capfd.readouterr()
    printed = captured.out + captured.err
    for noise in ("Error closing cursor", "Exception ignored", "Traceback"):
        assert noise not in printed, printed[-2000:]


def other_streams(store: StorageManager) -> list[Iterator[Any]]:
    """MAX_OPEN_SCANS streams started and advanced: on Askar they take the open scans,
    so a stream started before them has its scan closed and must reopen it."""
    streams = [store.stream_records(TASK, batch_size=2) for _ in range(MAX_OPEN_SCANS)]
    for stream in streams:
        next(stream)
    return streams


def test_streams_neither_skip_nor_repeat_when_records_are_deleted_meanwhile(stores):
    """Served records (the one served last included) are deleted while a stream is
    paused; on Askar its scan is closed meanwhile, so it reopens by offset and must find
    its place again by the names it served."""
    keys = add_tasks(stores, 10)
    for name, store in stores.items():
        stream = store.stream_records(TASK, batch_size=3)
        served = [next(stream).task_id for _ in range(4)]  # page 1, and page 2 read ahead
        others = other_streams(store)
        for key in ("t0000", "t0002", "t0003"):
            store.delete_task(key)
        served += [t.task_id for t in stream]
        assert served == keys, name
        for other in others:
            other.close()
        store.bulk_upsert(TASK, [Task(task_id=k, task_type="sync", status="s") for k in keys])


@pytest.mark.parametrize("variant", ["askar-sqlite", "askar-postgres", "askar-memory"])
def test_an_askar_stream_that_cannot_find_its_place_again_says_so(stores, variant):
    """The one case a reopened Askar stream cannot place itself: every record of the
    page it served last is gone. It raises instead of skipping or repeating records."""
    add_tasks(stores, 10)
    store = stores[variant]
    stream = store.stream_records(TASK, batch_size=3)
    assert [next(stream).task_id for _ in range(3)] == ["t0000", "t0001", "t0002"]
    others = other_streams(store)
    for key in ("t0000", "t0001", "t0002"):
        store.delete_task(key)
    with pytest.raises(StorageError, match="lost its place"):
        next(stream)
    for other in others:
        other.close()


def test_more_live_streams_than_open_scans_each_serve_every_record_once(stores):
    """Five streams advanced in turn, a page each: on Askar only MAX_OPEN_SCANS keep a
    scan open, the others reopen theirs at every turn; every stream still serves every
    record once, in order."""
    keys = add_tasks(stores, 12)
    for name, store in stores.items():
        streams = [store.stream_records(TASK, batch_size=2) for _ in range(5)]
        served: list[list[str]] = [[] for _ in streams]
        for _ in range(7):
            for i, stream in enumerate(streams):
                served[i] += [t.task_id for t in itertools.islice(stream, 2)]
        assert served == [keys] * 5, name


# --- 9. timestamps out of range; SQLite URIs -----------------------------------------------------

PLUS_14, MINUS_14 = timezone(timedelta(hours=14)), timezone(timedelta(hours=-14))


@pytest.mark.parametrize(
    "stamp",
    [datetime(1, 1, 1, tzinfo=PLUS_14), datetime(9999, 12, 31, 23, tzinfo=MINUS_14)],
)
def test_timestamps_outside_the_utc_range_are_validation_errors(stores, stamp):
    """Before: bulk_upsert with created_at=datetime(1,1,1,tzinfo=+14h) raised
    'StorageError ... OverflowError'."""
    for name, store in stores.items():
        for field in ("created_at", "updated_at"):
            record = Task(task_id="t", task_type="x", status="s", **{field: stamp})
            error = refusal(lambda s=store, r=record: s.bulk_upsert(TASK, [r]))
            assert error.field == field, name
        assert store.count_tasks() == 0, name


def test_the_first_and_last_utc_instants_round_trip_everywhere(stores):
    first = datetime(1, 1, 1, tzinfo=UTC)
    last = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    records = [
        Task(task_id="first", task_type="x", status="s", created_at=first, updated_at=first),
        Task(task_id="last", task_type="x", status="s", created_at=last, updated_at=last),
    ]
    for name, store in stores.items():
        store.bulk_upsert(TASK, records)
        assert [store.get_task("first"), store.get_task("last")] == records, name


def test_every_variant_takes_part(every):
    assert sorted(every) == sorted(ALL_VARIANTS)
