"""The askar backend on real stores (SQLite file, SQLite in memory, PostgreSQL): records,
errors, filters, ordering, threads, streams, secrets, provisioning and file modes."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aries_askar import Store

from storage_core import kinds as K
from storage_core import open_storage
from storage_core.errors import (
    BackendUnavailableError,
    ConflictError,
    DuplicateRecordError,
    StorageIOError,
    UnsupportedOperationError,
    ValidationError,
)
from storage_core.interface import Capability
from storage_core.manager import StorageManager
from storage_core.records import (
    LogEntry,
    Policy,
    Registry,
    Resource,
    Task,
    TestLogEntry,
    TestResource,
    WhoisPresentation,
    WitnessFile,
)
from storage_core.testing.plugin import provisioned_storage
from webvh_storage_askar import layout

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2025, 5, 9, 22, 33, 41, 123456, tzinfo=UTC)


def with_query(uri: str, **params: Any) -> str:
    """`uri` with its query parameters replaced by `params`."""
    base = uri.partition("?")[0]
    return base + "?" + "&".join(f"{k}={v}" for k, v in params.items())


@pytest.fixture(params=["sqlite", "memory", "postgres"])
def askar_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/askar.db"
    if request.param == "memory":
        return "sqlite://:memory:"
    return request.getfixturevalue("askar_pg_database")


@pytest.fixture
def askar(askar_uri: str) -> Iterator[StorageManager]:
    with provisioned_storage({"backend": "askar", "url": askar_uri}) as manager:
        yield manager


@pytest.fixture
def sqlite_askar(tmp_path: Path) -> Iterator[StorageManager]:
    uri = f"sqlite://{tmp_path}/askar.db"
    with provisioned_storage({"backend": "askar", "url": uri}) as manager:
        yield manager


def sample(kind: str, i: int = 0) -> Any:
    """One record of each kind, with nested JSON and unicode to round-trip."""
    doc = {"id": f"doc{i}", "nested": {"list": [1, 2.5, None, True], "é": "ü"}}
    return {
        "log_entry": LogEntry(
            scid=f"scid{i}",
            did=f"did:webvh:scid{i}:example.com:ns:id{i}",
            domain="example.com",
            namespace="ns",
            identifier=f"id{i}",
            logs=[doc],
            deactivated=i % 2 == 1,
        ),
        "resource": Resource(
            resource_id=f"res{i}",
            scid=f"scid{i % 2}",
            did="did:webvh:x:example.com",
            resource_type="anonCredsSchema",
            resource_name=f"name{i}",
            content=doc,
            metadata={"m": i},
            proof=[doc],
        ),
        "witness_file": WitnessFile(scid=f"scid{i}", witness_proofs=[doc]),
        "whois": WhoisPresentation(scid=f"scid{i}", presentation=doc),
        "task": Task(
            task_id=f"task{i}",
            task_type="sync_records",
            status="started",
            progress={"done": i},
            message=None if i % 2 else "hi",
        ),
        "policy": Policy(
            policy_id=f"pol{i}", version="1.0", witness=True, watcher="w", policy_data=doc
        ),
        "registry": Registry(
            registry_id=f"reg{i}",
            registry_type="knownWitnesses",
            registry_data=doc,
            meta={"created": "now"},
        ),
        "test_log_entry": TestLogEntry(scid=f"scid{i}", logs=[doc], tags={"a": "b"}),
        "test_resource": TestResource(
            resource_id=f"res{i}", scid="s", content=doc, tags={"c": "d"}
        ),
    }[kind]


def data_fields(spec: K.KindSpec, record: Any) -> dict[str, Any]:
    return {name: getattr(record, name) for name in spec.data_fields}


def keys(spec: K.KindSpec, records: list[Any]) -> list[str]:
    return [spec.key_of(r) for r in records]


# --- every kind through the manager ---------------------------------------------------
@pytest.mark.parametrize("kind", list(K.KINDS))
def test_every_kind_create_get_update_upsert_delete(askar: StorageManager, kind: str) -> None:
    spec = K.KINDS[kind]
    first, second = sample(kind, 0), sample(kind, 1)
    created = askar.create_record(first)
    assert data_fields(spec, created) == data_fields(spec, first)
    assert created.record_version == 1
    assert askar.get_record(kind, spec.key_of(first)) == created
    with pytest.raises(DuplicateRecordError):
        askar.create_record(first)
    askar.create_record(second)

    field = next(
        f
        for f, t in spec.field_types.items()
        if t in (K.FieldType.DICT, K.FieldType.LIST, K.FieldType.JSON)
    )
    new_value = [{"changed": True}] if spec.field_types[field] is K.FieldType.LIST else {"x": 1}
    updated = askar.update_record(kind, spec.key_of(first), **{field: new_value})
    assert getattr(updated, field) == new_value and updated.record_version == 2
    assert askar.get_record(kind, spec.key_of(first)) == updated
    if spec.timestamps:
        assert updated.created_at == created.created_at
        assert updated.updated_at >= created.updated_at

    with pytest.raises(ConflictError):
        askar.update_record(kind, spec.key_of(first), expected_version=1, **{field: new_value})
    assert askar.get_record(kind, spec.key_of(first)) == updated  # nothing written

    upserted = askar.upsert_record(first, expected_version=2)
    assert upserted.record_version == 3
    assert data_fields(spec, upserted) == data_fields(spec, first)
    if spec.timestamps:
        assert upserted.created_at == created.created_at
    with pytest.raises(ConflictError):
        askar.upsert_record(first, expected_version=0)
    with pytest.raises(ConflictError):
        askar.upsert_record(first, expected_version=7)

    assert keys(spec, askar.list_records(kind)) == [spec.key_of(first), spec.key_of(second)]
    assert askar.count_records(kind) == 2
    assert [spec.key_of(r) for r in askar.stream_records(kind, batch_size=1)] == keys(
        spec, askar.list_records(kind)
    )
    assert askar.delete_record(kind, spec.key_of(first)) is True
    assert askar.delete_record(kind, spec.key_of(first)) is False
    assert askar.get_record(kind, spec.key_of(first)) is None
    assert askar.update_record(kind, spec.key_of(first), **{field: new_value}) is None
    assert askar.count_records(kind) == 1


def test_upsert_creates_when_missing(askar: StorageManager) -> None:
    policy = askar.create_or_update_policy("active", {"version": "1"}, expected_version=0)
    assert policy.record_version == 1
    with pytest.raises(ConflictError):
        askar.create_or_update_policy("other", {"version": "1"}, expected_version=3)
    assert askar.get_policy("other") is None


# --- exact round trips --------------------------------------------------------------------
def test_bulk_upsert_stores_records_exactly_as_given(askar: StorageManager) -> None:
    records = [
        replace(
            sample("log_entry", i),
            created_at=T0 + timedelta(microseconds=i),
            updated_at=T0 + timedelta(days=1, microseconds=7),
            record_version=5 + i,
        )
        for i in range(3)
    ]
    assert askar.bulk_upsert("log_entry", records) == 3
    assert askar.list_records("log_entry") == records
    again = [replace(r, logs=[], record_version=9) for r in reversed(records)]
    askar.bulk_upsert("log_entry", again)
    assert askar.list_records("log_entry") == list(reversed(again))  # places kept


def test_real_did_log_round_trips_byte_for_byte(askar: StorageManager, vectors_dir: Path) -> None:
    for i, folder in enumerate(sorted(p for p in vectors_dir.iterdir() if p.is_dir())):
        lines = (folder / "did.jsonl").read_text().splitlines()
        logs = [orjson.loads(line) for line in lines if line]
        witness = folder / "did-witness.json"
        proofs = orjson.loads(witness.read_bytes()) if witness.exists() else []
        scid = f"{logs[0]['parameters']['scid']}-{folder.name}"  # suites reuse SCIDs
        askar.create_log_entry(
            scid,
            logs[-1]["state"]["id"],
            "example.com",
            "ns",
            f"id{i}",
            logs,
            deactivated=bool(logs[-1]["parameters"].get("deactivated")),
        )
        askar.create_or_update_witness_file(scid, proofs)
        stored = askar.get_log_entry(scid)
        assert [orjson.dumps(line) for line in stored.logs] == [
            orjson.dumps(orjson.loads(line)) for line in lines if line
        ]
        assert askar.get_witness_file(scid).witness_proofs == proofs


def test_timestamps_are_aware_utc_with_microseconds(askar: StorageManager) -> None:
    task = askar.create_task("t1", "set_policy", "started")
    fetched = askar.get_task("t1")
    assert fetched.created_at == task.created_at
    assert fetched.created_at.tzinfo is not None
    assert fetched.created_at.utcoffset() == timedelta(0)
    askar.bulk_upsert("task", [replace(task, task_id="t2", created_at=T0, updated_at=T0)])
    assert askar.get_task("t2").created_at == T0
    assert askar.get_task("t2").created_at.microsecond == 123456


# --- ordering, filters, pagination --------------------------------------------------------
def test_insertion_order_survives_updates_and_moves_on_recreate(askar: StorageManager) -> None:
    for name in "abcd":
        askar.create_task(name, "sync_records", "started")
    askar.update_task("b", status="finished")
    askar.upsert_record(Task(task_id="c", task_type="sync_records", status="x"))
    askar.bulk_upsert("task", [replace(askar.get_task("a"), message="m")])
    assert [t.task_id for t in askar.get_tasks()] == list("abcd")
    askar.delete_task("a")
    askar.create_task("a", "sync_records", "started")
    assert [t.task_id for t in askar.get_tasks()] == list("bcda")
    assert [t.task_id for t in askar.stream_records("task", batch_size=3)] == list("bcda")


def test_filters_limits_and_offsets(askar: StorageManager) -> None:
    for i in range(12):
        askar.create_record(sample("resource", i))
    res = lambda *a, **kw: [r.resource_id for r in askar.get_resources(*a, **kw)]  # noqa: E731
    evens = [f"res{i}" for i in range(0, 12, 2)]
    assert res({"scid": "scid0"}) == evens
    assert res({"scid": ["scid0", "scid1"]}) == [f"res{i}" for i in range(12)]
    assert res({"scid": "scid0"}, limit=2, offset=1) == evens[1:3]
    assert res({"scid": "scid0", "resource_type": "other"}) == []
    assert res({"resource_id": ["res7", "res2", "res9"]}) == ["res2", "res7", "res9"]
    assert res({"resource_id": ["res7", "res2"], "scid": "scid1"}) == ["res7"]
    assert res({"resource_id": []}) == []
    assert res(limit=3, offset=10) == ["res10", "res11"]
    assert res(limit=0) == []
    assert res(offset=12) == []
    assert askar.count_resources({"scid": "scid1"}) == 6
    assert askar.count_resources({"resource_id": ["res1", "nope"]}) == 1


def test_boolean_filters(askar: StorageManager) -> None:
    for i in range(4):
        askar.create_record(sample("log_entry", i))
    assert [e.scid for e in askar.get_log_entries({"deactivated": True})] == ["scid1", "scid3"]
    assert askar.count_log_entries({"deactivated": [True, False]}) == 4


def test_same_pages_as_the_sql_backend(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    try:
        import webvh_storage_sqlalchemy.backend  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the SQL backend is not available yet: {exc}")
    dual = request.getfixturevalue("dual_storage")
    for manager in dual.values():
        for i in range(15):
            manager.create_record(sample("resource", i))
        manager.delete_resource("res3")
        manager.create_record(sample("resource", 3))
        manager.update_resource("res5", resource_type="other")
    queries = [
        ({}, None, 0),
        ({}, 4, 3),
        ({"scid": "scid1"}, 3, 1),
        ({"resource_type": "other"}, None, 0),
        ({"resource_id": ["res9", "res3", "res1"]}, None, 0),
        ({"scid": ["scid0"]}, 2, 5),
    ]
    for filters, limit, offset in queries:
        pages = {
            name: [r.resource_id for r in m.get_resources(filters, limit, offset)]
            for name, m in dual.items()
        }
        assert pages["askar"] == pages["storage"], (filters, limit, offset)
        assert dual["askar"].count_resources(filters) == dual["storage"].count_resources(filters)


# --- the sync API from async code and from many threads ------------------------------------
async def test_sync_api_inside_a_running_event_loop(askar: StorageManager) -> None:
    askar.create_task("t1", "sync_records", "started")
    assert askar.get_task("t1").status == "started"
    assert askar.update_task("t1", status="finished").record_version == 2
    assert [t.task_id for t in askar.stream_records("task")] == ["t1"]
    await asyncio.sleep(0)
    await asyncio.to_thread(askar.create_task, "t2", "sync_records", "started")
    assert askar.count_tasks() == 2


def test_many_threads_share_one_backend(askar: StorageManager) -> None:
    askar.create_task("counter", "sync_records", "started", progress={"n": 0})
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(25):
                tid = f"t{t}-{i}"
                askar.create_task(tid, "sync_records", "started")
                assert askar.update_task(tid, status="finished").record_version == 2
                if i % 5 == 0:
                    assert askar.delete_task(tid)
                while True:  # optimistic increment: retry on conflict
                    current = askar.get_task("counter")
                    try:
                        askar.update_task(
                            "counter",
                            expected_version=current.record_version,
                            progress={"n": current.progress["n"] + 1},
                        )
                        break
                    except ConflictError:
                        continue
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]
    assert askar.count_tasks({"status": "finished"}) == 8 * 20
    counter = askar.get_task("counter")
    assert counter.progress == {"n": 200}
    assert counter.record_version == 201


def test_concurrent_upserts_of_one_new_key(askar: StorageManager) -> None:
    barrier = threading.Barrier(8)
    results: list[Any] = []

    def upsert(t: int) -> None:
        barrier.wait()
        results.append(askar.create_or_update_registry("reg", "knownWitnesses", {"t": t}))

    threads = [threading.Thread(target=upsert, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.record_version for r in results) == list(range(1, 9))
    assert askar.get_registry("reg").record_version == 8


def test_upsert_racing_a_create_of_its_key_succeeds_as_version_2(
    askar_pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upsert finds the key missing, then a plain insert (a `create`, here from
    another store) takes the key before the upsert inserts: the upsert meets DUPLICATE
    and re-runs as a replace. Both succeed, one record, version 2; with
    expected_version=0 the upsert gets ConflictError instead.

    Two upserts never race like this: Askar serialises write transactions (SQLite takes
    the write lock at BEGIN, PostgreSQL locks the profile row), but a create is a plain
    session insert, which PostgreSQL lets through. The race is made exact, not hoped
    for: between its fetch and its insert (where it encodes the new value) the upsert
    waits for the create.
    """
    real_encode = layout.encode_dict
    rival_pending: list[Callable[[], Any]] = []

    def encode_after_rival(spec: K.KindSpec[Any], data: dict[str, Any]) -> Any:
        if rival_pending:
            rival_pending.pop()()  # on the upsert's loop thread, inside its transaction
        return real_encode(spec, data)

    def registry(key: str, by: str) -> Registry:
        return Registry(registry_id=key, registry_type="knownWitnesses", registry_data={"by": by})

    monkeypatch.setattr(layout, "encode_dict", encode_after_rival)
    with (
        provisioned_storage({"backend": "askar", "url": askar_pg_database}) as first,
        open_storage("askar", askar_pg_database) as rival,
    ):
        created: list[Registry] = []
        rival_pending.append(lambda: created.append(rival.create_record(registry("reg", "rival"))))
        won = first.upsert_record(registry("reg", "first"))
        assert not rival_pending and [r.record_version for r in created] == [1]
        assert (won.record_version, won.registry_data) == (2, {"by": "first"})
        assert first.count_records("registry") == 1
        assert first.get_registry("reg") == won

        rival_pending.append(lambda: rival.create_record(registry("new", "rival")))
        with pytest.raises(ConflictError):
            first.upsert_record(registry("new", "first"), expected_version=0)
        kept = first.get_registry("new")
        assert (kept.record_version, kept.registry_data) == (1, {"by": "rival"})


