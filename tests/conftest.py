"""Fixtures shared by the whole test suite.

`storage_manager` runs every contract test on each backend variant below; the
PostgreSQL variants get one fresh database per test run, dropped at the end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

pytest.register_assert_rewrite("storage_core.testing")

from storage_core.plugins import clear_registry_cache  # noqa: E402
from storage_core.testing.plugin import provisioned_storage  # noqa: E402
from tests.pg import IN_CI, PgServer, admin_url, require_pg  # noqa: E402

pytest_plugins = ["storage_core.testing.plugin"]

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "tests" / "data" / "vectors"

SQL_VARIANTS = ["sqlite-file", "sqlite-memory", "postgres"]
ASKAR_VARIANTS = ["askar-sqlite", "askar-memory", "askar-postgres"]
VARIANTS = SQL_VARIANTS + ASKAR_VARIANTS


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests never pick up the developer's own storage settings."""
    for name in list(os.environ):
        if name.startswith(("STORAGE_", "ASKAR_", "POSTGRES_")) or name == "DATABASE_URL":
            monkeypatch.delenv(name, raising=False)
    yield
    clear_registry_cache()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = PgServer(admin_url())
    yield server
    for name in server.created:
        server.drop_database(name)


@pytest.fixture(scope="session")
def pg_database(pg_server: PgServer) -> str:
    """A SQLAlchemy URL to an empty database that lives for the test run."""
    require_pg(pg_server)
    return pg_server.sqlalchemy_url(pg_server.create_database("webvh_test_sql"))


@pytest.fixture(scope="session")
def askar_pg_database(pg_server: PgServer) -> str:
    """An Askar URI to an empty database that lives for the test run."""
    require_pg(pg_server)
    return pg_server.askar_uri(pg_server.create_database("webvh_test_askar"), max_connections="10")


def variant_config(variant: str, request: pytest.FixtureRequest, tmp_path: Path) -> dict:
    if variant == "sqlite-file":
        return {"backend": "sqlalchemy", "url": f"sqlite:///{tmp_path}/store.db"}
    if variant == "sqlite-memory":
        return {"backend": "sqlalchemy", "url": "sqlite:///:memory:"}
    if variant == "postgres":
        return {"backend": "sqlalchemy", "url": request.getfixturevalue("pg_database")}
    if variant == "askar-sqlite":
        return {"backend": "askar", "url": f"sqlite://{tmp_path}/askar.db"}
    if variant == "askar-memory":
        return {"backend": "askar", "url": "sqlite://:memory:"}
    if variant == "askar-postgres":
        return {"backend": "askar", "url": request.getfixturevalue("askar_pg_database")}
    raise ValueError(variant)


@pytest.fixture(params=VARIANTS)
def storage_backend_config(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    return variant_config(request.param, request, tmp_path)


@pytest.fixture
def storage_manager(storage_backend_config: dict[str, Any]):
    """A fresh StorageManager on each backend variant, provisioned with recreate=True."""
    with provisioned_storage(storage_backend_config) as manager:
        yield manager


def require_vectors(folder: Path, *, in_ci: bool = IN_CI) -> Path:
    """`folder` if it exists; else a skip with the reason, or a failure under CI=true,
    where the tests on real did:webvh logs must run."""
    if folder.is_dir():
        return folder
    reason = f"test vectors not found at {folder}"
    if in_ci:
        pytest.fail(f"CI=true and the vectors are required: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    return require_vectors(VECTORS)


@pytest.fixture(scope="session")
def storage_vectors_dir() -> Path:
    """The conformance suite's vectors: this repository's, under the same CI rule."""
    return require_vectors(VECTORS)


# Hypothesis profiles: `ci` (bounded, the default) and `long` (a longer local run):
# `uv run pytest tests/test_differential.py --hypothesis-profile=long`.
hypothesis_settings.register_profile("ci", max_examples=25)
hypothesis_settings.register_profile("long", max_examples=2000)


def pytest_configure(config: pytest.Config) -> None:
    """`ci` unless --hypothesis-profile names another (whichever plugin runs first)."""
    hypothesis_settings.load_profile(config.getoption("hypothesis_profile", None) or "ci")
