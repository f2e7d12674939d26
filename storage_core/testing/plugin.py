"""pytest plugin: fixtures that give each conformance test a fresh, provisioned store.

A backend's own test suite enables it with::

    pytest_plugins = ["storage_core.testing.plugin"]

then either defines a `storage_backend_config` fixture or passes
`--storage-backend NAME [--storage-url URL]`, and imports the base test classes from
`storage_core.testing.suite`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

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


@contextmanager
def provisioned_storage(config: dict[str, Any]) -> Iterator[StorageManager]:
    """Open the configured backend, provision it empty, and close it afterwards."""
    manager = open_storage(config["backend"], config.get("url"), **config.get("options", {}))
    try:
        manager.init_db(recreate=True)
        yield manager
    finally:
        manager.close()


@pytest.fixture
def storage_backend_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Which backend to test. Override this fixture, or pass --storage-backend."""
    name = request.config.getoption("--storage-backend")
    if not name:
        pytest.fail(
            "no backend to test: define a `storage_backend_config` fixture returning "
            "{'backend': NAME, 'url': URL, 'options': {...}} or pass --storage-backend NAME"
        )
    return {"backend": name, "url": request.config.getoption("--storage-url"), "options": {}}


@pytest.fixture
def storage_manager(storage_backend_config: dict[str, Any]) -> Iterator[StorageManager]:
    with provisioned_storage(storage_backend_config) as manager:
        yield manager


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
