"""Run the webvh-storage conformance suite against the memory backend."""

from typing import Any

import pytest

pytest_plugins = ["storage_core.testing.plugin"]


@pytest.fixture
def storage_backend_config() -> dict[str, Any]:
    """The backend under test: the registered name, its URL (none) and options."""
    return {"backend": "memory", "url": None, "options": {}}