# --- streams release their connection ------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgres"])
def small_pool_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/pool.db?max_connections=4"
    return with_query(request.getfixturevalue("askar_pg_database"), max_connections=4)


@pytest.mark.timeout(120)
def test_abandoned_streams_do_not_exhaust_the_pool(small_pool_uri: str) -> None:
    with provisioned_storage({"backend": "askar", "url": small_pool_uri}) as manager:
        manager.bulk_upsert("task", [sample("task", i) for i in range(100)])
        for _ in range(50):
            stream = manager.stream_records("task", batch_size=5)
            assert next(stream).task_id == "task0"
            stream.close()
        for _ in range(50):  # dropped without close(): the generator finaliser frees it
            assert next(iter(manager.stream_records("task", batch_size=5))).task_id == "task0"
        assert manager.count_tasks() == 100
        assert len(manager.get_tasks(limit=10, offset=50)) == 10
        open_streams = [manager.stream_records("task", batch_size=2) for _ in range(3)]
        assert [next(s).task_id for s in open_streams] == ["task0"] * 3
        manager.create_task("late", "sync_records", "started")
        rest = [t.task_id for t in open_streams[0]]
        assert rest[:2] == ["task1", "task2"] and len(rest) >= 99
        for stream in open_streams[1:]:
            stream.close()
        assert manager.get_task("late") is not None


