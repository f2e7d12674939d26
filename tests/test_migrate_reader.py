"""The migration's Askar reader and its child (askar_reader.py, askar_child.py) against real
Askar stores."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aries_askar import Store

from tests.legacy_store import build_legacy_store, find_vectors
from webvh_storage_askar.config import AskarConfig
from webvh_storage_migrate.askar_reader import ReaderError, ScanReader

ROOT = Path(__file__).resolve().parent.parent
CATEGORIES = [("logEntries", False), ("witnessFile", False), ("resource", True)]


def direct_scan(uri: str, category: str, with_tags: bool) -> list[tuple]:
    """The category as aries_askar itself returns it, in id order."""

    async def go() -> list[tuple]:
        store = await Store.open(uri, "none", None)
        try:
            return [
                (e.name, bytes(e.raw_value), dict(e.tags) if with_tags else None)
                async for e in store.scan(category, order_by="id")
            ]
        finally:
            await store.close()

    return asyncio.run(go())


def read_all(reader: ScanReader, category: str, with_tags: bool) -> list[tuple]:
    return [
        (e.name, e.value, e.tags)
        for chunk in reader.chunks(category, with_tags=with_tags)
        for e in chunk
    ]


def open_reader(
    uri: str, chunk_size: int = 5, *, key: str | None = None, key_method: str = "none", **kwargs
) -> ScanReader:
    config = AskarConfig(uri=uri, key_method=key_method, key=key)
    return ScanReader(config, chunk_size=chunk_size, **kwargs)


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    return find_vectors()


@pytest.fixture
def store(tmp_path: Path, vectors_dir: Path) -> str:
    uri = f"sqlite://{tmp_path}/legacy.db"
    build_legacy_store(uri, vectors_dir, 12)
    return uri


def test_streams_the_expected_categories_in_id_order(store: str) -> None:
    with open_reader(store) as reader:
        reader.expect(CATEGORIES)
        for category, with_tags in CATEGORIES:
            chunks = list(reader.chunks(category, with_tags=with_tags))
            assert chunks and all(1 <= len(c) <= 5 for c in chunks)
            assert all(e.category == category for c in chunks for e in c)
            got = [(e.name, e.value, e.tags) for c in chunks for e in c]
            assert got == direct_scan(store, category, with_tags)
            if with_tags:
                assert any(tags for _, _, tags in got)


def test_other_orders_and_abandoned_streams_still_read_everything(store: str) -> None:
    with open_reader(store, chunk_size=2) as reader:
        reader.expect(CATEGORIES)
        first_child = reader.pid
        stream = reader.chunks("logEntries", with_tags=False)
        next(stream)
        stream.close()  # abandoned half way
        assert read_all(reader, "witnessFile", False) == direct_scan(store, "witnessFile", False)
        assert reader.pid != first_child  # a restarted child, not a confused one
        assert read_all(reader, "logEntries", False) == direct_scan(store, "logEntries", False)
        assert read_all(reader, "resource", True) == direct_scan(store, "resource", True)


def test_a_dead_child_is_reported_and_the_next_read_starts_a_new_one(
    tmp_path: Path, vectors_dir: Path
) -> None:
    store = f"sqlite://{tmp_path}/bigger.db"
    build_legacy_store(store, vectors_dir, 80)  # ~250 kB of logs: more than a pipe holds
    with open_reader(store, chunk_size=1) as reader:
        reader.expect([("logEntries", False)])
        stream = reader.chunks("logEntries", with_tags=False)
        next(stream)
        os.kill(reader.pid, signal.SIGKILL)
        with pytest.raises(ReaderError, match="stopped unexpectedly"):
            list(stream)
        assert read_all(reader, "logEntries", False) == direct_scan(store, "logEntries", False)


def test_a_wrong_key_is_an_error_that_never_shows_the_key(tmp_path: Path) -> None:
    uri = f"sqlite://{tmp_path}/keyed.db"
    right, wrong = Store.generate_raw_key(b"r" * 32), Store.generate_raw_key(b"w" * 32)

    async def provision() -> None:
        await (await Store.provision(uri, "raw", right, recreate=True)).close()

    asyncio.run(provision())
    with open_reader(uri, key=wrong, key_method="raw") as reader:
        reader.expect([("logEntries", False)])
        with pytest.raises(ReaderError) as caught:
            read_all(reader, "logEntries", False)
    assert wrong not in str(caught.value) and right not in str(caught.value)
    with open_reader(uri, key=right, key_method="raw") as reader:
        assert read_all(reader, "logEntries", False) == []


def _gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status  # exited; only waiting to be reaped


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to watch the child")
def test_the_child_exits_when_the_migration_is_killed(store: str) -> None:
    script = (
        "import sys, time\n"
        "from webvh_storage_askar.config import AskarConfig\n"
        "from webvh_storage_migrate.askar_reader import ScanReader\n"
        f"r = ScanReader(AskarConfig(uri={store!r}), chunk_size=1)\n"
        "r.expect([('logEntries', False), ('witnessFile', False)])\n"
        "print(r.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        child = int(parent.stdout.readline())
        time.sleep(0.5)  # let it start streaming into a pipe nobody reads
        assert not _gone(child)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        parent.stdout.close()
    deadline = time.monotonic() + 15
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(child), "the reader child outlived the killed migration"


def test_an_early_scan_is_used_when_asked_for_and_dropped_when_not(store: str) -> None:
    with open_reader(store, warm=["logEntries"]) as reader:
        reader.expect([("witnessFile", False)])  # the early scan is not wanted
        assert read_all(reader, "witnessFile", False) == direct_scan(store, "witnessFile", False)
        reader.expect([("logEntries", False)])
        assert read_all(reader, "logEntries", False) == direct_scan(store, "logEntries", False)
    with open_reader(store, chunk_size=3, warm=["logEntries"]) as reader:
        reader.expect(CATEGORIES)
        for category, with_tags in CATEGORIES:
            assert read_all(reader, category, with_tags) == direct_scan(store, category, with_tags)
