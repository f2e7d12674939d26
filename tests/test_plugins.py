"""Backend plugins (issue #5): discovery, selection, allow/block lists and every error.

Fake plugins here are *real* distributions: a package plus a `*.dist-info` folder with
METADATA and entry_points.txt on sys.path, which importlib.metadata discovers exactly
as it discovers an installed wheel.
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from storage_core.cli import main as cli_main
from storage_core.errors import (
    DuplicateBackendError,
    InvalidBackendError,
    MissingDependencyError,
    PluginLoadError,
    UnknownBackendError,
)
from storage_core.manager import StorageManager, open_storage
from storage_core.plugins import clear_registry_cache, get_registry
from webvh_storage_memory.backend import MemoryBackend

MakeDist = Callable[..., Path]

#: A backend class for fake plugins: the memory backend under another name.
FAKE_BACKEND = """
from webvh_storage_memory.backend import MemoryBackend

class FakeBackend(MemoryBackend):
    pass
"""


def _hook(body: str) -> str:
    return "from storage_core.hookspecs import hookimpl\n\n@hookimpl\n" + textwrap.dedent(body)


@pytest.fixture
def make_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeDist]:
    """Write an installed-looking distribution with one `storage_core.backends` entry
    point; forget its modules and the plugin registry afterwards."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    packages: list[str] = []

    def make(dist: str, package: str, entry_point: str, files: dict[str, str]) -> Path:
        for relative, source in files.items():
            path = site / package / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(source)
        (site / package / "__init__.py").touch()
        info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(
            f"[storage_core.backends]\n{entry_point} = {package}.plugin\n"
        )
        packages.append(package)
        clear_registry_cache()
        return site / package

    clear_registry_cache()
    yield make
    for name in list(sys.modules):
        if name.partition(".")[0] in packages:
            del sys.modules[name]
    clear_registry_cache()


@pytest.fixture
def fresh_singleton() -> Iterator[None]:
    StorageManager.reset()
    yield
    StorageManager.reset()


