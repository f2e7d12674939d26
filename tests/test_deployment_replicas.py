"""Issue 14, read replicas: gets, lists, counts and streams go to the replicas named by
DATABASE_READ_URLS (`read_urls=`), round-robin; everything else to the primary. A caller
reads its own writes from the primary, and so does every read inside `storage.primary()`;
a replica that is down or lags more than STORAGE_REPLICA_MAX_LAG is skipped until it
recovers.

Against a real streaming standby (tests/standby.py). Where a read went is told by what it
sees: with the standby's replay paused, a record written since exists on the primary only.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from storage_core import open_async_storage, open_storage
from storage_core.errors import BackendUnavailableError, ValidationError
from tests.deployment import entry as _entry
from tests.standby import ReplicatedPair, replicated_pair  # noqa: F401 (the fixture)
from webvh_storage_sqlalchemy.replicas import LAG_SQL


class Stores:
    def __init__(self, pair: ReplicatedPair, database: str) -> None:
        self.pair = pair
        self.database = database
        self.primary_url = pair.primary.url(database)
        self.standby_url = pair.standby.url(database)
        self.opened: list[Any] = []

    def open(self, **options: Any) -> Any:
        store = open_storage("sqlalchemy", self.primary_url, **options)
        self.opened.append(store)
        return store

    def reader(self, **options: Any) -> Any:
        """A store that reads from the standby; lag checked on every read by default."""
        options = {"read_urls": self.standby_url, "replica_check_interval": 0, **options}
        return self.open(**options)


@pytest.fixture
def stores(replicated_pair: ReplicatedPair) -> Iterator[Stores]:  # noqa: F811
    database = f"webvh_replica_{uuid.uuid4().hex[:8]}"
    replicated_pair.create_database(database)
    found = Stores(replicated_pair, database)
    with open_storage("sqlalchemy", found.primary_url) as writer:
        writer.init_db()
    replicated_pair.wait_replayed()
    yield found
    for store in found.opened:
        store.close()
    _set_replay(replicated_pair, paused=False)


def _set_replay(pair: ReplicatedPair, *, paused: bool) -> None:
    """Pause or resume the standby's replay of the WAL it receives (it keeps receiving)."""
    if pair.standby.port_open():
        pair.standby.execute(
            "SELECT pg_wal_replay_pause()" if paused else "SELECT pg_wal_replay_resume()"
        )


def _seen(store: Any, scid: str) -> dict[str, bool]:
    """Whether each kind of read finds `scid`."""
    return {
        "get": store.get_log_entry(scid) is not None,
        "list": scid in {e.scid for e in store.get_log_entries({"namespace": "people"})},
        "count": store.count_log_entries({"identifier": scid}) == 1,
        "stream": scid in {e.scid for e in store.stream_records("log_entry")},
    }


NOWHERE = {"get": False, "list": False, "count": False, "stream": False}
EVERYWHERE = {"get": True, "list": True, "count": True, "stream": True}


def test_reads_go_to_the_replica_writes_to_the_primary(stores: Stores):
    writer = stores.open()
    reader = stores.reader(replica_max_lag=3600)
    writer.create_record(_entry("old"))
    stores.pair.wait_replayed()
    _set_replay(stores.pair, paused=True)
    writer.create_record(_entry("new"))  # on the primary only, for now

    assert _seen(reader, "old") == EVERYWHERE
    assert _seen(reader, "new") == NOWHERE  # every kind of read went to the standby
    with reader.primary():
        assert _seen(reader, "new") == EVERYWHERE
    assert _seen(reader, "new") == NOWHERE

    reader.update_log_entry("old", logs=[1])  # a write goes to the primary
    assert writer.get_log_entry("old").logs == [1]
    assert _seen(reader, "new") == EVERYWHERE  # the caller's own write: primary reads
    assert reader.get_log_entry("old").logs == [1]

    other: dict[str, bool] = {}
    thread = threading.Thread(target=lambda: other.update(_seen(reader, "new")))
    thread.start()
    thread.join()
    assert other == NOWHERE  # another caller, who wrote nothing, still reads the standby


