"""What the repo's distributions install and how they work once installed.

A server with its own `backends/` or `alembic/` folder on sys.path must never shadow ours
(or be shadowed by ours), so every wheel is built and its top-level names listed. Then the
wheels are installed into a fresh venv outside the repository, as a user's `pip install
webvh-storage` would, and the console script is run there: `--version`, the `db`
schema commands on a SQLite file, and the hints for drivers and plugins not installed.
One module-scoped build and venv serve every test here.
"""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import tarfile
import zipfile
from email.parser import Parser
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


#: The distributions published from this repository (the example plugin is not).
PUBLISHED = (
    "webvh_storage",
    "webvh_storage_sqlalchemy",
    "webvh_storage_askar",
    "webvh_storage_migrate",
)


@pytest.fixture(scope="module")
def dist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every wheel, and the main distribution's sdist, built once for this module."""
    out = tmp_path_factory.mktemp("wheels")
    for args in (
        ["--wheel", "--all-packages"],
        ["--wheel", str(ROOT / "examples" / "memory_backend")],
        ["--sdist", str(ROOT)],
    ):
        subprocess.run(
            ["uv", "build", "-q", "-o", str(out), *args],
            cwd=ROOT,
            check=True,
            capture_output=True,
            timeout=300,
        )
    return out


@pytest.fixture(scope="module")
def wheels(dist_dir: Path) -> dict[str, zipfile.ZipFile]:
    built = {path.name.split("-")[0]: zipfile.ZipFile(path) for path in dist_dir.glob("*.whl")}
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


