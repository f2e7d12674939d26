"""pytest plugin: fixtures that give each conformance test a fresh, provisioned store.

A backend's own test suite enables it with::

    pytest_plugins = ["storage_core.testing.plugin"]

then either defines a `storage_backend_config` fixture or passes
`--storage-backend NAME [--storage-url URL]` (with neither, the built-in SQL backend on a
SQLite file per test), and imports the base test classes from `storage_core.testing.suite`.
Fixtures: `storage_manager` (a fresh provisioned store per test), `async_storage_manager`
(the same store's async face, `AsyncStorageManager`), `dual_storage` (SQL and
Askar side by side), `storage_vectors_dir` (the did:webvh test vectors).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from storage_core.adapters import LoopThreadBackend, as_async
from storage_core.async_manager import AsyncStorageManager, open_async_storage, workers_for
from storage_core.manager import StorageManager, open_storage
from storage_core.testing.capabilities import MARKER, skip_unless_capability

VECTORS_ENV = "WEBVH_STORAGE_VECTORS"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("storage", "webvh-storage conformance suite")
    group.addoption("--storage-backend", default=None, help="registered backend name to test")
    group.addoption("--storage-url", default=None, help="URL/URI the backend opens")
    group.addoption(
        "--storage-vectors",
        default=None,
        help=f"folder of did:webvh test vectors (default: ${VECTORS_ENV}, else shared/vectors "
        "in the rootdir or one of its parents)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(*names): run only on backends having these capabilities"
    )


def open_configured(config: dict[str, Any]) -> StorageManager:
    """The configured store. With `"face": "async"` every call goes through the
    backend's async face (its native one, or the thread-pool adapter) driven from a loop
    thread, so the whole sync suite judges the async face too."""
    manager = open_storage(config["backend"], config.get("url"), **config.get("options", {}))
    if config.get("face") != "async":
        return manager
    face = as_async(manager.backend, workers_for(manager.settings))
    return StorageManager(manager.settings, backend=LoopThreadBackend(face))


@contextmanager
def provisioned_storage(config: dict[str, Any]) -> Iterator[StorageManager]:
    """Open the configured backend, provision it empty, and close it afterwards."""
    manager = open_configured(config)
    try:
        manager.init_db(recreate=True)
        yield manager
    finally:
        manager.close()


def default_backend_config(folder: Path) -> dict[str, Any]:
    """The store tests get when none is configured: the built-in SQL backend on a SQLite
    file in `folder` (it is installed with webvh-storage, so it always works)."""
    return {"backend": "sqlalchemy", "url": f"sqlite:///{folder}/store.db", "options": {}}


@pytest.fixture
def storage_backend_config(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Which backend to test: override this fixture, or pass --storage-backend NAME
    [--storage-url URL]; with neither, SQLite through the built-in SQL backend."""
    name = request.config.getoption("--storage-backend")
    if not name:
        return default_backend_config(tmp_path)
    return {"backend": name, "url": request.config.getoption("--storage-url"), "options": {}}


@pytest.fixture
def storage_manager(storage_backend_config: dict[str, Any]) -> Iterator[StorageManager]:
    with provisioned_storage(storage_backend_config) as manager:
        yield manager


@pytest_asyncio.fixture
async def async_storage_manager(
    storage_backend_config: dict[str, Any],
) -> AsyncIterator[AsyncStorageManager]:
    """The configured backend's async face, provisioned empty, closed afterwards."""
    config = storage_backend_config
    if config.get("face") == "async":
        pytest.skip("the async suite runs once per backend, on its variant without '+async'")
    manager = open_async_storage(config["backend"], config.get("url"), **config.get("options", {}))
    try:
        await manager.provision(recreate=True)
        yield manager
    finally:
        await manager.aclose()


@pytest.fixture
def dual_storage(tmp_path: Path) -> Iterator[dict[str, StorageManager]]:
    """The same calls through SQL and Askar, to compare what each returns: a dict with a
    provisioned `"storage"` (SQLAlchemy on SQLite) and `"askar"` (Askar on SQLite).
    Skips when the Askar backend is not installed (`pip install 'webvh-storage[askar]'`)."""
    pytest.importorskip("aries_askar", reason="dual_storage needs webvh-storage[askar]")
    with (
        provisioned_storage(default_backend_config(tmp_path)) as sql,
        provisioned_storage({"backend": "askar", "url": f"sqlite://{tmp_path}/askar.db"}) as askar,
    ):
        yield {"storage": sql, "askar": askar}


@pytest.fixture(autouse=True)
def _storage_capability_gate(request: pytest.FixtureRequest) -> None:
    """Skip tests marked `requires_capability(...)` on backends lacking a named one.

    It only opens a store for marked tests, so unmarked tests pay nothing.
    """
    marks = list(request.node.iter_markers(MARKER))
    if not marks:
        return
    manager: StorageManager = request.getfixturevalue("storage_manager")
    for mark in marks:
        for name in mark.args:
            skip_unless_capability(manager, name)


@pytest.fixture(scope="session")
def storage_vectors_dir(request: pytest.FixtureRequest) -> Path:
    """The shared did:webvh vectors (`*/did.jsonl`, `*/did-witness.json`), or a skip."""
    given = request.config.getoption("--storage-vectors") or os.environ.get(VECTORS_ENV)
    candidates = (
        [Path(given)]
        if given
        else [
            folder / "shared" / "vectors"
            for folder in (request.config.rootpath, *request.config.rootpath.parents)
        ]
    )
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    where = given or f"shared/vectors above {request.config.rootpath}"
    pytest.skip(f"did:webvh test vectors not found ({where}); set {VECTORS_ENV}")
