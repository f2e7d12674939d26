"""Optional abilities in the suite: tests needing one the backend lacks skip, by name.

Everything not behind a capability is mandatory, so a backend cannot pass by skipping.
"""

from __future__ import annotations

import pytest

from storage_core.interface import Capability
from storage_core.manager import StorageManager

MARKER = "requires_capability"
KNOWN_CAPABILITIES = frozenset(value for name, value in vars(Capability).items() if name.isupper())


def requires_capability(*names: str) -> pytest.MarkDecorator:
    """Mark a test (or class) to run only on backends having every named capability.

    The `storage_core.testing.plugin` reads the mark from `storage_manager.capabilities`.
    """
    unknown = set(names) - KNOWN_CAPABILITIES
    if unknown:
        known = ", ".join(sorted(KNOWN_CAPABILITIES))
        raise ValueError(f"unknown capabilities {sorted(unknown)}; known: {known}")
    mark: pytest.MarkDecorator = getattr(pytest.mark, MARKER)(*names)
    return mark


def skip_unless_capability(manager: StorageManager, name: str) -> None:
    """Skip the running test, naming the capability, when the backend lacks it."""
    if name not in manager.capabilities:
        pytest.skip(f"backend {manager.backend_name!r} lacks capability {name!r}")


def skip_if_capability(manager: StorageManager, name: str) -> None:
    """Skip a test about the *absence* of a capability on backends that have it."""
    if name in manager.capabilities:
        pytest.skip(f"backend {manager.backend_name!r} has capability {name!r}")