# --- metadata: what a package index shows ------------------------------------------------
def _metadata(wheel: zipfile.ZipFile) -> tuple[dict[str, str], list[tuple[str, str]]]:
    (path,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    message = Parser().parsestr(wheel.read(path).decode())
    return dict(message.items()), list(message.items())


def test_every_published_wheel_carries_the_apache_license_and_index_metadata(wheels):
    for dist in PUBLISHED:
        wheel = wheels[dist]
        (license_file,) = [n for n in wheel.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        text = wheel.read(license_file).decode()
        assert "Apache License" in text and "Version 2.0, January 2004" in text, dist
        fields, items = _metadata(wheel)
        assert fields["License-Expression"] == "Apache-2.0", dist
        classifiers = [v for k, v in items if k == "Classifier"]
        assert "Programming Language :: Python :: 3.11" in classifiers, dist
        assert "Typing :: Typed" in classifiers, dist
        urls = dict(v.split(", ", 1) for k, v in items if k == "Project-URL")
        assert {"Homepage", "Repository", "Issues"} <= set(urls), dist
        assert all(u.startswith("https://") for u in urls.values()), urls


def test_every_runtime_dependency_has_an_upper_bound(wheels):
    """Alembic, SQLAlchemy, drivers, pluggy...: a new major version must not install
    untested. (The `testing` extra is for a plugin author's own test tools.)"""
    for dist in PUBLISHED:
        _, items = _metadata(wheels[dist])
        for _, requirement in (item for item in items if item[0] == "Requires-Dist"):
            if "extra == 'testing'" in requirement:
                continue
            assert "<" in requirement or "==" in requirement, (dist, requirement)


def test_the_sdist_has_no_benchmark_results_and_carries_the_license(dist_dir: Path):
    (sdist,) = dist_dir.glob("webvh_storage-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]
    assert "LICENSE" in names
    assert "tests/data/vectors/README.md" in names
    assert not [n for n in names if n.startswith("benchmarks/results")], names
    assert not [n for n in names if n.endswith((".db", "coverage.json"))], names


def test_readme_links_work_on_a_package_index_page():
    """PyPI renders the README without the repository: every link must be absolute."""
    links = re.findall(r"\]\(([^)]+)\)", (ROOT / "README.md").read_text())
    assert links
    relative = [link for link in links if not link.startswith(("https://", "#"))]
    assert relative == []


# --- installed from the wheels, in a venv outside the repository --------------------------
def _clean_env(**extra: str) -> dict[str, str]:
    prefixes = ("STORAGE_", "DATABASE_", "POSTGRES_", "ASKAR_", "VIRTUAL_ENV", "COV_", "COVERAGE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.pop("PYTHONPATH", None)
    return {**env, **extra}


def _make_venv(where: Path, wheel_dir: Path, *wheels: str, no_deps: tuple[str, ...] = ()) -> Path:
    subprocess.run(["uv", "venv", "-q", "-p", "3.11", str(where)], check=True, timeout=120)
    python = str(where / "bin" / "python")

    def install(names: tuple[str, ...], *flags: str) -> None:
        files = [str(next(wheel_dir.glob(f"{name}-*.whl"))) for name in names]
        subprocess.run(
            ["uv", "pip", "install", "-q", "--compile-bytecode", "-p", python, *flags, *files],
            check=True,
            capture_output=True,
            timeout=300,
            env=_clean_env(),
        )

    install(wheels)
    if no_deps:
        install(no_deps, "--no-deps")
    return where / "bin"


@pytest.fixture(scope="module")
def installed(dist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip install webvh-storage` (no extras): the venv's bin folder."""
    where = tmp_path_factory.mktemp("venv")
    return _make_venv(where / "venv", dist_dir, "webvh_storage", "webvh_storage_sqlalchemy")


def _cli(bin_dir: Path, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / "storage-core"), *args],
        cwd=cwd,
        env=_clean_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _one_line_error(run: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert run.returncode == 2, (run.stdout, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_installed_package_is_not_the_repository(installed: Path):
    run = subprocess.run(
        [str(installed / "python"), "-c", "import storage_core; print(storage_core.__file__)"],
        cwd=installed,
        env=_clean_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert str(installed.parent) in run.stdout and str(ROOT) not in run.stdout


def test_installed_version(installed: Path, tmp_path: Path):
    run = _cli(installed, tmp_path, "--version")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "storage-core (webvh-storage) 0.1.0"


def test_db_commands_from_the_installed_wheel(installed: Path, tmp_path: Path):
    """No alembic.ini anywhere: the packaged revisions and the library's configuration."""
    database = tmp_path / "app.db"
    env = {"DATABASE_URL": f"sqlite:///{database}"}

    run = _cli(installed, tmp_path, "db", "current", **env)
    _one_line_error(run, f"no database at {database}")
    assert not database.exists()

    assert _cli(installed, tmp_path, "db", "upgrade", **env).returncode == 0
    check = _cli(installed, tmp_path, "db", "check", **env)
    assert check.returncode == 0, check.stderr
    history = _cli(installed, tmp_path, "db", "history", **env).stdout
    assert "0001_initial -> 0002_record_version" in history

    assert (
        _cli(installed, tmp_path, "db", "downgrade", "0002_record_version", **env).returncode == 0
    )
    current = _cli(installed, tmp_path, "db", "current", **env).stdout.strip()
    assert current == "0002_record_version (head is 0008_long_keys)"
    # stamped head without the last migration's table: `check` sees the difference
    assert _cli(installed, tmp_path, "db", "stamp", "head", **env).returncode == 0
    differs = _cli(installed, tmp_path, "db", "check", **env)
    assert differs.returncode == 1 and "askar_archive" in differs.stderr, differs.stderr
    _one_line_error(_cli(installed, tmp_path, "db", "stamp", "nosuch", **env), "nosuch")

    assert _cli(installed, tmp_path, "db", "stamp", "0002_record_version", **env).returncode == 0
    url = f"sqlite:///{database}"  # --url works as well as the environment
    assert _cli(installed, tmp_path, "db", "--url", url, "upgrade", "head").returncode == 0
    info = _cli(installed, tmp_path, "info", "--json", **env)
    assert info.returncode == 0, info.stderr
    assert '"schema_revision": "0008_long_keys"' in info.stdout
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("app.db")) == []


def test_a_missing_postgres_driver_names_the_extra(installed: Path, tmp_path: Path):
    url = "postgresql+psycopg2://app:hunter2@127.0.0.1:5432/app"
    run = _cli(installed, tmp_path, "info", "--url", url)
    _one_line_error(run, "psycopg2", "pip install 'webvh-storage[postgres]'")
    assert "hunter2" not in run.stderr
    run = _cli(installed, tmp_path, "db", "upgrade", DATABASE_URL=url)
    _one_line_error(run, "DATABASE_URL", "pip install 'webvh-storage[postgres]'")


def test_a_command_from_an_extra_not_installed_names_the_extra(installed: Path, tmp_path: Path):
    run = _cli(installed, tmp_path, "migrate-askar", "--askar", "sqlite://askar.db")
    _one_line_error(run, "migrate-askar", "pip install 'webvh-storage[askar]'")


def test_migrate_askar_without_aries_askar_names_the_extra(dist_dir: Path, tmp_path: Path):
    """The plugins installed but the driver missing (e.g. `pip install --no-deps`)."""
    bin_dir = _make_venv(
        tmp_path / "venv",
        dist_dir,
        "webvh_storage",
        "webvh_storage_sqlalchemy",
        no_deps=("webvh_storage_askar", "webvh_storage_migrate"),
    )
    target = f"sqlite:///{tmp_path}/target.db"
    run = _cli(bin_dir, tmp_path, "migrate-askar", "--askar", "sqlite://askar.db", "--to", target)
    assert run.returncode == 2, run.stderr
    assert "pip install 'webvh-storage[askar]'" in run.stderr
    assert "Traceback" not in run.stderr
    run = _cli(bin_dir, tmp_path, "info", STORAGE_BACKEND="askar", ASKAR_DB="sqlite://a.db")
    _one_line_error(run, "pip install 'webvh-storage[askar]'")
