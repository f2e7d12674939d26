"""Backend plugins (issue #5): discovery, selection, allow/block lists and every error.

Fake plugins here are *real* distributions: a package plus a `*.dist-info` folder with
METADATA and entry_points.txt on sys.path, which importlib.metadata discovers exactly
as it discovers an installed wheel.
"""

from __future__ import annotations

import json
import os
import subprocess
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
    ValidationError,
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


# --- issue 20: a broken plugin explains itself --------------------------------------------

#: A backend class that forgot two methods of the interface.
INCOMPLETE_BACKEND = """
from storage_core.interface import StorageBackend
from webvh_storage_memory.backend import MemoryBackend

class HalfBackend(StorageBackend):
    async def provision(self, recreate=False): ...
    def close(self): ...
    def health_check(self): return True
    create = MemoryBackend.create
    get = MemoryBackend.get
    update = MemoryBackend.update
    upsert = MemoryBackend.upsert
    delete = MemoryBackend.delete
    list = MemoryBackend.list
    bulk_upsert = MemoryBackend.bulk_upsert
"""


def _registering(name: str, target: str, extra: str = "") -> str:
    return _hook(
        f'def register_storage_backends(register):\n    register("{name}", "{target}"{extra})\n'
    )


def _broken_dists(make_dist: MakeDist) -> None:
    """One installed distribution per fault of issue 20; returns their site folder."""
    make_dist(
        "typo-storage",
        "typo_storage",
        "typo",
        {
            "plugin.py": _registering("typo", "typo_storage.backend:FakeBackand"),
            "backend.py": FAKE_BACKEND,
        },
    )
    make_dist(
        "half-storage",
        "half_storage",
        "half",
        {
            "plugin.py": _registering("half", "half_storage.backend:HalfBackend"),
            "backend.py": INCOMPLETE_BACKEND,
        },
    )
    make_dist(
        "inner-storage",
        "inner_storage",
        "inner",
        {
            "plugin.py": _registering(
                "inner",
                "inner_storage.backend:FakeBackend",
                ", requires=('sqlalchemy',), install_hint=\"pip install 'inner-storage[driver]'\"",
            ),
            # the driver is installed; the backend module itself is wrong
            "backend.py": "from sqlalchemy import NoSuchThing  # noqa\n" + FAKE_BACKEND,
        },
    )
    make_dist(
        "bare-storage",
        "bare_storage",
        "bare",
        {
            "plugin.py": "def register_storage_backends(register):\n"
            '    register("bare", "bare_storage.backend:FakeBackend")\n',
            "backend.py": FAKE_BACKEND,
        },
    )
    make_dist(
        "misspelt-storage",
        "misspelt_storage",
        "misspelt",
        {
            "plugin.py": "from storage_core.hookspecs import hookimpl\n\n@hookimpl\n"
            "def register_storage_backend(register):\n"
            '    register("misspelt", "misspelt_storage.backend:FakeBackend")\n',
            "backend.py": FAKE_BACKEND,
        },
    )
    for dist, pkg in (("alpha-storage", "alpha_storage"), ("beta-storage", "beta_storage")):
        make_dist(
            dist,
            pkg,
            pkg,
            {
                "plugin.py": _registering("twin", f"{pkg}.backend:FakeBackend"),
                "backend.py": FAKE_BACKEND,
            },
        )


#: backend name -> (error class, what the message must say, what it must not say)
FAULTS: dict[str, tuple[type[Exception], list[str], list[str]]] = {
    "typo": (
        PluginLoadError,
        ["typo-storage", "entry point typo", "has no attribute 'FakeBackand'", "'FakeBackend'"],
        ["AttributeError:"],
    ),
    "half": (
        InvalidBackendError,
        ["half-storage", "entry point half", "HalfBackend", "abstract methods count, stream"],
        ["Can't instantiate"],
    ),
    "inner": (
        PluginLoadError,
        ["inner-storage", "entry point inner", "ImportError", "NoSuchThing"],
        ["pip install", "not installed"],
    ),
    "bare": (
        PluginLoadError,
        ["bare-storage", "entry point bare", "no storage_core hook found", "not decorated"],
        ["pip install"],
    ),
    "misspelt": (
        PluginLoadError,
        [
            "misspelt-storage",
            "entry point misspelt",
            "'register_storage_backend' is not a hook name",
            "did you mean 'register_storage_backends'",
        ],
        ["pip install"],
    ),
    "twin": (
        DuplicateBackendError,
        ["alpha-storage (entry point alpha_storage)", "beta-storage (entry point beta_storage)"],
        [],
    ),
}