def test_stream_yields_everything_in_order_with_small_batches(askar: StorageManager) -> None:
    askar.bulk_upsert("task", [sample("task", i) for i in range(70)])
    assert [t.task_id for t in askar.stream_records("task", batch_size=7)] == [
        f"task{i}" for i in range(70)
    ]
    assert [t.task_id for t in askar.stream_records("task", {"task_id": ["task3", "task1"]})] == [
        "task1",
        "task3",
    ]


def test_close_with_an_open_stream_does_not_hang(tmp_path: Path) -> None:
    manager = open_storage("askar", f"sqlite://{tmp_path}/s.db")
    manager.init_db()
    manager.bulk_upsert("task", [sample("task", i) for i in range(50)])
    stream = manager.stream_records("task", batch_size=2)
    next(stream)
    manager.close()
    with pytest.raises(BackendUnavailableError, match="closed"):
        list(stream)


# --- secrets ---------------------------------------------------------------------------------
def test_raw_key_never_shown_and_wrong_key_is_a_clear_error(tmp_path: Path) -> None:
    uri = f"sqlite://{tmp_path}/secret.db"
    key, wrong = Store.generate_raw_key(), Store.generate_raw_key()
    with provisioned_storage(
        {"backend": "askar", "url": uri, "options": {"key": key, "key_method": "raw"}}
    ) as manager:
        manager.create_task("t1", "sync_records", "started")
        shown = f"{manager!r} {manager.info()} {manager.backend!r} {manager.backend.describe()}"
        assert key not in shown and manager.info()["key_method"] == "raw"

    for options in (
        {"key": wrong, "key_method": "raw"},
        {"key_method": "none"},
        {"key": "pass", "key_method": "kdf:argon2i"},
    ):
        manager = open_storage("askar", uri, **options)
        try:
            with pytest.raises(StorageIOError) as caught:
                manager.init_db()
            assert "wrong Askar key or key method" in str(caught.value)
            assert key not in str(caught.value) and wrong not in str(caught.value)
            with pytest.raises(StorageIOError):
                manager.get_task("t1")  # lazily opening fails the same way
        finally:
            manager.close()

    manager = open_storage("askar", uri, key=key, key_method="raw")
    try:
        manager.init_db()
        assert manager.get_task("t1").status == "started"
    finally:
        manager.close()


