"""The conformance suite every backend runs, built-in and third-party.

Enable it in a backend's own tests with `pytest_plugins = ["storage_core.testing.plugin"]`
and either a `storage_backend_config` fixture or `--storage-backend NAME --storage-url URL`.
"""
