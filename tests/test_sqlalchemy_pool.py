"""One engine and one connection pool per SQL store (issue 11 §3).

"One manager with the default pool (10 + 20) opened 32 PostgreSQL connections in 5 s, and 6
with pool_size=2, max_overflow=0: three engines plus a private read pool." Here the server
counts the store's connections (pg_stat_activity, sampled from a connection to another
database) while threads run every kind of call at once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event, text

from storage_core import open_storage
from storage_core.errors import BackendUnavailableError
from storage_core.interface import ArchivedEntry
from storage_core.records import LogEntry
from storage_core.testing.plugin import provisioned_storage
from tests.pg import PgServer, require_pg

THREADS = 8
ROUNDS = 12


def _entry(scid: str, logs: object = None) -> LogEntry:
    return LogEntry(
        scid=scid,
        did=f"did:webvh:{scid}:example.com",
        domain="example.com",
        namespace=f"ns{len(scid) % 3}",
        identifier=scid,
        logs=logs if logs is not None else [{"v": scid}],
    )


class ConnectionSampler:
    """Counts the client connections to one database, as often as it can, until stopped."""

    def __init__(self, server: PgServer, database: str) -> None:
        import psycopg2

        self._conn = psycopg2.connect(server.url, connect_timeout=3)  # another database
        self._conn.autocommit = True
        self._database = database
        self._stop = threading.Event()
        self.samples: list[int] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def count(self) -> int:
        with self._conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = %s AND backend_type = 'client backend'",
                (self._database,),
            )
            return int(cur.fetchone()[0])

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.count())

    def __enter__(self) -> ConnectionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(self.count())
        self._conn.close()


def _every_call(store, worker: int) -> None:
    """Each kind of call the backend makes, the fast paths included."""
    for n in range(ROUNDS):
        key = f"w{worker}-{n}"
        store.create_record(_entry(key))
        assert store.get_log_entry(key) is not None
        store.update_log_entry(key, logs=[n])
        store.upsert_record(_entry(f"shared-{n % 4}"))
        store.get_log_entries({"namespace": "ns1"}, limit=20)
        store.count_log_entries({"namespace": ["ns0", "ns2"]})
        assert sum(1 for _ in store.stream_records("log_entry", batch_size=7)) > 0
        store.bulk_upsert("log_entry", [_entry(f"bulk-{worker}-{n}-{i}") for i in range(5)])
        store.archive_upsert([ArchivedEntry("cat", f"{worker}-{n}", "v")])
        store.archive_get("cat", [f"{worker}-{n}"])
        store.delete_log_entry(key)


@pytest.fixture
def pg_store_factory(pg_server: PgServer) -> Iterator:
    require_pg(pg_server)
    opened = []

    def open_one(**pool: int):
        database = pg_server.create_database("webvh_pool")
        store = open_storage("sqlalchemy", pg_server.sqlalchemy_url(database), **pool)
        opened.append(store)
        store.init_db(recreate=True)
        return store, database

    yield open_one
    for store in opened:
        store.close()


@pytest.mark.parametrize(
    ("pool", "ceiling"),
    [
        ({"pool_size": 2, "max_overflow": 0}, 2),
        # default pool (10 + 20): one pool opens a connection only for a caller that finds
        # none idle, so never more than the callers running at once
        ({}, THREADS),
    ],
    ids=["2+0", "default"],
)
@pytest.mark.timeout(120)
def test_pool_size_plus_overflow_is_the_ceiling_of_server_connections(
    pg_server: PgServer, pg_store_factory, pool: dict[str, int], ceiling: int
):
    store, database = pg_store_factory(**pool)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            _every_call(store, worker)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(THREADS)]
    with ConnectionSampler(pg_server, database) as sampler:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    assert max(sampler.samples) <= ceiling, (
        f"{max(sampler.samples)} connections with {pool or 'the default pool'}"
    )
    assert max(sampler.samples) >= 1  # the sampler saw the store at all
    assert store.count_log_entries() == 4 + THREADS * ROUNDS * 5


@pytest.mark.parametrize("variant", ["sqlite-file", "postgres"])
def test_a_caller_that_gets_no_connection_within_pool_timeout_is_told_so(
    variant: str, request: pytest.FixtureRequest, tmp_path: Path
):
    """Every pooled connection busy (held here through the public engine): the fast
    paths and the SQLAlchemy paths alike wait pool_timeout, then raise
    BackendUnavailableError, and work again once a connection is back."""
    if variant == "sqlite-file":
        url = f"sqlite:///{tmp_path}/busy.db"
    else:
        url = request.getfixturevalue("pg_database")
    config = {
        "backend": "sqlalchemy",
        "url": url,
        "options": {"pool_size": 1, "max_overflow": 0, "pool_timeout": 1},
    }
    with provisioned_storage(config) as store:
        store.create_record(_entry("a"))
        held = store.engine.connect()
        try:
            for call in (
                lambda: store.get_log_entry("a"),
                lambda: store.create_record(_entry("b")),
                lambda: store.count_log_entries(),
                lambda: store.get_log_entries(),
                lambda: store.update_log_entry("a", logs=[1]),
            ):
                with pytest.raises(BackendUnavailableError, match="no pooled connection"):
                    call()
        finally:
            held.close()
        assert store.get_log_entry("a").logs == [{"v": "a"}]
        assert store.count_log_entries() == 1


@pytest.mark.parametrize("variant", ["sqlite-file", "postgres"])
@pytest.mark.parametrize("sizes", [(2, 0), (1, 1), (3, 0)])
def test_connections_kept_for_fast_calls_never_starve_other_users(
    variant: str, sizes: tuple[int, int], request: pytest.FixtureRequest, tmp_path: Path
):
    """The fast paths keep a few pool entries checked out between calls, but only while
    the pool keeps a free slot: after any number of fast calls, ORM sessions opened by
    the application, up to the pool's size minus one, never wait for them."""
    pool_size, max_overflow = sizes
    if variant == "sqlite-file":
        url = f"sqlite:///{tmp_path}/kept.db"
    else:
        url = request.getfixturevalue("pg_database")
    options = {"pool_size": pool_size, "max_overflow": max_overflow, "pool_timeout": 1}
    config = {"backend": "sqlalchemy", "url": url, "options": options}
    with provisioned_storage(config) as store:
        store.create_record(_entry("a"))

        def fast_calls() -> None:
            for _ in range(20):
                store.get_log_entry("a")
                store.count_log_entries()

        threads = [threading.Thread(target=fast_calls) for _ in range(pool_size + max_overflow)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        sessions = [store.get_session() for _ in range(pool_size + max_overflow - 1)]
        try:
            for session in sessions:  # each needs a pooled connection; pool_timeout is 1 s
                assert session.execute(text("SELECT 1")).scalar() == 1
        finally:
            for session in sessions:
                session.close()
        assert store.get_log_entry("a") is not None


def _terminate(pg_server: PgServer, pid: int) -> None:
    """pg_terminate_backend(pid), returning once the server has ended that backend."""
    import psycopg2

    admin = psycopg2.connect(pg_server.url, connect_timeout=3)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
            while True:
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))
                if cur.fetchone()[0] == 0:
                    return
    finally:
        admin.close()