def _backends_listing(capsys: pytest.CaptureFixture[str]) -> dict:
    assert cli_main(["backends", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


class TestSelectingTheMemoryPlugin:
    def test_storage_backend_env_selects_it_through_the_entry_point(
        self, monkeypatch: pytest.MonkeyPatch, fresh_singleton: None
    ) -> None:
        monkeypatch.setenv("STORAGE_BACKEND", "memory")
        manager = StorageManager()
        assert manager is StorageManager()
        assert manager.backend_name == "memory"
        assert type(manager.backend) is MemoryBackend
        manager.init_db()
        manager.create_task("t", "sync", "pending")
        assert manager.get_task("t").status == "pending"
        assert get_registry().get("memory").distribution == "webvh-storage-memory"

    def test_open_storage_selects_it_by_name(self) -> None:
        with open_storage("memory") as manager:
            assert isinstance(manager.backend, MemoryBackend)
            assert manager.capabilities == frozenset({"archive"})

    def test_cli_lists_it_with_its_distribution(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert cli_main(["backends"]) == 0
        lines = capsys.readouterr().out.splitlines()
        memory = [line for line in lines if line.split()[:1] == ["memory"]]
        assert len(memory) == 1, lines
        assert "webvh-storage-memory 0.1.0" in memory[0]
        listed = {b["name"]: b for b in _backends_listing(capsys)["backends"]}
        assert listed["memory"]["distribution"] == "webvh-storage-memory"
        assert listed["memory"]["capabilities"] == ["archive"]
        assert {"sqlalchemy", "askar", "memory"} <= set(listed)


class TestAllowAndBlockLists:
    @pytest.mark.parametrize(
        "blocked",
        ["webvh-storage-memory", "memory", "WebVH-Storage-Memory", "webvh_storage_memory"],
    )
    def test_disable_plugins_blocks_it(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], blocked: str
    ) -> None:
        """By distribution (any spelling pip accepts) or by entry-point name."""
        monkeypatch.setenv("STORAGE_DISABLE_PLUGINS", f"something-else, {blocked}")
        with pytest.raises(UnknownBackendError) as err:
            open_storage("memory")
        message = str(err.value)
        assert "no storage backend named 'memory'" in message
        assert "registered: askar, sqlalchemy" in message
        assert "pip install webvh-storage-memory" in message
        assert "memory" not in {b["name"] for b in _backends_listing(capsys)["backends"]}

    @pytest.mark.parametrize("allowed", ["webvh-storage-memory", "memory"])
    def test_plugins_allow_list_loads_only_the_named(
        self, monkeypatch: pytest.MonkeyPatch, allowed: str
    ) -> None:
        monkeypatch.setenv("STORAGE_PLUGINS", allowed)
        with open_storage("memory") as manager:
            assert manager.backend_name == "memory"
        with pytest.raises(UnknownBackendError, match=r"registered: memory\)"):
            open_storage("sqlalchemy")


class TestBrokenPlugins:
    def test_two_plugins_registering_one_name(
        self, make_dist: MakeDist, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        hook = _hook(
            "def register_storage_backends(register):\n"
            '    register("twin", "{pkg}.backend:FakeBackend")\n'
        )
        for dist, pkg in (("alpha-storage", "alpha_storage"), ("beta-storage", "beta_storage")):
            make_dist(
                dist, pkg, pkg, {"plugin.py": hook.format(pkg=pkg), "backend.py": FAKE_BACKEND}
            )
        with pytest.raises(DuplicateBackendError) as err:
            open_storage("twin")
        message = str(err.value)
        assert "'twin'" in message
        assert "alpha-storage" in message and "beta-storage" in message
        assert "STORAGE_DISABLE_PLUGINS" in message
        monkeypatch.setenv("STORAGE_DISABLE_PLUGINS", "beta-storage")
        with open_storage("twin") as manager:
            assert type(manager.backend).__module__ == "alpha_storage.backend"

    def test_plugin_failing_to_import(
        self, make_dist: MakeDist, capsys: pytest.CaptureFixture[str]
    ) -> None:
        make_dist(
            "broken-storage",
            "broken_storage",
            "broken",
            {
                "plugin.py": "import not_installed_dependency_xyz  # noqa\n",
            },
        )
        with open_storage("memory") as manager:  # the others keep working
            assert manager.backend_name == "memory"
        with pytest.raises(PluginLoadError) as err:
            open_storage("broken")
        message = str(err.value)
        assert "'broken'" in message and "broken-storage" in message
        assert "ModuleNotFoundError" in message and "not_installed_dependency_xyz" in message
        assert "broken" in _backends_listing(capsys)["failed"]
        with pytest.raises(UnknownBackendError, match="Plugins that failed to load: broken"):
            open_storage("nonexistent")

    def test_factory_returning_a_non_backend(self, make_dist: MakeDist) -> None:
        make_dist(
            "odd-storage",
            "odd_storage",
            "odd",
            {
                "plugin.py": _hook(
                    "def register_storage_backends(register):\n"
                    '    register("odd", lambda settings: {"not": "a backend"})\n'
                ),
            },
        )
        with pytest.raises(InvalidBackendError) as err:
            open_storage("odd")
        message = str(err.value)
        assert "'odd'" in message and "odd-storage" in message
        assert "dict" in message and "StorageBackend" in message

    def test_missing_optional_dependency_gives_the_install_hint(
        self, make_dist: MakeDist, capsys: pytest.CaptureFixture[str]
    ) -> None:
        make_dist(
            "needy-storage",
            "needy_storage",
            "needy",
            {
                "plugin.py": _hook(
                    "def register_storage_backends(register):\n"
                    '    register("needy", "needy_storage.backend:FakeBackend",\n'
                    '             requires=("absent_driver_xyz",),\n'
                    "             install_hint=\"pip install 'needy-storage[driver]'\")\n"
                    '    register("needy-late", "needy_storage.late:FakeBackend",\n'
                    '             install_hint="pip install late-driver")\n'
                ),
                "backend.py": FAKE_BACKEND,
                "late.py": "import absent_late_driver_xyz  # noqa\n" + FAKE_BACKEND,
            },
        )
        with pytest.raises(MissingDependencyError) as err:
            open_storage("needy")
        message = str(err.value)
        assert "'needy'" in message and "absent_driver_xyz" in message
        assert "pip install 'needy-storage[driver]'" in message
        assert "needy_storage.backend" not in sys.modules, "imported despite the missing dep"
        with pytest.raises(MissingDependencyError) as err:
            open_storage("needy-late")
        assert "absent_late_driver_xyz" in str(err.value)
        assert "pip install late-driver" in str(err.value)
        listed = {b["name"]: b for b in _backends_listing(capsys)["backends"]}
        assert listed["needy"]["dependencies_installed"] is False
        assert listed["needy"]["install_hint"] == "pip install 'needy-storage[driver]'"


class TestLazyLoading:
    def test_plugins_load_once_and_factories_only_when_chosen(
        self, make_dist: MakeDist, monkeypatch: pytest.MonkeyPatch, fresh_singleton: None
    ) -> None:
        log = (
            "from pathlib import Path\n"
            "def note(what):\n"
            "    with open(Path(__file__).with_name('loads.log'), 'a') as f:\n"
            "        f.write(what + '\\n')\n"
        )
        package = make_dist(
            "counted-storage",
            "counted_storage",
            "counted",
            {
                "log.py": log,
                "plugin.py": "from counted_storage.log import note\nnote('plugin module')\n"
                + _hook(
                    "def register_storage_backends(register):\n"
                    '    note("hook")\n'
                    '    register("counted",'
                    ' "counted_storage.backend:FakeBackend")\n'
                ),
                "backend.py": "from counted_storage.log import note\nnote('backend module')\n"
                + FAKE_BACKEND,
            },
        )

        def loads() -> list[str]:
            path = package / "loads.log"
            return path.read_text().splitlines() if path.exists() else []

        assert loads() == []
        with open_storage("memory"):
            pass
        assert loads() == ["plugin module", "hook"]  # the factory module is not imported
        monkeypatch.setenv("STORAGE_BACKEND", "counted")
        first = StorageManager()
        StorageManager.reset()
        second = StorageManager()
        assert first is not second
        assert second.backend_name == "counted"
        open_storage("counted").close()
        assert loads() == ["plugin module", "hook", "backend module"]
