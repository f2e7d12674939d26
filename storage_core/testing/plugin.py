"""pytest plugin: fixtures that give each conformance test a fresh, provisioned store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from storage_core.manager import StorageManager, open_storage


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("storage", "webvh-storage conformance suite")
    group.addoption("--storage-backend", default=None, help="registered backend name to test")
    group.addoption("--storage-url", default=None, help="URL/URI the backend opens")


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