def test_the_environment_names_the_replicas(stores: Stores, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DATABASE_READ_URLS", f" {stores.standby_url} , {stores.standby_url}")
    monkeypatch.setenv("STORAGE_REPLICA_MAX_LAG", "3600")
    writer = stores.open()
    reader = stores.open()
    assert [r["usable"] for r in reader.backend.describe()["read_replicas"]] == [True, True]
    _set_replay(stores.pair, paused=True)
    writer.create_record(_entry("new"))
    assert [reader.get_log_entry("new") for _ in range(4)] == [None] * 4


def test_a_lagging_replica_is_skipped_until_it_catches_up(stores: Stores):
    writer = stores.open()
    reader = stores.reader(replica_max_lag=0.5)
    writer.create_record(_entry("old"))
    stores.pair.wait_replayed()
    _set_replay(stores.pair, paused=True)
    writer.create_record(_entry("new"))
    while float(stores.pair.standby.execute(LAG_SQL)[0][0]) <= 0.5:
        time.sleep(0.05)  # the standby falls behind (the age of what it last replayed)

    assert _seen(reader, "new") == EVERYWHERE  # the standby is skipped
    assert reader.backend.describe()["read_replicas"][0]["usable"] is False

    _set_replay(stores.pair, paused=False)
    stores.pair.wait_replayed()
    assert _seen(reader, "new") == EVERYWHERE
    assert reader.backend.describe()["read_replicas"][0]["usable"] is True  # back in use


@pytest.mark.timeout(300)
def test_reads_carry_on_when_the_standby_is_killed(stores: Stores):
    """Threads read without pause; the standby is killed (pg_ctl -m immediate) while they
    do: every read still returns the right answer, from the primary. The standby comes
    back and is used again."""
    writer = stores.open()
    writer.bulk_upsert("log_entry", [_entry(f"e{n}") for n in range(20)])
    stores.pair.wait_replayed()
    reader = stores.reader(replica_max_lag=3600)
    errors: list[BaseException] = []
    reads = [0] * 4
    stop = threading.Event()

    def read_on(worker: int) -> None:
        try:
            while not stop.is_set():
                n = reads[worker] % 20
                assert reader.get_log_entry(f"e{n}").scid == f"e{n}"
                assert reader.count_log_entries() == 20
                assert len(reader.get_log_entries(limit=5, offset=n)) == min(5, 20 - n)
                reads[worker] += 1
        except BaseException as exc:  # reported below
            errors.append(exc)

    def until(done: Any) -> None:
        while not done() and not errors:
            time.sleep(0.01)

    threads = [threading.Thread(target=read_on, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    try:
        until(lambda: min(reads) >= 3)
        stores.pair.standby.stop("immediate")
        before = list(reads)
        until(lambda: all(r >= b + 10 for r, b in zip(reads, before, strict=True)))
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == [], errors[:3]
    # after the kill: every kind of read, streams included
    assert sum(1 for _ in reader.stream_records("log_entry")) == 20
    assert _seen(reader, "e3") == EVERYWHERE
    assert reader.backend.describe()["read_replicas"][0]["usable"] is False

    stores.pair.standby.start()
    stores.pair.wait_replayed()
    _set_replay(stores.pair, paused=True)
    writer.create_record(_entry("new"))
    assert reader.get_log_entry("new") is None  # from the standby again
    assert reader.backend.describe()["read_replicas"][0]["usable"] is True


@pytest.mark.parametrize("opener", [open_storage, open_async_storage], ids=["sync", "async"])
@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("replica_max_lag", "soon", "STORAGE_REPLICA_MAX_LAG"),
        ("replica_check_interval", "-1", "STORAGE_REPLICA_CHECK_INTERVAL"),
        ("read_urls", "sqlite:///x.db", "DATABASE_READ_URLS"),
    ],
)
def test_bad_replica_settings_are_refused_naming_the_setting(
    option: str, value: str, message: str, opener: Any, tmp_path
):
    # given in code, the keyword names it; from the environment, the variable
    with pytest.raises(ValidationError, match=rf"^({option}|{message}):"):
        opener("sqlalchemy", f"sqlite:///{tmp_path}/p.db", **{option: value})


def test_an_unreachable_replica_is_skipped_and_its_password_never_shown(
    tmp_path, caplog: pytest.LogCaptureFixture
):
    """A replica that refuses connections from the start: reads go to the primary, and
    the replica's password appears in no log line, description or error."""
    replica = "postgresql+psycopg2://reader:s3cret-replica@127.0.0.1:1/webvh"
    store = open_storage(
        "sqlalchemy", f"sqlite:///{tmp_path}/p.db", read_urls=[replica], connect_timeout=1
    )
    try:
        store.init_db()
        store.create_record(_entry("a"))
        other: dict[str, bool] = {}
        with caplog.at_level("INFO"):
            thread = threading.Thread(target=lambda: other.update(_seen(store, "a")))
            thread.start()
            thread.join()
        assert other == EVERYWHERE
        described = store.backend.describe()["read_replicas"]
        assert described == [{"url": replica.replace("s3cret-replica", "***"), "usable": False}]
        assert "s3cret-replica" in store.backend.secrets
        assert "s3cret-replica" not in caplog.text + repr(store) + str(store.info())
    finally:
        store.close()


def test_a_spent_replica_pool_is_the_callers_wait_not_a_replica_failure(stores: Stores):
    """The worker's one connection to the replica is held (by an ORM session, say): a get
    waits pool_timeout and gets BackendUnavailableError (not a second wait on the
    primary), and the replica stays in use."""
    writer = stores.open()
    writer.bulk_upsert("log_entry", [_entry(f"e{n}") for n in range(5)])
    stores.pair.wait_replayed()
    reader = stores.reader(replica_max_lag=3600, pool_size=1, max_overflow=0, pool_timeout=1)
    (replica,) = reader.backend._reads.replicas
    with replica.connections.engine.connect():  # the replica pool's only connection
        with pytest.raises(BackendUnavailableError, match="no pooled connection"):
            reader.get_log_entry("e1")
        assert reader.backend.describe()["read_replicas"][0]["usable"] is True
    assert reader.get_log_entry("e1").scid == "e1"


@pytest.mark.timeout(300)
def test_the_budget_holds_per_server_with_a_replica(stores: Stores):
    """12 threads of gets, writes and streams through a 2 + 1 pool (one per server):
    never more than 3 connections at the primary, nor at the standby."""
    from tests.pg import PgServer
    from tests.test_sqlalchemy_pool import ConnectionSampler

    store = stores.reader(
        replica_max_lag=3600, replica_check_interval=0.2, pool_size=2, max_overflow=1
    )
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for n in range(10):
                key = f"w{worker}-{n}"
                if worker % 2:  # writers (who then read their own writes from the primary)
                    store.create_record(_entry(key))
                    store.update_log_entry(key, logs=[n], expected_version=1)
                    assert store.get_log_entry(key).logs == [n]
                else:  # readers: the replica
                    store.get_log_entry(f"w{worker + 1}-{n}")
                sum(1 for _ in store.stream_records("log_entry", batch_size=4))
                store.count_log_entries()
        except BaseException as exc:  # reported below
            errors.append(exc)

    primary = PgServer(stores.pair.primary.dsn)
    standby = PgServer(stores.pair.standby.dsn)
    threads = [threading.Thread(target=work, args=(w,)) for w in range(12)]
    with (
        ConnectionSampler(primary, stores.database) as at_primary,
        ConnectionSampler(standby, stores.database) as at_standby,
    ):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == [], errors[:3]
    assert max(at_primary.samples) <= 3
    assert 1 <= max(at_standby.samples) <= 3
