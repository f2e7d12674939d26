"""Issue 14, PgBouncer: the SQL backend behind a real PgBouncer in transaction pooling
mode, where consecutive transactions of one client may run on different server
connections. So: no session state across transactions, server-side cursors only inside a
transaction, no named prepared statements that outlive one (psycopg2 makes none).

The whole conformance suite runs against the PgBouncer URL (this module's
storage_backend_config), plus the cases transaction pooling makes risky.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from storage_core import open_storage
from storage_core.testing.suite import *  # noqa: F403
from tests.deployment import entry as _entry
from tests.pg import PgServer
from tests.pgbouncer import PgBouncer, pgbouncer  # noqa: F401 (the fixture)


@pytest.fixture(scope="session")
def pgbouncer_database(pg_server: PgServer, pgbouncer: PgBouncer) -> str:  # noqa: F811
    return pgbouncer.url(pg_server.create_database("webvh_bouncer"))


@pytest.fixture
def storage_backend_config(pgbouncer_database: str) -> dict[str, Any]:
    """The conformance suite's store: PostgreSQL through a transaction-pooling PgBouncer
    (1.18: no prepared statements across transactions, so the async face runs without)."""
    return {
        "backend": "sqlalchemy",
        "url": pgbouncer_database,
        "options": {"prepared_statements": False},
    }


@pytest.mark.timeout(300)
def test_more_clients_than_server_connections_share_them(
    pg_server: PgServer,
    pgbouncer: PgBouncer,  # noqa: F811
):
    """Three worker-sized pools (12 threads) through a PgBouncer pool of 5 server
    connections: writes, reads and long streams interleave, every result is right, and
    provisioning (advisory lock in its transaction) works through it."""
    database = pg_server.create_database("webvh_bouncer_many")
    stores = [
        open_storage("sqlalchemy", pgbouncer.url(database), pool_size=4, max_overflow=0)
        for _ in range(3)
    ]
    errors: list[BaseException] = []

    def work(store: Any, worker: int) -> None:
        try:
            for n in range(10):
                key = f"w{worker}-{n}"
                store.create_record(_entry(key))
                store.update_log_entry(key, logs=[n], expected_version=1)
                assert store.get_log_entry(key).logs == [n]
                streamed = 0
                for _ in store.stream_records("log_entry", batch_size=3):
                    streamed += 1  # other clients' transactions run meanwhile
                assert streamed >= n + 1
                assert store.count_log_entries({"namespace": "people"}) >= n + 1
        except BaseException as exc:  # reported below
            errors.append(exc)

    try:
        for store in stores:
            store.init_db()
        threads = [threading.Thread(target=work, args=(stores[w % 3], w)) for w in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == [], errors[:3]
        assert stores[0].count_log_entries() == 120
    finally:
        for store in stores:
            store.close()
    assert "prepared statement" not in pgbouncer.log()
