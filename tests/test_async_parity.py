"""Issue 13: `AsyncStorageManager` has every method of `StorageManager`, with the same
name and arguments, as a coroutine (or the async form of what the sync one returns: an
async iterator for a stream, an `async with` block for a block)."""

from __future__ import annotations

import inspect

from storage_core import AsyncStorageManager, StorageManager

#: Sync-only, each with an async counterpart or none needed.
SYNC_ONLY = {
    "close": "aclose",  # `await storage.aclose()` / `async with`
}
#: Methods whose sync form returns an iterator or a context manager: the async form is
#: a plain method returning its async counterpart (not a coroutine).
ITERATORS = {"stream_records", "archive_stream"}
BLOCKS = {"primary", "transaction", "get_session"}


def _public(cls: type) -> dict[str, object]:
    return {name: getattr(cls, name) for name in dir(cls) if not name.startswith("_")}


def test_every_sync_method_has_an_async_twin_with_the_same_arguments() -> None:
    sync, asynchronous = _public(StorageManager), _public(AsyncStorageManager)
    assert set(sync) - set(asynchronous) == set(SYNC_ONLY)
    for name, twin in SYNC_ONLY.items():
        assert twin is None or twin in asynchronous, name
    for name, method in sync.items():
        if name in SYNC_ONLY or not inspect.isfunction(method):
            continue  # properties (engine, capabilities, ...) are the same attributes
        other = asynchronous[name]
        assert list(inspect.signature(method).parameters) == list(
            inspect.signature(other).parameters  # type: ignore[arg-type]
        ), name
        if name in ITERATORS | BLOCKS:
            assert not inspect.iscoroutinefunction(other), name
        else:
            assert inspect.iscoroutinefunction(other), name
