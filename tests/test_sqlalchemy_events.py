"""Every statement of the SQL backend is visible where SQLAlchemy shows statements: to
before/after_cursor_execute listeners and pool checkout/checkin listeners (what
OpenTelemetry's SQLAlchemy instrumentation listens to) and to echo=True, the driver-level
fast paths (get by key, create, count, bulk upsert) included (issue 11 §3)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from storage_core import open_storage
from storage_core.errors import UnsupportedOperationError, ValidationError
from storage_core.interface import ArchivedEntry
from storage_core.records import LogEntry
from storage_core.testing.plugin import provisioned_storage

SQL_VARIANTS = ["sqlite-file", "sqlite-memory", "postgres"]


def _url(variant: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if variant == "sqlite-file":
        return f"sqlite:///{tmp_path}/store.db"
    if variant == "sqlite-memory":
        return "sqlite:///:memory:"
    return request.getfixturevalue("pg_database")


def _entry(scid: str) -> LogEntry:
    return LogEntry(
        scid=scid,
        did=f"did:webvh:{scid}:example.com",
        domain="example.com",
        namespace="ns",
        identifier=scid,
        logs=[{"v": scid}],
    )


#: Every operation, in an order that works on an empty store, with the table it uses.
OPERATIONS: list[tuple[str, str, Callable[[Any], object]]] = [
    ("create", "log_entries", lambda s: s.create_record(_entry("a"))),
    ("get", "log_entries", lambda s: s.get_log_entry("a")),
    ("update", "log_entries", lambda s: s.update_log_entry("a", logs=[1])),
    ("upsert", "log_entries", lambda s: s.upsert_record(_entry("b"))),
    ("list", "log_entries", lambda s: s.get_log_entries({"namespace": "ns"})),
    ("count", "log_entries", lambda s: s.count_log_entries({"namespace": ["ns", "x"]})),
    ("stream", "log_entries", lambda s: list(s.stream_records("log_entry", batch_size=1))),
    ("bulk_upsert", "log_entries", lambda s: s.bulk_upsert("log_entry", [_entry("c")])),
    ("delete", "log_entries", lambda s: s.delete_log_entry("c")),
    ("archive_upsert", "askar_archive", lambda s: s.archive_upsert([ArchivedEntry("k", "n", "v")])),
    ("archive_get", "askar_archive", lambda s: s.archive_get("k", ["n"])),
    ("archive_stream", "askar_archive", lambda s: list(s.archive_stream())),
    ("archive_count", "askar_archive", lambda s: s.archive_count()),
]


@pytest.fixture(params=SQL_VARIANTS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    config = {"backend": "sqlalchemy", "url": _url(request.param, request, tmp_path)}
    with provisioned_storage(config) as manager:
        yield manager


def test_cursor_listeners_see_every_statement_of_every_operation(store):
    before: list[str] = []
    after: list[str] = []

    def on_before(_conn, _cursor, statement, _params, _context, _many) -> None:
        before.append(statement)

    def on_after(_conn, _cursor, statement, _params, _context, _many) -> None:
        after.append(statement)

    event.listen(store.engine, "before_cursor_execute", on_before)
    event.listen(store.engine, "after_cursor_execute", on_after)
    try:
        for name, table, operation in OPERATIONS:
            before.clear()
            after.clear()
            operation(store)
            assert any(table in sql for sql in before), (name, before)
            assert before == after, name  # each statement reported before and after
    finally:
        event.remove(store.engine, "before_cursor_execute", on_before)
        event.remove(store.engine, "after_cursor_execute", on_after)
    # unobserved again: the fast paths still agree with what was written
    assert store.get_log_entry("a").logs == [1]
    assert store.count_log_entries() == 2


def test_pool_listeners_see_every_checkout_returned(store):
    """OpenTelemetry counts connections in use from checkout/checkin events: every
    operation must check out through the pool it reports on, and check in again."""
    checkouts: list[object] = []
    checkins: list[object] = []

    def on_checkout(dbapi_connection, _record, _proxy) -> None:
        checkouts.append(dbapi_connection)

    def on_checkin(dbapi_connection, _record) -> None:
        checkins.append(dbapi_connection)

    event.listen(store.engine, "checkout", on_checkout)
    event.listen(store.engine, "checkin", on_checkin)
    try:
        for name, _table, operation in OPERATIONS:
            checkouts.clear()
            checkins.clear()
            operation(store)
            assert checkouts, name
            assert len(checkins) == len(checkouts), name
    finally:
        event.remove(store.engine, "checkout", on_checkout)
        event.remove(store.engine, "checkin", on_checkin)


@pytest.mark.parametrize("variant", SQL_VARIANTS)
def test_echo_logs_every_operation(
    variant: str, request: pytest.FixtureRequest, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    url = _url(variant, request, tmp_path)
    store = open_storage("sqlalchemy", url, echo=True)
    try:
        store.init_db(recreate=True)
        assert store.engine.echo is True
        caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
        for name, table, operation in OPERATIONS:
            caplog.clear()
            operation(store)
            logged = [r.getMessage() for r in caplog.records if r.name.startswith("sqlalchemy")]
            assert any(table in line for line in logged), (name, logged)
    finally:
        store.close()


def test_echo_comes_from_the_environment_and_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    url = f"sqlite:///{tmp_path}/echo.db"
    with open_storage("sqlalchemy", url) as store:
        assert store.engine.echo is False
    monkeypatch.setenv("STORAGE_SQL_ECHO", "debug")
    with open_storage("sqlalchemy", url) as store:
        assert store.engine.echo == "debug"
    monkeypatch.setenv("STORAGE_SQL_ECHO", "loud")
    with pytest.raises(ValidationError, match="echo"):
        open_storage("sqlalchemy", url)


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("mysql://user@127.0.0.1/db", "mysql"),
        ("postgresql+pg8000://user@127.0.0.1/db", "pg8000"),
    ],
)
def test_an_unsupported_database_is_refused_when_opened(url: str, named: str):
    with pytest.raises(UnsupportedOperationError, match=named):
        open_storage("sqlalchemy", url)
