"""The SQL backend's native async face (webvh_storage_sqlalchemy.async_backend): asyncpg /
aiosqlite under SQLAlchemy's asyncio extension, on the URL and options of the sync face.

Reproduce: `uv run pytest tests/test_async_sqlalchemy.py -q --no-cov`
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select

from storage_core import open_async_storage, open_storage
from storage_core.adapters import ThreadedAsyncBackend
from storage_core.async_manager import AsyncStorageManager
from storage_core.errors import (
    BackendUnavailableError,
    ConflictError,
    DuplicateRecordError,
    UnsupportedOperationError,
)
from storage_core.install_hints import missing_module_hint
from storage_core.kinds import LOG_ENTRY, TASK
from storage_core.records import LogEntry
from storage_core.testing.samples import sample_record
from tests.pg import PgServer
from tests.test_sqlalchemy_pool import ConnectionSampler
from webvh_storage_sqlalchemy import orm
from webvh_storage_sqlalchemy.async_backend import AsyncSqlBackend
from webvh_storage_sqlalchemy.async_drivers import dollar_params
from webvh_storage_sqlalchemy.backend import SQLAlchemyBackend

SQL_VARIANTS = ["sqlite-file", "sqlite-memory", "postgres"]
_NOW = datetime(2026, 1, 1, tzinfo=UTC)
DRIVERS = {"sqlite-file": "aiosqlite", "sqlite-memory": "aiosqlite", "postgres": "asyncpg"}


def _url(variant: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if variant == "sqlite-file":
        return f"sqlite:///{tmp_path}/store.db"
    if variant == "sqlite-memory":
        return "sqlite:///:memory:"
    return str(request.getfixturevalue("pg_database"))


def _entry(scid: str, namespace: str = "ns") -> LogEntry:
    return LogEntry(
        scid=scid,
        did=f"did:webvh:{scid}:example.com",
        domain="example.com",
        namespace=namespace,
        identifier=scid,
        logs=[{"v": scid}],
    )


@contextlib.asynccontextmanager
async def _store(url: str, **options: Any) -> Any:
    storage = open_async_storage("sqlalchemy", url, **options)
    try:
        await storage.provision(recreate=True)
        yield storage
    finally:
        await storage.aclose()


def _face(storage: AsyncStorageManager) -> AsyncSqlBackend:
    face = storage.backend
    assert isinstance(face, AsyncSqlBackend)
    return face


def _in_use(face: AsyncSqlBackend) -> int:
    """Pool connections checked out and not merely kept idle for the fast paths."""
    pool: Any = face.engine.sync_engine.pool
    if not hasattr(pool, "checkedout"):  # :memory: (StaticPool): its one shared connection
        return 0
    return int(pool.checkedout()) - face._connections.idle_count


# --- the native face ---------------------------------------------------------------------
@pytest.mark.parametrize("variant", SQL_VARIANTS)
async def test_the_native_face_runs_every_call_on_the_async_driver(
    variant: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with _store(_url(variant, request, tmp_path)) as storage:
        face = _face(storage)
        assert not isinstance(face, ThreadedAsyncBackend)
        assert face.engine.dialect.driver == DRIVERS[variant]
        assert face.describe()["driver"] == DRIVERS[variant]
        assert "AsyncSqlBackend(url=" in repr(face)
        owner = face._owner
        assert isinstance(owner, SQLAlchemyBackend)
        created = await storage.create_task("t", "type", "new", progress={"step": 1})
        assert await storage.get_task("t") == created
        assert (await storage.update_task("t", status="done")).record_version == 2  # type: ignore[union-attr]
        with pytest.raises(ConflictError):
            await storage.update_record(TASK, "t", expected_version=1, status="x")
        assert await storage.update_task("absent", status="x") is None
        assert await storage.bulk_upsert("log_entry", [_entry(f"e{i}") for i in range(5)]) == 5
        assert [e.scid async for e in storage.stream_records(LOG_ENTRY, batch_size=2)] == [
            f"e{i}" for i in range(5)
        ]
        assert await storage.count_log_entries({"namespace": "ns"}) == 5
        assert await storage.delete_log_entry("e0") is True
        await storage.flush()
        assert await storage.health_check() is True
        if variant != "sqlite-memory":  # the sync face's own engine never connected
            sync_pool: Any = owner.engine.pool
            assert sync_pool.checkedin() == 0 and sync_pool.checkedout() == 0
    assert owner._closed  # the face owns the sync backend: aclose closed it
    assert await storage.health_check() is False
    with pytest.raises(BackendUnavailableError):
        await storage.get_task("t")
    await face.aclose()  # idempotent


@pytest.mark.parametrize("variant", ["sqlite-file", "postgres"])
async def test_one_url_opens_both_faces_on_the_same_data(
    variant: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = _url(variant, request, tmp_path)
    urls = [url, url.replace("postgresql+psycopg2://", "postgresql://")]
    with open_storage("sqlalchemy", url) as sync_storage:
        sync_storage.init_db(recreate=True)
        sync_storage.create_record(_entry("shared"))
        for given in urls:  # postgresql:// and postgresql+psycopg2:// both pick asyncpg
            async with open_async_storage("sqlalchemy", given) as storage:
                assert await storage.get_log_entry("shared") == sync_storage.get_log_entry("shared")
                await storage.update_log_entry("shared", namespace=given[:10])
            assert sync_storage.get_log_entry("shared").namespace == given[:10]  # type: ignore[union-attr]


async def test_provisioning_through_the_async_face_is_the_sync_faces(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/store.db"
    async with open_async_storage("sqlalchemy", url) as storage:
        await storage.provision()
        await storage.provision()  # at head already: nothing to do
    with open_storage("sqlalchemy", url) as sync_storage:
        assert sync_storage.backend.describe()["schema_revision"] is not None


# --- AsyncSession ------------------------------------------------------------------------
@pytest.mark.parametrize("variant", SQL_VARIANTS)
async def test_async_sessions_see_the_stores_data(
    variant: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with _store(_url(variant, request, tmp_path)) as storage:
        written = await storage.create_record(_entry("by-manager"))
        assert storage.engine is _face(storage).engine
        async with storage.get_session() as session:
            rows = (await session.execute(select(orm.LogEntry))).scalars().all()
            assert [row.scid for row in rows] == ["by-manager"]
            session.add(
                orm.LogEntry(
                    scid="by-session",
                    did="did:webvh:by-session:example.com",
                    domain="example.com",
                    namespace="ns",
                    identifier="by-session",
                    logs=[{"v": 1}],
                    deactivated=False,
                    created_at=written.created_at,
                    updated_at=written.created_at,
                )
            )
            await session.commit()
        got = await storage.get_log_entry("by-session")
        assert got is not None and got.logs == [{"v": 1}]
        async with storage.SessionLocal() as session:
            total = await session.scalar(select(func.count()).select_from(orm.LogEntry))
            assert total == 2
        assert _in_use(_face(storage)) == 0


async def test_sessions_on_a_backend_without_sql_are_refused_clearly() -> None:
    async with open_async_storage("memory") as storage:
        for touch in (lambda: storage.engine, lambda: storage.SessionLocal, storage.get_session):
            with pytest.raises(UnsupportedOperationError, match="no SQL engine or sessions"):
                touch()


# --- streams and the pool ----------------------------------------------------------------
@pytest.mark.parametrize("variant", SQL_VARIANTS)
async def test_streams_closed_early_give_their_connection_back(
    variant: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with _store(_url(variant, request, tmp_path), pool_size=2, max_overflow=0) as storage:
        face = _face(storage)
        await storage.bulk_upsert("log_entry", [_entry(f"e{i:02d}") for i in range(20)])
        for _ in range(10):  # more than the pool holds
            stream = storage.stream_records(LOG_ENTRY, batch_size=3)
            assert (await anext(stream)).scid == "e00"
            assert _in_use(face) >= (1 if variant != "sqlite-memory" else 0)
            await stream.aclose()  # type: ignore[attr-defined]
            assert _in_use(face) == 0
        second = storage.stream_records(LOG_ENTRY, batch_size=4)
        seen = [(await anext(second)).scid]
        await storage.create_record(_entry("during"))  # other calls work meanwhile
        seen += [e.scid async for e in second]
        assert seen[:20] == [f"e{i:02d}" for i in range(20)]
        assert _in_use(face) == 0


async def test_connections_stay_within_the_pool_under_200_tasks(
    pg_server: PgServer, pg_database: str
) -> None:
    """200 concurrent tasks of every kind of call; PostgreSQL itself counts the
    store's connections while they run (pool_size + max_overflow = 5)."""
    database = pg_database.rsplit("/", 1)[1]
    async with _store(pg_database, pool_size=3, max_overflow=2) as storage:
        await storage.bulk_upsert("log_entry", [_entry(f"seed{i}") for i in range(30)])

        async def work(i: int) -> None:
            await storage.create_record(_entry(f"t{i}"))
            assert await storage.get_log_entry(f"t{i}") is not None
            await storage.update_log_entry(f"t{i}", namespace="done")
            await storage.get_log_entries({"namespace": "ns"}, limit=5)
            await storage.count_log_entries()
            if i % 10 == 0:
                assert len([e async for e in storage.stream_records(LOG_ENTRY, batch_size=7)]) >= 30

        with ConnectionSampler(pg_server, database) as sampler:
            await asyncio.gather(*(work(i) for i in range(200)))
        assert max(sampler.samples) <= 5, max(sampler.samples)
        assert await storage.count_log_entries({"namespace": "done"}) == 200


