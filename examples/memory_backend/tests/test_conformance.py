"""The whole conformance suite; pytest collects the imported base classes as tests."""

from storage_core.testing.suite import *  # noqa: F403
