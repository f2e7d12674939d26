"""One JSON encode per write (issue 17, item 3): the manager's validation encodes each
JSON document to measure it, and the backend writes those same bytes instead of
encoding the document again. Encodings never outlive the manager call that made them.

Counted on real stores by wrapping `orjson.dumps` (the encoder every layer calls) and
counting the calls for one particular document object.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio

from storage_core import AsyncStorageManager, encoded, open_async_storage, open_storage
from storage_core.adapters import ThreadedAsyncBackend
from storage_core.kinds import LOG_ENTRY
from storage_core.records import LogEntry
from storage_core.testing.plugin import provisioned_storage
from tests.conftest import variant_config

SQL = ["sqlite-file", "postgres"]


@pytest.fixture(params=[*SQL, "askar-sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    with provisioned_storage(variant_config(request.param, request, tmp_path)) as manager:
        yield manager


@pytest_asyncio.fixture(params=[*SQL, "askar-sqlite", "sqlite-file+threads"])
async def async_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """The async face of each backend; `+threads`: a sync backend on the framework's
    thread-pool adapter (the async face of any backend without a native one)."""
    variant, _, adapter = request.param.partition("+")
    config = variant_config(variant, request, tmp_path)
    if adapter:
        sync = open_storage(config["backend"], config["url"])
        manager = AsyncStorageManager(sync.settings, backend=ThreadedAsyncBackend(sync.backend))
    else:
        manager = open_async_storage(config["backend"], config["url"])
    try:
        await manager.provision(recreate=True)
        yield manager
    finally:
        await manager.aclose()


class EncodeCounter:
    """How many times orjson encoded each watched object."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.watched: list[Any] = []
        self.counts: list[int] = []
        real = orjson.dumps

        def counting(value: Any, *args: Any, **kwargs: Any) -> bytes:
            for i, doc in enumerate(self.watched):
                if value is doc:
                    self.counts[i] += 1
            return real(value, *args, **kwargs)

        monkeypatch.setattr(orjson, "dumps", counting)

    def watch(self, *docs: Any) -> None:
        self.watched = list(docs)
        self.counts = [0] * len(docs)


@pytest.fixture
def encodes(monkeypatch: pytest.MonkeyPatch) -> EncodeCounter:
    return EncodeCounter(monkeypatch)


def _logs(n: int) -> list[Any]:
    return [{"versionId": f"{n}-abc", "state": {"id": f"did:x:{n}"}, "proof": [n, None, "é"]}]


def _entry(n: int, logs: list[Any]) -> LogEntry:
    scid = f"scid-{n:04d}"
    return LogEntry(
        scid=scid,
        did=f"did:webvh:{scid}:example.com:ns:{n}",
        domain="example.com",
        namespace="ns",
        identifier=str(n),
        logs=logs,
    )


def test_create_and_bulk_upsert_encode_each_document_once(store, encodes):
    logs = _logs(1)
    encodes.watch(logs)
    created = store.create_record(_entry(1, logs))
    assert encodes.counts == [1]
    assert created.logs == logs

    many = [_logs(n) for n in range(2, 7)]
    encodes.watch(*many)
    assert store.bulk_upsert("log_entry", [_entry(n, many[n - 2]) for n in range(2, 7)]) == 5
    assert encodes.counts == [1] * 5
    for n in range(2, 7):
        assert store.get_log_entry(f"scid-{n:04d}").logs == many[n - 2]


def test_update_and_upsert_encode_each_document_once(store, encodes):
    """On Askar too: its sync face writes on a loop thread, which runs the coroutine in
    a copy of the caller's context, so the manager's encodings reach it."""
    store.create_record(_entry(1, _logs(1)))
    logs = [*_logs(1), *_logs(2)]
    encodes.watch(logs)
    updated = store.update_log_entry("scid-0001", logs=logs)
    assert encodes.counts == [1]
    assert updated.logs == logs

    replaced = _logs(3)
    encodes.watch(replaced)
    store.upsert_record(_entry(1, replaced))
    assert encodes.counts == [1]
    assert store.get_log_entry("scid-0001").logs == replaced


async def test_async_writes_encode_each_document_once(async_store, encodes):
    """The async manager opens the same scope around each write as the sync one."""
    logs = _logs(1)
    encodes.watch(logs)
    await async_store.create_record(_entry(1, logs))
    assert encodes.counts == [1]

    logs = [*_logs(1), *_logs(2)]
    encodes.watch(logs)
    updated = await async_store.update_log_entry("scid-0001", logs=logs)
    assert encodes.counts == [1]
    assert updated.logs == logs

    replaced = _logs(3)
    encodes.watch(replaced)
    await async_store.upsert_record(_entry(1, replaced))
    assert encodes.counts == [1]
    assert (await async_store.get_log_entry("scid-0001")).logs == replaced

    many = [_logs(n) for n in range(2, 5)]
    encodes.watch(*many)
    entries = [_entry(n, many[n - 2]) for n in range(2, 5)]
    assert await async_store.bulk_upsert("log_entry", entries) == 3
    assert encodes.counts == [1] * 3
    for n in range(2, 5):
        assert (await async_store.get_log_entry(f"scid-{n:04d}")).logs == many[n - 2]


def test_an_encoding_does_not_outlive_its_call(store):
    """A document written through the manager, changed, then written by the backend
    directly (no manager call around it) is stored as it is now, not as validated."""
    logs = _logs(1)
    store.create_record(_entry(1, logs))
    logs.append({"versionId": "2-def"})
    assert encoded.dumps(logs) == orjson.dumps(logs)
    store.backend.bulk_upsert(LOG_ENTRY, [replace(store.get_log_entry("scid-0001"), logs=logs)])
    assert store.get_log_entry("scid-0001").logs == logs


def test_a_scope_reuses_only_the_object_validation_encoded():
    doc = {"a": [1, 2]}
    equal = {"a": [1, 2]}
    with encoded.scope():
        encoded.remember(doc, b"validated")
        assert encoded.dumps(doc) == b"validated"
        assert encoded.dumps_str(doc) == "validated"
        assert encoded.dumps(equal) == b'{"a":[1,2]}'
    assert encoded.dumps(doc) == b'{"a":[1,2]}'
    encoded.remember(doc, b"outside a scope: not kept")
    assert encoded.dumps(doc) == b'{"a":[1,2]}'