@pytest.mark.parametrize(
    "read",
    ["get", "count", "list"],
)
def test_a_read_whose_connection_the_server_ended_after_checkout_is_retried(
    pg_server: PgServer, pg_database: str, read: str
):
    """The server ends the backend of the very connection a read just took from the pool
    (after any check on checkout, so the read meets a dead connection): the read is
    retried once on a new connection and the caller sees its result, not an error."""
    config = {"backend": "sqlalchemy", "url": pg_database}
    with provisioned_storage(config) as store:
        store.create_record(_entry("kept"))
        killed: list[int] = []

        def kill_first_checkout(dbapi_connection, _record, _proxy) -> None:
            if not killed:
                killed.append(dbapi_connection.get_backend_pid())
                _terminate(pg_server, killed[0])

        event.listen(store.engine, "checkout", kill_first_checkout)
        try:
            if read == "get":
                assert store.get_log_entry("kept").scid == "kept"
            elif read == "count":
                assert store.count_log_entries() == 1
            else:
                assert [e.scid for e in store.get_log_entries()] == ["kept"]
        finally:
            event.remove(store.engine, "checkout", kill_first_checkout)
        assert killed, "no connection was taken from the engine's pool"
        store.create_record(_entry("after"))
        assert store.count_log_entries() == 2