def test_key_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = Store.generate_raw_key()
    monkeypatch.setenv("ASKAR_DB", f"sqlite://{tmp_path}/env.db")
    monkeypatch.setenv("ASKAR_KEY", key)
    monkeypatch.setenv("ASKAR_KEY_METHOD", "raw")
    monkeypatch.setenv("ASKAR_PROFILE", "webvh")
    with provisioned_storage({"backend": "askar"}) as manager:
        manager.create_task("t1", "sync_records", "started")
        assert manager.backend.describe() == {
            "backend": "askar",
            "url": f"sqlite://{tmp_path}/env.db",
            "key_method": "raw",
            "profile": "webvh",
        }
        assert key not in repr(manager.backend.config)
    assert (tmp_path / "env.db").exists()


def test_uri_password_is_masked(tmp_path: Path) -> None:
    uri = "postgres://webvh:s3cr3t-pw@127.0.0.1:1/none?connect_timeout=1&max_connections=2"
    manager = open_storage("askar", uri)
    try:
        backend = manager.backend
        facts = f"{manager!r} {backend!r} {backend.describe()} {backend.config!r}"
        assert "s3cr3t-pw" not in facts and "***" in facts
        with pytest.raises(BackendUnavailableError) as caught:
            manager.init_db()
        assert "s3cr3t-pw" not in str(caught.value)
        assert manager.health_check() is False
    finally:
        manager.close()


