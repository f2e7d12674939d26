"""The sqlalchemy backend's DBAPI fast paths (webvh_storage_sqlalchemy.connections and
the dialects): they must return exactly what the SQLAlchemy paths return, and recover
like them.

- SQLite: get by key, create, count and bulk upsert (executemany) on pooled DBAPI
  connections; streams fetch undecoded rows and convert each when yielded.
- PostgreSQL: the same in autocommit on pooled connections (a read is retried once after
  the server drops its connection), bulk upsert as multi-row INSERTs, streams with JSON
  fetched as text.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from storage_core.errors import ConflictError, DuplicateRecordError
from storage_core.records import LogEntry, Resource
from storage_core.testing.plugin import provisioned_storage

VARIANTS = ["sqlite-file", "postgres"]


@pytest.fixture(params=VARIANTS)
def store(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite-file":
        url = f"sqlite:///{tmp_path}/store.db"
    else:
        url = request.getfixturevalue("pg_database")
    with provisioned_storage({"backend": "sqlalchemy", "url": url}) as manager:
        yield manager


def _entry(n: int, **kw) -> LogEntry:
    scid = f"scid-{n:05d}"
    return LogEntry(
        scid=scid,
        did=f"did:webvh:{scid}:example.com:ns:{n}",
        domain="example.com",
        namespace=f"ns{n % 3}",
        identifier=str(n),
        logs=[{"z": 1, "a": [n, None, {"é": "ü"}], "n": None}],
        **kw,
    )


def test_get_create_bulk_and_stream_agree_with_each_other(store):
    stamp = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=2)))
    bulk = [_entry(n, created_at=stamp, updated_at=stamp, record_version=3) for n in range(7)]
    assert store.bulk_upsert("log_entry", bulk) == 7
    created = store.create_record(_entry(100, deactivated=True))
    streamed = list(store.stream_records("log_entry", batch_size=3))
    listed = store.get_log_entries()
    assert streamed == listed
    assert [r.scid for r in streamed] == [e.scid for e in bulk] + [created.scid]
    for record in streamed:
        got = store.get_log_entry(record.scid)
        assert got == record
        assert list(got.logs[0]) == ["z", "a", "n"]  # key order kept
        assert got.created_at.tzinfo is UTC
    first = store.get_log_entry("scid-00000")
    assert first.created_at == stamp and first.record_version == 3
    assert store.get_log_entry("scid-00100").deactivated is True
    assert store.get_log_entry("missing") is None
    filtered = list(store.stream_records("log_entry", {"namespace": "ns1"}, batch_size=1))
    assert filtered == store.get_log_entries({"namespace": "ns1"})


def test_each_row_gets_its_own_timestamps_whichever_row_came_before(store):
    """SQLite's timestamp text is reused for the very datetime converted last: a shared
    stamp, the same instant in another zone, then different ones, must each read back."""
    a = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    b = a.astimezone(timezone(timedelta(hours=-5)))  # equal to a, another object
    c = a + timedelta(microseconds=1)
    stamps = [(a, a), (a, c), (b, b), (c, a), (c, c), (a, b)]
    bulk = [_entry(n, created_at=x, updated_at=y) for n, (x, y) in enumerate(stamps)]
    store.bulk_upsert("log_entry", bulk)
    got = [(r.created_at, r.updated_at) for r in store.get_log_entries()]
    assert got == stamps
    assert all(t.tzinfo is UTC for pair in got for t in pair)


def test_bulk_upsert_replaces_in_place_and_keeps_json_null(store):
    store.bulk_upsert("log_entry", [_entry(1), _entry(2)])
    changed = _entry(1, record_version=5)
    store.bulk_upsert("log_entry", [changed])
    assert [r.scid for r in store.get_log_entries()] == ["scid-00001", "scid-00002"]
    assert store.get_log_entry("scid-00001").record_version == 5
    res = Resource(
        resource_id="r1",
        scid="s",
        did="d",
        resource_type="t",
        resource_name="n",
        content={"k": None},
        metadata=None,
        proof=[1, None],
    )
    store.bulk_upsert("resource", [res])
    assert next(iter(store.stream_records("resource"))) == store.get_resource("r1")
    got = store.get_resource("r1")
    assert got.metadata is None and got.content == {"k": None} and got.proof == [1, None]


def test_duplicate_create_is_translated_and_the_connection_stays_usable(store):
    store.create_record(_entry(1))
    for _ in range(3):
        with pytest.raises(DuplicateRecordError):
            store.create_record(_entry(1))
    store.create_record(_entry(2))
    assert store.count_log_entries() == 2
    assert store.get_log_entry("scid-00002") is not None


def _terminate_other_backends(pg_database: str) -> None:
    import psycopg2

    dsn = pg_database.replace("postgresql+psycopg2://", "postgresql://")
    admin = psycopg2.connect(dsn)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (dsn.rsplit("/", 1)[1],),
            )
    finally:
        admin.close()


@pytest.mark.parametrize("first", ["get", "create"])
def test_postgres_pooled_connections_dropped_by_the_server_fail_no_caller(
    pg_database: str, first: str
):
    """Pooled connections the server dropped (restart, failover, idle kill) are noticed
    when they leave the pool (or, for a read, retried once): the caller never sees an
    error."""
    import time

    with provisioned_storage({"backend": "sqlalchemy", "url": pg_database}) as store:
        store.create_record(_entry(1))
        for _ in range(3):
            assert store.get_log_entry("scid-00001") is not None  # connections now pooled
        _terminate_other_backends(pg_database)
        time.sleep(0.2)  # the termination notice reaches the client sockets
        if first == "create":
            store.create_record(_entry(2))
        for n in range(3, 6):
            assert store.get_log_entry("scid-00001").scid == "scid-00001"
            store.create_record(_entry(n))
        assert store.count_log_entries() == (5 if first == "create" else 4)


def test_counts_match_lists_for_every_filter_shape(store):
    store.bulk_upsert("log_entry", [_entry(n, deactivated=n % 4 == 0) for n in range(12)])
    shapes = [
        None,
        {},
        {"namespace": "ns1"},
        {"namespace": ["ns0", "ns2"]},
        {"deactivated": True},
        {"deactivated": [True, False], "namespace": "ns0"},
        {"scid": ["scid-00001", "scid-00002", "nope"]},
        {"namespace": []},
        {"namespace": "it's; DROP TABLE log_entries --"},
    ]
    for filters in shapes:
        assert store.count_log_entries(filters) == len(store.get_log_entries(filters)), filters
    assert store.count_log_entries() == 12


def test_update_is_one_statement_and_agrees_with_get(store):
    """An update by key is one UPDATE ... RETURNING on the fast path (no BEGIN/COMMIT
    around it); only a miss (absent key or a version conflict) runs the transaction
    that tells the two apart."""
    from sqlalchemy import event

    store.create_record(_entry(1))
    seen: list[str] = []

    def on_execute(_conn, _cursor, statement, *_args) -> None:
        seen.append(" ".join(statement.split()[:1]).upper())

    engine = store.engine
    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        # fields given in another order than the table's columns: SET follows the table
        updated = store.update_log_entry("scid-00001", deactivated=True, logs=[{"v": 2}])
        assert seen == ["UPDATE"]
        seen.clear()
        versioned = store.update_log_entry("scid-00001", expected_version=2, logs=[{"v": 3}])
        assert seen == ["UPDATE"]
        seen.clear()
        with pytest.raises(ConflictError) as conflict:
            store.update_log_entry("scid-00001", expected_version=2, logs=[{"v": 4}])
        assert conflict.value.actual == 3
        assert seen[0] == "UPDATE" and len(seen) > 1  # the miss was decided in a transaction
        assert store.update_log_entry("scid-missing", logs=[]) is None
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
    assert updated.record_version == 2 and updated.deactivated is True
    assert versioned.record_version == 3 and versioned.logs == [{"v": 3}]
    assert versioned.updated_at >= updated.updated_at >= updated.created_at
    assert store.get_log_entry("scid-00001") == versioned  # the fast path wrote what it returned