@pytest.mark.parametrize("variant", ["sqlite-file", "postgres"])
async def test_200_tasks_share_the_pools_connections_with_sqlalchemy_paths(
    variant: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """200 tasks of fast reads keep a 2 + 1 pool busy until ordered listings and
    transactions (SQLAlchemy paths, waiting in the pool's own queue, not at the fast
    calls' gate) are done: those get connections within pool_timeout all the same,
    every call returns the right data, and no more than pool_size + max_overflow
    connections are open at once (the pool's connect and close events, which leave the
    fast paths on)."""
    url = _url(variant, request, tmp_path)
    async with _store(url, pool_size=2, max_overflow=1, pool_timeout=2) as storage:
        face = _face(storage)
        await storage.bulk_upsert("log_entry", [_entry(f"e{i:03d}") for i in range(50)])
        await face._connections.close_idle()
        open_now, most = 0, 0

        def opened(*_: Any) -> None:
            nonlocal open_now, most
            open_now += 1
            most = max(most, open_now)

        def closed(*_: Any) -> None:
            nonlocal open_now
            open_now -= 1

        pool = face.engine.sync_engine.pool
        event.listen(pool, "connect", opened)
        event.listen(pool, "close", closed)
        assert not face._connections.observed()
        others_done = asyncio.Event()
        reads: list[bool] = []

        async def reader(i: int) -> None:
            while not others_done.is_set() or len(reads) < 200:
                found = await storage.get_log_entry(f"e{i % 50:03d}")
                reads.append(found is not None and found.scid == f"e{i % 50:03d}")

        async def ordered() -> list[str]:
            await asyncio.sleep(0.2)  # once the readers fill the pool
            page = await storage.get_log_entries({"namespace": "ns"}, limit=3, order_by="-scid")
            return [e.scid for e in page]

        async def written(i: int) -> None:
            await asyncio.sleep(0.2)
            async with storage.transaction():
                await storage.create_record(_entry(f"w{i}", namespace="written"))

        async def others() -> list[Any]:
            try:
                return await asyncio.gather(
                    *(ordered() for _ in range(10)), *(written(i) for i in range(10))
                )
            finally:
                others_done.set()

        results, *_ = await asyncio.gather(others(), *(reader(i) for i in range(200)))
        assert results[:10] == [["e049", "e048", "e047"]] * 10
        assert len(reads) >= 200 and all(reads)
        assert await storage.count_log_entries({"namespace": "written"}) == 10
        assert 1 <= most <= 3
        assert _in_use(face) == 0


@pytest.mark.parametrize("variant", ["sqlite-file", "postgres"])
async def test_overflow_connections_stay_open_while_calls_queue_for_them(
    variant: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """200 tasks of gets on a 1 + 3 pool: the overflow connections are opened once and
    kept while calls wait for a connection (checked in to a full pool queue, each was
    closed and the next call opened it again), then closed once none wait; one stays
    kept for the fast paths, one in the pool's queue."""
    url = _url(variant, request, tmp_path)
    async with _store(url, pool_size=1, max_overflow=3) as storage:
        face = _face(storage)
        await storage.bulk_upsert("log_entry", [_entry(f"e{i:03d}") for i in range(50)])
        await face._connections.close_idle()
        pool = face.engine.sync_engine.pool
        opened: list[object] = []
        closed: list[object] = []
        event.listen(pool, "connect", lambda *_: opened.append(1))
        event.listen(pool, "close", lambda *_: closed.append(1))

        async def reader(i: int) -> None:
            for n in range(5):
                found = await storage.get_log_entry(f"e{(i + n) % 50:03d}")
                assert found is not None and found.scid == f"e{(i + n) % 50:03d}"

        await asyncio.gather(*(reader(i) for i in range(200)))
        assert len(opened) == 4
        assert len(opened) - len(closed) == 2
        assert face._connections.idle_count == 1 and _in_use(face) == 0


@pytest.mark.parametrize("variant", ["sqlite-file", "postgres"])
async def test_fast_calls_on_a_full_pool_wait_pool_timeout_then_are_unavailable(
    variant: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """An open stream holds a 1 + 0 pool's one connection: a get, a page and a create
    wait pool_timeout at the gate and are told so; nothing was written; once the
    stream is closed every call works again."""
    url = _url(variant, request, tmp_path)
    async with _store(url, pool_size=1, max_overflow=0, pool_timeout=0.5) as storage:
        await storage.bulk_upsert("log_entry", [_entry(f"e{i}") for i in range(5)])
        stream = storage.stream_records(LOG_ENTRY, batch_size=2)
        assert (await anext(stream)).scid == "e0"
        for call in (
            lambda: storage.get_log_entry("e1"),
            lambda: storage.get_log_entries({"namespace": "ns"}, limit=2),
            lambda: storage.create_record(_entry("late")),
        ):
            with pytest.raises(BackendUnavailableError, match="no pooled connection"):
                await call()
        await stream.aclose()  # type: ignore[attr-defined]
        assert await storage.get_log_entry("late") is None
        assert await storage.count_log_entries() == 5
        assert (await storage.create_record(_entry("late"))).scid == "late"


# --- visibility: listeners and echo ------------------------------------------------------
@pytest.mark.parametrize("variant", SQL_VARIANTS)
async def test_listeners_and_echo_see_every_statement(
    variant: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with _store(_url(variant, request, tmp_path)) as storage:
        seen: list[str] = []
        sync_engine = storage.engine.sync_engine

        def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            seen.append(statement)

        event.listen(sync_engine, "before_cursor_execute", record)
        try:
            calls = [
                ("create", storage.create_record(_entry("a"))),
                ("get", storage.get_log_entry("a")),
                ("update", storage.update_log_entry("a", namespace="x")),
                ("list", storage.get_log_entries({"namespace": "x"})),
                ("count", storage.count_log_entries()),
                ("bulk", storage.bulk_upsert("log_entry", [_entry("b")])),
                ("health", storage.health_check()),
            ]
            for name, call in calls:
                before = len(seen)
                await call
                assert len(seen) > before, name
            before = len(seen)
            assert [e.scid async for e in storage.stream_records(LOG_ENTRY, batch_size=1)] == [
                "a",
                "b",
            ]
            assert any("log_entries" in s for s in seen[before:]), "stream"
        finally:
            event.remove(sync_engine, "before_cursor_execute", record)
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
    async with _store(_url(variant, request, tmp_path), echo=True) as storage:
        caplog.clear()
        await storage.get_log_entry("absent-key")
        assert any("log_entries" in r.getMessage() for r in caplog.records)


# --- errors ------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", SQL_VARIANTS)
async def test_errors_are_the_sync_faces(
    variant: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with _store(_url(variant, request, tmp_path)) as storage:
        await storage.create_record(_entry("dup"))
        with pytest.raises(DuplicateRecordError):
            await storage.create_record(_entry("dup"))
        with pytest.raises(ConflictError):
            await storage.upsert_record(_entry("dup"), expected_version=0)
        await storage.bulk_upsert("log_entry", [])
        assert await storage.count_log_entries() == 1


async def test_an_unreachable_server_is_unavailable_with_the_password_masked() -> None:
    secret = "s3cr3t-pw-xyz"
    url = f"postgresql://webvh:{secret}@127.0.0.1:9/nowhere"
    storage = open_async_storage("sqlalchemy", url, connect_timeout=1, pool_timeout=1)
    try:
        with pytest.raises(BackendUnavailableError) as err:
            await storage.get_task("t")
        assert secret not in str(err.value)
        assert secret not in repr(storage) and secret not in str(_face(storage).describe())
        assert await storage.health_check() is False
    finally:
        await storage.aclose()


def test_a_missing_asyncpg_names_the_extra_to_install() -> None:
    assert "webvh-storage[postgres]" in (missing_module_hint("asyncpg") or "")


def test_the_sync_faces_urls_map_to_the_async_drivers(tmp_path: Path) -> None:
    from storage_core.config import Settings
    from webvh_storage_sqlalchemy.async_drivers import driver_for
    from webvh_storage_sqlalchemy.dialects import dialect_for

    def mapped(url: str) -> str:
        settings = Settings(url=url)
        return driver_for(dialect_for(settings)).url.render_as_string(hide_password=False)

    for url in ("postgresql://u:p@h/db", "postgres://u:p@h/db", "postgresql+psycopg2://u:p@h/db"):
        assert mapped(url) == "postgresql+asyncpg://u:p@h/db"
    assert mapped("postgresql://h/db?sslmode=require") == "postgresql+asyncpg://h/db?ssl=require"
    assert mapped(f"sqlite:///{tmp_path}/a.db") == f"sqlite+aiosqlite:///{tmp_path}/a.db"
    memory = driver_for(dialect_for(Settings(url="sqlite:///:memory:"))).url
    assert (memory.drivername, memory.database) == ("sqlite+aiosqlite", ":memory:")


def test_driver_sql_becomes_asyncpgs_numbered_parameters() -> None:
    assert dollar_params("SELECT a FROM t WHERE a = %s AND b IN (%s, %s)") == (
        "SELECT a FROM t WHERE a = $1 AND b IN ($2, $3)"
    )
    assert dollar_params("SELECT '100%%' WHERE x = %s") == "SELECT '100%' WHERE x = $1"


async def test_a_sample_of_every_kind_round_trips(tmp_path: Path) -> None:
    from storage_core.kinds import KINDS

    async with _store(f"sqlite:///{tmp_path}/store.db") as storage:
        for name, spec in KINDS.items():
            written = await storage.create_record(sample_record(name, "k1"))
            assert await storage.get_record(spec, "k1") == written, name


def _terminate_connections(server: PgServer, database_url: str) -> int:
    """End every server connection to the store's database (a restart, a failover)."""
    import psycopg2

    conn = psycopg2.connect(server.url, connect_timeout=3)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (database_url.rsplit("/", 1)[1],),
            )
            return int(cur.fetchone()[0])
    finally:
        conn.close()


async def test_connections_the_server_ended_are_replaced(
    pg_server: PgServer, pg_database: str
) -> None:
    """A read meeting a connection the server ended runs once more on a new one; a write
    fails as unavailable (never run twice) and the next one gets a new connection."""
    async with _store(pg_database, pool_size=3, max_overflow=0) as storage:
        face = _face(storage)
        await storage.create_task("t", "type", "new")
        assert face._connections.idle_count == 1  # kept for the next fast call
        assert _terminate_connections(pg_server, pg_database) >= 1
        assert await storage.get_task("t") is not None
        assert _terminate_connections(pg_server, pg_database) >= 1
        with pytest.raises(BackendUnavailableError):
            await storage.create_task("u", "type", "new")
        await storage.create_task("u", "type", "new")
        assert await storage.count_tasks() == 2
        assert _in_use(face) == 0


async def test_every_call_on_a_closed_face_is_unavailable(tmp_path: Path) -> None:
    storage = open_async_storage("sqlalchemy", f"sqlite:///{tmp_path}/store.db")
    await storage.provision()
    face = _face(storage)
    await storage.aclose()
    record = _entry("a")
    calls = [
        face.provision(),
        face.flush(),
        face.create(LOG_ENTRY, record),
        face.get(LOG_ENTRY, "a"),
        face.update(LOG_ENTRY, "a", {"namespace": "x"}, record.created_at or _NOW),
        face.upsert(LOG_ENTRY, record),
        face.delete(LOG_ENTRY, "a"),
        face.list(LOG_ENTRY, {}, None, 0),
        face.count(LOG_ENTRY, {}),
        face.bulk_upsert(LOG_ENTRY, [record]),
        anext(face.stream(LOG_ENTRY, {}, 10)),
    ]
    for call in calls:
        with pytest.raises(BackendUnavailableError):
            await call