class TestBrokenPluginsExplainThemselves:
    """Issue 20: each fault names the distribution, the entry point and the actual fault,
    with no traceback, a hint only when true, and every other backend still working."""

    @pytest.mark.parametrize("name", sorted(FAULTS))
    def test_choosing_it_names_the_fault(self, make_dist: MakeDist, name: str) -> None:
        _broken_dists(make_dist)
        error, says, never = FAULTS[name]
        with pytest.raises(error) as err:
            open_storage(name)
        message = str(err.value)
        for text in says:
            assert text in message, message
        for text in never:
            assert text not in message, message

    def test_the_other_backends_keep_working(
        self, make_dist: MakeDist, capsys: pytest.CaptureFixture[str]
    ) -> None:
        _broken_dists(make_dist)
        with open_storage("memory") as manager:
            manager.init_db()
            assert manager.backend_name == "memory"
        listed = _backends_listing(capsys)
        assert {"sqlalchemy", "askar", "memory"} <= {b["name"] for b in listed["backends"]}
        assert set(listed["failed"]) == {"bare", "misspelt"}
        assert listed["failed"]["bare"]["distribution"] == "bare-storage"
        assert [c["distribution"] for c in listed["conflicts"]["twin"]] == [
            "alpha-storage",
            "beta-storage",
        ]

    def test_backends_check_reports_each_without_a_traceback(
        self, make_dist: MakeDist, tmp_path: Path
    ) -> None:
        """The real console entry in a fresh interpreter, the broken distributions on
        its path: one line per fault, exit 1, no traceback."""
        _broken_dists(make_dist)
        env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
        env.pop("STORAGE_BACKEND", None)
        done = subprocess.run(
            [sys.executable, "-m", "storage_core.cli", "backends", "--check"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 1, done
        assert "Traceback" not in done.stdout + done.stderr
        lines = done.stdout.splitlines()
        for name, (_, says, never) in FAULTS.items():
            about = [line for line in lines if f" {name}: " in line or f"'{name}'" in line]
            assert about, (name, done.stdout)
            for text in says:
                assert any(text in line for line in about), (name, text, about)
            for text in never:
                assert not any(text in line for line in about), (name, text, about)
        healthy = {line.split()[0]: line for line in lines if line.endswith("[ok]")}
        assert {"sqlalchemy", "askar", "memory"} <= set(healthy)

    def test_backends_check_passes_when_nothing_is_broken(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert cli_main(["backends", "--check", "--json"]) == 0
        listed = json.loads(capsys.readouterr().out)
        assert all(b["problem"] is None for b in listed["backends"])

    def test_hint_is_given_when_the_driver_is_really_missing(self, make_dist: MakeDist) -> None:
        make_dist(
            "lacking-storage",
            "lacking_storage",
            "lacking",
            {
                "plugin.py": _registering(
                    "lacking",
                    "lacking_storage.backend:FakeBackend",
                    ", install_hint=\"pip install 'lacking-storage[driver]'\"",
                ),
                "backend.py": "import absent_driver_abc  # noqa\n" + FAKE_BACKEND,
            },
        )
        with pytest.raises(MissingDependencyError) as err:
            open_storage("lacking")
        assert "absent_driver_abc" in str(err.value)
        assert "pip install 'lacking-storage[driver]'" in str(err.value)
        assert "entry point lacking" in str(err.value)


class TestDeclaredOptions:
    def test_a_plugin_declares_its_url_options_and_secrets(
        self,
        make_dist: MakeDist,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Issue 20: one documented way for a plugin to declare its URL variable and
        options; the framework parses, validates, masks and lists them."""
        plugin = (
            "from storage_core.hookspecs import hookimpl\n"
            "from storage_core.options import BackendOptions, Option\n"
            "OPTIONS = BackendOptions(url_env='REDISH_URL', url_default='redish://localhost',\n"
            "    options=(Option('db', int, 0, 'REDISH_DB'),\n"
            "             Option('token', env='REDISH_TOKEN', secret=True)))\n"
            "@hookimpl\n"
            "def register_storage_backends(register):\n"
            "    register('redish', 'redish_storage.backend:Redish', options=OPTIONS)\n"
        )
        backend = FAKE_BACKEND.replace("class FakeBackend", "class Redish") + (
            "    def __init__(self, settings):\n"
            "        super().__init__(settings)\n"
            "        if settings.option('db') == 13:\n"
            "            raise ValueError('refused with ' + settings.option('token'))\n"
        )
        make_dist(
            "redish-storage",
            "redish_storage",
            "redish",
            {"plugin.py": plugin, "backend.py": backend},
        )
        monkeypatch.setenv("REDISH_URL", "redish://u:pw-in-url@cache/0")
        monkeypatch.setenv("REDISH_TOKEN", "t0ken-s3cret")
        monkeypatch.setenv("DATABASE_URL", "postgresql://u:x@sql-host/db")
        with open_storage("redish", db="4") as manager:
            assert manager.settings.url == "redish://u:pw-in-url@cache/0"
            assert manager.settings.option("db") == 4
            assert "t0ken-s3cret" in manager.settings.secrets
            for text in (repr(manager.settings), repr(manager)):
                assert "sql-host" not in text and "t0ken-s3cret" not in text
                assert "pw-in-url" not in text
        with pytest.raises(ValidationError) as err:
            open_storage("redish", dbb=1)
        assert "accepted: db, token" in str(err.value)
        monkeypatch.setenv("REDISH_DB", "one")
        with pytest.raises(ValidationError) as err:
            open_storage("redish")
        assert err.value.field == "REDISH_DB"
        listed = {b["name"]: b for b in _backends_listing(capsys)["backends"]}
        assert listed["redish"]["url"]["env"] == "REDISH_URL"
        token = next(o for o in listed["redish"]["options"] if o["name"] == "token")
        assert token == {
            "name": "token",
            "type": "string",
            "default": None,
            "env": "REDISH_TOKEN",
            "secret": True,
            "choices": None,
            "help": "",
        }
        sql_options = {o["name"] for o in listed["sqlalchemy"]["options"]}
        assert {
            "pool_size",
            "max_overflow",
            "pool_timeout",
            "connect_timeout",
            "echo",
        } <= sql_options
        askar = {o["env"]: o for o in listed["askar"]["options"]}
        assert askar["ASKAR_KEY"]["secret"] is True
