"""The conformance suite every backend runs, built-in and third-party.

Recipe for a backend's own tests (see docs/writing-a-backend.md)::

    # tests/conftest.py
    pytest_plugins = ["storage_core.testing.plugin"]

    @pytest.fixture
    def storage_backend_config():
        return {"backend": "mystore", "url": "mystore://...", "options": {}}

    # tests/test_conformance.py
    from storage_core.testing.suite import *  # noqa: F403

Instead of the fixture, `pytest --storage-backend NAME --storage-url URL` works too.
`storage_core.testing.suite` holds the base test classes, `...testing.samples` valid
records for every kind, `...testing.capabilities` the `requires_capability` mark.
"""
