"""SQL-specific behaviour of the sqlalchemy backend on real databases: SQLite file,
SQLite :memory: and PostgreSQL (the `pg_database` fixture; required when CI=true)."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Engine, func, select, text

from storage_core import open_storage
from storage_core.errors import (
    BackendUnavailableError,
    ConflictError,
    DuplicateRecordError,
    StorageError,
    StorageIOError,
    ValidationError,
)
from storage_core.interface import ArchivedEntry, Capability
from storage_core.records import LogEntry, Resource, Task
from storage_core.testing.plugin import provisioned_storage
from webvh_storage_sqlalchemy.models import LogEntryRow

SQL_VARIANTS = ["sqlite-file", "sqlite-memory", "postgres"]


def _url(variant: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if variant == "sqlite-file":
        return f"sqlite:///{tmp_path}/store.db"
    if variant == "sqlite-memory":
        return "sqlite:///:memory:"
    return request.getfixturevalue("pg_database")


@pytest.fixture(params=SQL_VARIANTS)
def store(request: pytest.FixtureRequest, tmp_path: Path):
    config = {"backend": "sqlalchemy", "url": _url(request.param, request, tmp_path)}
    with provisioned_storage(config) as manager:
        yield manager


@pytest.fixture
def sqlite_file(tmp_path: Path):
    with provisioned_storage({"backend": "sqlalchemy", "url": f"sqlite:///{tmp_path}/s.db"}) as m:
        yield m


@pytest.fixture
def pg_store(pg_database: str):
    with provisioned_storage({"backend": "sqlalchemy", "url": pg_database}) as manager:
        yield manager


def _entry(scid: str, logs=None, **kw) -> LogEntry:
    return LogEntry(
        scid=scid,
        did=f"did:webvh:{scid}:example.com",
        domain="example.com",
        namespace="ns",
        identifier=scid,
        logs=logs or [{"v": scid}],
        **kw,
    )


def _add(manager, scid: str, **kw) -> LogEntry:
    return manager.create_record(_entry(scid, **kw))


# --- SQLite engine setup -------------------------------------------------------------------
def test_sqlite_file_uses_wal_busy_timeout_and_durable_sync(sqlite_file):
    with sqlite_file.engine.connect() as conn:
        pragma = lambda name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
        assert pragma("journal_mode") == "wal"
        assert pragma("busy_timeout") >= 30_000
        assert pragma("synchronous") == 2  # FULL
        assert pragma("foreign_keys") == 1


def test_sqlite_synchronous_knob(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STORAGE_SQLITE_SYNCHRONOUS", "normal")
    config = {"backend": "sqlalchemy", "url": f"sqlite:///{tmp_path}/n.db"}
    with provisioned_storage(config) as m, m.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL


def test_sqlite_wal_autocheckpoint_knob(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    url = f"sqlite:///{tmp_path}/w.db"
    config = {"backend": "sqlalchemy", "url": url}
    with provisioned_storage(config) as m, m.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
    monkeypatch.setenv("STORAGE_SQLITE_WAL_AUTOCHECKPOINT", "8000")
    with provisioned_storage(config) as m, m.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 8000
    for bad in ("-1", "lots", "1; DROP TABLE x"):
        monkeypatch.setenv("STORAGE_SQLITE_WAL_AUTOCHECKPOINT", bad)
        with pytest.raises(ValidationError, match=r"(?i)sqlite_wal_autocheckpoint"):
            open_storage("sqlalchemy", url)


def test_new_sqlite_file_is_private(tmp_path: Path):
    path = tmp_path / "sub" / "private.db"
    with provisioned_storage({"backend": "sqlalchemy", "url": f"sqlite:///{path}"}) as m:
        _add(m, "a")
        for file in [path, *path.parent.glob("private.db-*")]:
            assert stat.S_IMODE(os.stat(file).st_mode) == 0o600, file


def test_memory_store_capabilities(tmp_path: Path):
    with provisioned_storage({"backend": "sqlalchemy", "url": "sqlite://"}) as m:
        assert Capability.PERSISTENT not in m.capabilities
        assert Capability.SQL_SESSIONS in m.capabilities
    with provisioned_storage({"backend": "sqlalchemy", "url": f"sqlite:///{tmp_path}/c.db"}) as m:
        assert Capability.PERSISTENT in m.capabilities
        assert Capability.SERVER_SIDE_CURSORS not in m.capabilities


# --- SQL access through the manager ----------------------------------------------------------
def test_engine_session_local_and_get_session(store):
    _add(store, "s1")
    assert isinstance(store.engine, Engine)
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM log_entries")).scalar() == 1
    with store.SessionLocal() as session:
        assert session.execute(select(func.count()).select_from(LogEntryRow)).scalar() == 1
    with store.get_session() as session:
        row = session.get(LogEntryRow, "s1")
        assert row.did == "did:webvh:s1:example.com" and row.record_version == 1
        assert row.logs == [{"v": "s1"}]


def test_info_reports_dialect_and_revision(store):
    info = store.info()
    assert info["backend"] == "sqlalchemy"
    assert info["dialect"] in ("sqlite", "postgresql")
    assert info["schema_revision"] == "0008_long_keys"


# --- JSON and timestamps -------------------------------------------------------------------
def test_did_log_round_trips_byte_identical(store, vectors_dir: Path):
    files = sorted(vectors_dir.glob("*/did.jsonl"))
    assert files
    for i, path in enumerate(files):
        lines = [line for line in path.read_text().splitlines() if line]
        logs = [json.loads(line) for line in lines]
        _add(store, f"v{i}", logs=logs)
        for got in (
            store.get_log_entry(f"v{i}"),
            store.get_log_entries({"scid": f"v{i}"})[0],
            next(iter(store.stream_records("log_entry", {"scid": f"v{i}"}))),
        ):
            assert orjson.dumps(got.logs) == orjson.dumps(logs)
            # key order included: re-serialising reproduces the file's own lines
            assert [json.dumps(entry) for entry in got.logs] == [
                json.dumps(json.loads(line)) for line in lines
            ]
            assert list(got.logs[0]) == list(json.loads(lines[0]))


def test_key_order_is_kept_not_sorted(store):
    doc = {"z": 1, "a": {"y": [3, {"c": 1, "b": 2}], "x": None}, "m": 1.5}
    store.create_record(
        Resource(
            resource_id="r",
            scid="s",
            did="d",
            resource_type="t",
            resource_name="n",
            content=doc,
            metadata=None,
            proof=[doc],
        )
    )
    got = store.get_resource("r")
    assert orjson.dumps(got.content) == orjson.dumps(doc)
    assert got.metadata is None and orjson.dumps(got.proof) == orjson.dumps([doc])


def test_json_null_reads_back_as_none(store):
    store.create_record(
        Resource(
            resource_id="r", scid="s", did="d", resource_type="t", resource_name="n", content=None
        )
    )
    assert store.get_resource("r").content is None
    assert store.update_resource("r", content={"a": 1}).content == {"a": 1}
    assert store.update_resource("r", content=None).content is None


def test_pg_json_columns_are_json_not_jsonb(pg_store):
    with pg_store.engine.connect() as conn:
        types = dict(
            conn.execute(
                text(
                    "SELECT table_name || '.' || column_name, data_type"
                    " FROM information_schema.columns"
                    " WHERE data_type IN ('json', 'jsonb')"
                )
            ).all()
        )
    assert types["log_entries.logs"] == "json"
    assert types["resources.content"] == "json"
    assert "jsonb" not in types.values()


def test_timestamps_are_aware_utc_with_microseconds(store):
    when = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=5)))
    store.bulk_upsert(
        "task", [Task(task_id="t", task_type="x", status="s", created_at=when, updated_at=when)]
    )
    got = store.get_task("t")
    assert got.created_at == when and got.created_at.tzinfo == UTC
    assert got.created_at.microsecond == 123456
    listed = store.get_tasks()[0]
    assert listed.updated_at == when and listed.updated_at.tzinfo == UTC


# --- ordering ---------------------------------------------------------------------------
def test_insertion_order_survives_updates_and_moves_on_recreate(store):
    for scid in "abcde":
        _add(store, scid)
    store.update_log_entry("a", logs=[1])
    store.upsert_record(_entry("b", logs=[2]))
    store.delete_log_entry("c")
    _add(store, "c")
    store.bulk_upsert("log_entry", [_entry("d", logs=[3]), _entry("f")])
    expected = ["a", "b", "d", "e", "c", "f"]
    assert [r.scid for r in store.get_log_entries()] == expected
    assert [r.scid for r in store.stream_records("log_entry", batch_size=2)] == expected
    pages = [store.get_log_entries(limit=4, offset=o) for o in range(0, 6, 4)]
    assert [r.scid for page in pages for r in page] == expected


# --- streaming releases its connection ------------------------------------------------------
def _write_from_another_thread(store, scid: str) -> bool:
    """True once a create on another thread has finished (False: it is still blocked)."""
    done = threading.Event()
    writer = threading.Thread(target=lambda: (_add(store, scid), done.set()), daemon=True)
    writer.start()
    writer.join(timeout=30)  # a guard against a deadlock, not a measurement
    return done.is_set()


@pytest.mark.parametrize("variant", SQL_VARIANTS)
def test_abandoned_stream_returns_its_connection(variant, request, tmp_path: Path):
    """Every dialect reads page by page: between pages a stream holds no pooled
    connection and not the :memory: lock, so another thread can write while it is open."""
    config = {"backend": "sqlalchemy", "url": _url(variant, request, tmp_path)}
    with provisioned_storage(config) as store:
        store.bulk_upsert("log_entry", [_entry(f"k{i:03d}") for i in range(50)])
        pool = store.engine.pool
        kept = store.backend._connections  # the fast paths' idle entries are not in use
        in_use = (
            (lambda: pool.checkedout() - kept.idle_count)
            if variant != "sqlite-memory"
            else (lambda: 0)  # StaticPool
        )
        baseline = in_use()
        stream = store.stream_records("log_entry", batch_size=5)
        assert next(stream).scid == "k000"
        assert in_use() == baseline
        assert _write_from_another_thread(store, "written-while-streaming")
        stream.close()
        assert in_use() == baseline
        # dropping an unfinished iterator also releases it
        stream = store.stream_records("log_entry", batch_size=5)
        next(stream)
        del stream
        assert in_use() == baseline
        assert _write_from_another_thread(store, "written-after-streaming")


# --- concurrency --------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["sqlite-file", "sqlite-memory"])
def test_concurrent_writer_threads_do_not_hit_locked(variant, request, tmp_path: Path):
    config = {"backend": "sqlalchemy", "url": _url(variant, request, tmp_path)}
    errors: list[BaseException] = []
    with provisioned_storage(config) as store:

        def work(worker: int) -> None:
            try:
                for i in range(40):
                    scid = f"w{worker}-{i}"
                    _add(store, scid)
                    store.update_log_entry(scid, logs=[i])
                    store.upsert_record(_entry(f"shared-{i % 5}"))
                    store.get_log_entry(scid)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[:3]
        assert store.count_log_entries() == 8 * 40 + 5
        seqs = [r.scid for r in store.get_log_entries()]
        assert len(seqs) == len(set(seqs))


# --- errors ----------------------------------------------------------------------------------
def test_duplicate_create_is_translated(store):
    _add(store, "dup")
    with pytest.raises(DuplicateRecordError) as info:
        _add(store, "dup")
    assert info.value.key == "dup" and info.value.kind == "log_entry"


def test_version_conflicts(store):
    _add(store, "v")
    assert store.update_log_entry("v", expected_version=1, logs=[1]).record_version == 2
    with pytest.raises(ConflictError) as info:
        store.update_log_entry("v", expected_version=1, logs=[2])
    assert info.value.actual == 2
    assert store.update_log_entry("missing", logs=[]) is None
    with pytest.raises(ConflictError):
        store.upsert_record(_entry("v"), expected_version=0)
    with pytest.raises(ConflictError):
        store.upsert_record(_entry("new"), expected_version=1)
    assert store.upsert_record(_entry("new"), expected_version=0).record_version == 1
    assert store.upsert_record(_entry("new"), expected_version=1).record_version == 2


def test_unreachable_postgres_is_unavailable_quickly_and_masked():
    start = time.monotonic()
    store = open_storage(
        "sqlalchemy", "postgresql://admin:hunter2secret@127.0.0.1:1/nodb", connect_timeout=2
    )
    try:
        with pytest.raises(BackendUnavailableError) as info:
            store.init_db()
        assert "hunter2secret" not in str(info.value)
        with pytest.raises(BackendUnavailableError) as info:
            store.get_log_entry("x")
        assert "hunter2secret" not in str(info.value)
        assert store.health_check() is False
        assert "hunter2secret" not in repr(store)
    finally:
        store.close()
    assert time.monotonic() - start < 10


def test_read_only_sqlite_is_a_storage_io_error(tmp_path: Path):
    path = tmp_path / "ro.db"
    with provisioned_storage({"backend": "sqlalchemy", "url": f"sqlite:///{path}"}) as m:
        _add(m, "a")
    store = open_storage("sqlalchemy", f"sqlite:///file:{path}?mode=ro&uri=true")
    try:
        assert store.get_log_entry("a").scid == "a"
        with pytest.raises(StorageIOError):
            _add(store, "b")
    finally:
        store.close()


def test_every_failure_is_a_storage_error(tmp_path: Path):
    store = open_storage("sqlalchemy", f"sqlite:///{tmp_path}/never-provisioned.db")
    try:
        with pytest.raises(StorageError) as info:
            store.get_log_entry("a")
        assert "sqlite3" not in type(info.value).__module__
    finally:
        store.close()


def test_url_password_is_masked(pg_database: str):
    url = pg_database.replace("postgres@", "postgres:pw-4a9f17@", 1)
    assert "pw-4a9f17" in url  # trust auth ignores the password
    with provisioned_storage({"backend": "sqlalchemy", "url": url}) as store:
        for shown in (
            repr(store),
            repr(store.backend),
            str(store.info()),
            str(store.backend.describe()),
            str(store.masked_url),
        ):
            assert "pw-4a9f17" not in shown
        assert "***" in store.info()["url"]


# --- Askar archive -----------------------------------------------------------------------
def test_archive_streams_in_code_point_order_whatever_the_database_collation(pg_server):
    """On a PostgreSQL database created with an en-US collation the archive still
    streams (and pages) in code-point order, as SQLite, Askar and the memory plugin do."""
    from tests.pg import require_pg

    require_pg(pg_server)
    name = f"webvh_test_icu_{os.getpid()}_{time.monotonic_ns() % 10**8}"
    conn = pg_server._connect()
    try:
        conn.cursor().execute(
            f'CREATE DATABASE "{name}" TEMPLATE template0 LOCALE_PROVIDER icu '
            "ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
        )
    finally:
        conn.close()
    pg_server.created.append(name)
    names = ["b", "B", "_x", "a", "Z", "\u00e9", "A1", "a0"]
    with provisioned_storage(
        {"backend": "sqlalchemy", "url": pg_server.sqlalchemy_url(name)}
    ) as store:
        store.archive_upsert([ArchivedEntry("cat", n, n) for n in names])
        store.archive_upsert([ArchivedEntry("Cat", "x", "x"), ArchivedEntry("_cat", "x", "x")])
        streamed = [(e.category, e.name) for e in store.archive_stream(batch_size=3)]
    expected = sorted([("cat", n) for n in names] + [("Cat", "x"), ("_cat", "x")])
    assert streamed == expected  # en-US would give _cat, cat (_x, a, a0, A1, b, B, ...), Cat


def test_archive_round_trip(store):
    rows = [
        ArchivedEntry("webvh:b", "2", '{"x": 1}', {"scid": "s2"}),
        ArchivedEntry("webvh:a", "1", "verbatim \u00e9 text"),
        ArchivedEntry("webvh:b", "1", "", {"t": "v", "a": "b"}),
    ]
    assert store.archive_upsert(rows) == 3
    assert store.archive_upsert([ArchivedEntry("webvh:a", "1", "replaced", {"k": "v"})]) == 1
    assert list(store.archive_stream()) == [
        ArchivedEntry("webvh:a", "1", "replaced", {"k": "v"}),
        ArchivedEntry("webvh:b", "1", "", {"t": "v", "a": "b"}),
        ArchivedEntry("webvh:b", "2", '{"x": 1}', {"scid": "s2"}),
    ]
    assert [e.name for e in store.archive_stream("webvh:b", batch_size=1)] == ["1", "2"]
    assert store.archive_count() == 3 and store.archive_count("webvh:b") == 2
    assert list(store.archive_stream("none")) == []
    assert store.archive_get("webvh:b", ["1", "3"]) == {"1": rows[2]}
