"""What the repo's distributions install: only the project's own, prefixed import names.

A server with its own `backends/` or `alembic/` folder on sys.path must never shadow ours
(or be shadowed by ours), so every wheel is built and its top-level names listed.
"""

from __future__ import annotations

import configparser
import subprocess
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OWN_NAMES = {
    "webvh_storage": {"storage_core"},
    "webvh_storage_sqlalchemy": {"webvh_storage_sqlalchemy"},
    "webvh_storage_askar": {"webvh_storage_askar"},
    "webvh_storage_migrate": {"webvh_storage_migrate"},
    "webvh_storage_memory": {"webvh_storage_memory"},
}
ENTRY_POINTS = {
    "webvh_storage_sqlalchemy": {"sqlalchemy": "webvh_storage_sqlalchemy.plugin"},
    "webvh_storage_askar": {"askar": "webvh_storage_askar.plugin"},
    "webvh_storage_migrate": {"migrate-askar": "webvh_storage_migrate.plugin"},
    "webvh_storage_memory": {"memory": "webvh_storage_memory.plugin"},
}


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, zipfile.ZipFile]:
    out = tmp_path_factory.mktemp("wheels")
    for args in (["--all-packages"], [str(ROOT / "examples" / "memory_backend")]):
        subprocess.run(
            ["uv", "build", "--wheel", "-q", "-o", str(out), *args],
            cwd=ROOT,
            check=True,
            capture_output=True,
            timeout=300,
        )
    built = {path.name.split("-")[0]: zipfile.ZipFile(path) for path in out.glob("*.whl")}
    assert set(built) == set(OWN_NAMES), sorted(built)
    return built


def _top_level(wheel: zipfile.ZipFile) -> set[str]:
    names = {name.split("/")[0] for name in wheel.namelist()}
    return {n.removesuffix(".py") for n in names if not n.endswith((".dist-info", ".data"))}


def test_every_wheel_installs_only_its_own_prefixed_package(wheels):
    for dist, wheel in wheels.items():
        assert _top_level(wheel) == OWN_NAMES[dist], dist


def test_every_package_ships_py_typed(wheels):
    for dist, wheel in wheels.items():
        (package,) = OWN_NAMES[dist]
        assert f"{package}/py.typed" in wheel.namelist(), dist


def test_sql_backend_wheel_carries_its_alembic_revisions(wheels):
    names = wheels["webvh_storage_sqlalchemy"].namelist()
    assert "webvh_storage_sqlalchemy/alembic/env.py" in names
    assert "webvh_storage_sqlalchemy/alembic/script.py.mako" in names
    revisions = [n for n in names if n.startswith("webvh_storage_sqlalchemy/alembic/versions/")]
    assert len(revisions) >= 3, revisions


def test_each_plugin_wheel_declares_its_own_entry_point(wheels):
    for dist, expected in ENTRY_POINTS.items():
        wheel = wheels[dist]
        (path,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
        parser = configparser.ConfigParser()
        parser.read_string(wheel.read(path).decode())
        assert dict(parser["storage_core.backends"]) == expected, dist
    core = wheels["webvh_storage"].namelist()
    (path,) = [n for n in core if n.endswith(".dist-info/entry_points.txt")]
    parser = configparser.ConfigParser()
    parser.read_string(wheels["webvh_storage"].read(path).decode())
    assert not parser.has_section("storage_core.backends")  # built-ins are plugins too