@pytest.mark.parametrize(
    "options",
    [{"key_method": "rot13"}, {"key_method": "raw"}, {"key_method": "none", "key": "k"}],
)
def test_bad_key_settings_are_refused(tmp_path: Path, options: dict) -> None:
    with pytest.raises(ValidationError) as caught:
        open_storage("askar", f"sqlite://{tmp_path}/x.db", **options)
    assert "'k'" not in str(caught.value)


def test_bad_uri_is_refused() -> None:
    with pytest.raises(ValidationError):
        open_storage("askar", "mysql://user:pw@host/db")


# --- provisioning, persistence and files -----------------------------------------------------
@pytest.mark.parametrize("where", ["sqlite", "postgres"])
def test_provision_keeps_data_and_recreate_empties(
    where: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    uri = (
        f"sqlite://{tmp_path}/p.db"
        if where == "sqlite"
        else request.getfixturevalue("askar_pg_database")
    )
    with provisioned_storage({"backend": "askar", "url": uri}) as manager:
        manager.create_task("t1", "sync_records", "started")
        assert Capability.PERSISTENT in manager.capabilities
    manager = open_storage("askar", uri)
    try:
        manager.init_db()
        assert manager.get_task("t1") is not None
        manager.init_db()
        assert manager.count_tasks() == 1
        manager.init_db(recreate=True)
        assert manager.count_tasks() == 0
    finally:
        manager.close()
    manager = open_storage("askar", uri)  # opened lazily, without init_db
    try:
        assert manager.count_tasks() == 0
        manager.create_task("t2", "sync_records", "started")
    finally:
        manager.close()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_sqlite_files_are_owner_only(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        db = tmp_path / "mode.db"
        for recreate in (False, True, False):
            with provisioned_storage({"backend": "askar", "url": f"sqlite://{db}"}) as manager:
                if not recreate:
                    manager.init_db(recreate=False)
                manager.create_task(f"t{recreate}", "sync_records", "started")
                files = [p for p in tmp_path.iterdir() if p.name.startswith("mode.db")]
                assert db in files
                assert {p.name: _mode(p) for p in files} == {p.name: 0o600 for p in files}
        manager = open_storage("askar", f"sqlite://{tmp_path}/lazy.db")
        try:
            manager.create_task("t", "sync_records", "started")
            assert _mode(tmp_path / "lazy.db") == 0o600
        finally:
            manager.close()
    finally:
        os.umask(old_umask)


def test_memory_stores_are_separate_and_not_persistent() -> None:
    with (
        provisioned_storage({"backend": "askar", "url": "sqlite://:memory:"}) as one,
        provisioned_storage({"backend": "askar", "url": "sqlite://:memory:"}) as two,
    ):
        one.create_task("t1", "sync_records", "started")
        assert two.get_task("t1") is None
        assert Capability.PERSISTENT not in one.capabilities


# --- lifecycle and the manager's view -------------------------------------------------------
def test_no_sql_sessions(sqlite_askar: StorageManager) -> None:
    for use in (lambda m: m.engine, lambda m: m.SessionLocal, lambda m: m.get_session()):
        with pytest.raises(UnsupportedOperationError):
            use(sqlite_askar)


def test_close_is_idempotent_and_stops_the_loop_thread(tmp_path: Path) -> None:
    before = {t.ident for t in threading.enumerate()}
    manager = open_storage("askar", f"sqlite://{tmp_path}/c.db")
    manager.init_db()
    assert manager.health_check()
    extra = [t for t in threading.enumerate() if t.ident not in before]
    assert extra
    manager.close()
    manager.close()
    assert not any(t.is_alive() for t in extra)
    with pytest.raises(BackendUnavailableError):
        manager.get_task("t")
    assert manager.health_check() is False


def test_abandoned_backend_is_cleaned_up_at_exit(tmp_path: Path) -> None:
    code = (
        "from storage_core import open_storage\n"
        f"m = open_storage('askar', 'sqlite://{tmp_path}/exit.db')\n"
        "m.init_db(); m.create_task('t', 'sync_records', 'started')\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert "Error" not in done.stderr


def test_only_backend_module_imports_aries_askar() -> None:
    code = (
        "import sys\n"
        "import webvh_storage_askar.plugin, webvh_storage_askar.config\n"
        "import webvh_storage_askar.layout, webvh_storage_askar.errors\n"
        "import storage_core.loop, webvh_storage_askar.lifecycle\n"
        "import webvh_storage_askar.sessions\n"
        "assert 'aries_askar' not in sys.modules, 'imported aries_askar'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_backend_raises_storage_errors_directly(sqlite_askar: StorageManager) -> None:
    backend = sqlite_askar.backend
    task = replace(sample("task"), created_at=T0, updated_at=T0)
    backend.create(K.TASK, task)
    with pytest.raises(DuplicateRecordError) as caught:
        backend.create(K.TASK, task)  # straight to the backend, not via the manager
    assert (caught.value.kind, caught.value.key) == ("task", "task0")
    assert backend.delete(K.TASK, "missing") is False
    assert backend.update(K.TASK, "missing", {"status": "x"}, T0) is None
