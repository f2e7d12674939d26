"""Find storage backends through the `storage_core.backends` entry points, via pluggy.

Built-in backends are entry points of this distribution and load exactly like
third-party ones. Loading is lazy (first use) and happens once per allow/block setting.

A broken plugin never breaks the others: each fault is kept as a `PluginFault` naming
the distribution, the entry point and what is actually wrong, and is raised (as a
`PluginError`) only when that plugin's backend is chosen; `storage-core backends
--check` lists them all (`storage_core.diagnostics`).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Any

import pluggy

from storage_core import hookspecs
from storage_core.config import Settings
from storage_core.declare import declare_kind
from storage_core.errors import (
    DuplicateBackendError,
    InvalidBackendError,
    MissingDependencyError,
    PluginLoadError,
    UnknownBackendError,
)
from storage_core.interface import StorageBackend
from storage_core.options import NO_OPTIONS, BackendOptions, warn_unknown_env

ENTRY_POINT_GROUP = "storage_core.backends"
HOOKS = ("register_storage_backends", "register_commands", "register_kinds")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PluginFault:
    """Why one entry point's plugin provides nothing: where it comes from and the fault."""

    distribution: str
    entry_point: str
    target: str  # the entry point's value: the plugin module
    problem: str

    def __str__(self) -> str:
        where = f"entry point {self.entry_point} = {self.target}"
        return f"{self.distribution} ({where}): {self.problem}"


@dataclass(frozen=True)
class BackendInfo:
    name: str
    factory: Callable[..., Any] | str
    distribution: str
    version: str
    requires: tuple[str, ...] = ()
    install_hint: str | None = None
    entry_point: str = "?"
    options: BackendOptions = NO_OPTIONS

    @property
    def origin(self) -> str:
        """Who provides it, for messages: distribution, version and entry point."""
        return f"{self.distribution} {self.version}, entry point {self.entry_point}"

    @property
    def dependencies_installed(self) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in self.requires)

    def _missing(self, missing: Iterable[str]) -> MissingDependencyError:
        hint = self.install_hint or f"install {', '.join(missing)}"
        return MissingDependencyError(
            f"backend {self.name!r} ({self.origin}) needs {', '.join(missing)}, "
            f"which is not installed; {hint}"
        )

    def load_factory(self) -> Callable[..., Any]:
        """The factory, imported and checked: MissingDependencyError (with the install
        hint) only when a module it needs is really absent; PluginLoadError naming the
        actual import error or missing attribute otherwise; InvalidBackendError for a
        class that does not implement the whole interface."""
        missing = [m for m in self.requires if importlib.util.find_spec(m) is None]
        if missing:
            raise self._missing(missing)
        obj: Any = self.factory
        if isinstance(self.factory, str):
            obj = self._import(self.factory)
        if inspect.isclass(obj):
            self._check_class(obj)
        if not callable(obj):
            raise InvalidBackendError(
                f"backend {self.name!r} ({self.origin}): {self.factory!r} is a "
                f"{type(obj).__name__}, not a StorageBackend class or factory"
            )
        factory: Callable[..., Any] = obj
        return factory

    def _import(self, path: str) -> Any:
        module_name, _, attr = path.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
        except ImportError as exc:
            absent = _absent_module(exc)
            if absent is not None:
                raise self._missing([absent]) from exc
            raise PluginLoadError(
                f"backend {self.name!r} ({self.origin}): importing {module_name} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        except Exception as exc:
            raise PluginLoadError(
                f"backend {self.name!r} ({self.origin}): importing {module_name} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        for part in attr.split(".") if attr else ():
            if not hasattr(obj, part):
                where = getattr(obj, "__name__", module_name)
                near = difflib.get_close_matches(part, dir(obj), n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                raise PluginLoadError(
                    f"backend {self.name!r} ({self.origin}): registered as {path!r}, but "
                    f"{where} has no attribute {part!r}{hint}"
                )
            obj = getattr(obj, part)
        return obj

    def _check_class(self, cls: type) -> None:
        if not issubclass(cls, StorageBackend):
            raise InvalidBackendError(
                f"backend {self.name!r} ({self.origin}): {cls.__module__}.{cls.__qualname__} "
                f"does not subclass storage_core.interface.StorageBackend"
            )
        abstract = sorted(getattr(cls, "__abstractmethods__", ()))
        if abstract:
            raise InvalidBackendError(
                f"backend {self.name!r} ({self.origin}): {cls.__module__}.{cls.__qualname__} "
                f"does not implement the abstract methods {', '.join(abstract)}"
            )

    def capabilities(self) -> frozenset[str] | None:
        """The backend class's declared capabilities, or None if it cannot be imported."""
        try:
            return frozenset(getattr(self.load_factory(), "capabilities", frozenset()))
        except Exception:
            return None


def _absent_module(exc: ImportError) -> str | None:
    """The top-level module an ImportError says is missing, if it is really not installed."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    top = exc.name.partition(".")[0]
    try:
        return top if importlib.util.find_spec(top) is None else None
    except (ImportError, ValueError):
        return top


@dataclass
class BackendRegistry:
    """The backends the loaded plugins registered, by name, and the plugins that failed."""

    backends: dict[str, BackendInfo] = field(default_factory=dict)
    failed: dict[str, PluginFault] = field(default_factory=dict)  # by entry-point name
    conflicts: dict[str, list[BackendInfo]] = field(default_factory=dict)  # by backend name
    plugin_manager: pluggy.PluginManager | None = None

    def get(self, name: str) -> BackendInfo:
        try:
            return self.backends[name]
        except KeyError:
            pass
        if name in self.conflicts:
            raise DuplicateBackendError(conflict_message(name, self.conflicts[name]))
        if name in self.failed:
            raise PluginLoadError(
                f"the plugin providing backend {name!r} failed to load: {self.failed[name]}"
            )
        known = ", ".join(sorted(self.backends)) or "none"
        msg = f"no storage backend named {name!r} is registered (registered: {known})."
        if self.failed:
            msg += " Plugins that failed to load: " + "; ".join(
                f"{p}: {fault}" for p, fault in self.failed.items()
            )
        else:  # only then is "install it" likely the answer
            msg += (
                f" Install the package that provides it (e.g. `pip install "
                f"webvh-storage-{name}`) or set STORAGE_BACKEND to one of the registered names."
            )
        raise UnknownBackendError(msg)

    def resolve(self, settings: Settings) -> Settings:
        """`settings` resolved against the selected backend's declared options (see
        `storage_core.options`); warns about unknown `STORAGE_*` variables."""
        info = self.get(settings.backend)
        warn_unknown_env(
            settings.env,
            [b.options for b in self.backends.values()]
            + [b.options for same in self.conflicts.values() for b in same],
        )
        return info.options.resolve(settings)

    def build(self, name: str, settings: Settings) -> StorageBackend:
        info = self.get(name)
        factory = info.load_factory()
        backend = factory(info.options.resolve(settings))
        if not isinstance(backend, StorageBackend):
            raise InvalidBackendError(
                f"backend {name!r} ({info.origin}): factory {info.factory!r} returned "
                f"{type(backend).__name__}, which does not subclass "
                f"storage_core.interface.StorageBackend"
            )
        backend.name = name
        return backend


def conflict_message(name: str, claimants: list[BackendInfo]) -> str:
    who = " and ".join(f"{b.distribution} (entry point {b.entry_point})" for b in claimants)
    return (
        f"backend name {name!r} is registered by both {who}; uninstall one or block it "
        f"with STORAGE_DISABLE_PLUGINS"
    )


def _distribution_of(ep: EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return ("unknown", "?")
    return (dist.metadata["Name"] or dist.name, dist.version)


def _normalize(name: str) -> str:
    """Compare names as pip does (PEP 503): case, `-`, `_` and `.` runs are equivalent."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _hook_problem(module: ModuleType) -> str | None:
    """Why this plugin module implements none of the hooks, or None if it does."""
    marker = f"{hookspecs.hookimpl.project_name}_impl"
    marked = [n for n, obj in vars(module).items() if hasattr(obj, marker)]
    if any(n in HOOKS for n in marked):
        return None
    where = f"module {module.__name__}"
    for name in marked:
        near = difflib.get_close_matches(name, HOOKS, n=1)
        if near:
            return (
                f"no storage_core hook found in {where}: {name!r} is not a hook name; "
                f"did you mean {near[0]!r}?"
            )
    unmarked = [n for n in HOOKS if callable(getattr(module, n, None))]
    if unmarked:
        return (
            f"no storage_core hook found in {where}: {unmarked[0]} is defined but not "
            f"decorated with @hookimpl (from storage_core.hookspecs import hookimpl)"
        )
    return f"no storage_core hook found in {where}: it defines none of {', '.join(HOOKS)}"


def build_registry(
    allow: Iterable[str] | None = None, block: Iterable[str] = ()
) -> BackendRegistry:
    """Load every allowed entry point, then collect what their hooks register.

    `allow`/`block` name distributions (or entry-point names).
    """
    allow_set = None if allow is None else {_normalize(a) for a in allow}
    block_set = {_normalize(b) for b in block}
    pm = pluggy.PluginManager("storage_core")
    pm.add_hookspecs(hookspecs)
    registry = BackendRegistry(plugin_manager=pm)
    origins: dict[str, tuple[str, str, EntryPoint]] = {}

    def fail(ep: EntryPoint, dist: str, problem: str) -> None:
        registry.failed[ep.name] = PluginFault(dist, ep.name, ep.value, problem)
        log.warning("storage plugin %s failed to load: %s", ep.name, registry.failed[ep.name])

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist, version = _distribution_of(ep)
        names = {_normalize(ep.name), _normalize(dist)}
        if allow_set is not None and not names & allow_set:
            continue
        if names & block_set:
            continue
        try:
            module = ep.load()
        except Exception as exc:
            fail(ep, dist, f"importing {ep.value} failed: {type(exc).__name__}: {exc}")
            continue
        problem = _hook_problem(module) if isinstance(module, ModuleType) else None
        if problem is not None:
            fail(ep, dist, problem)
            continue
        try:
            pm.register(module, name=f"{dist}:{ep.name}")
        except Exception as exc:  # pluggy refuses a hook with a wrong signature
            fail(ep, dist, f"{type(exc).__name__}: {exc}")
            continue
        origins[f"{dist}:{ep.name}"] = (dist, version, ep)

    for impl in pm.hook.register_kinds.get_hookimpls():
        dist, version, ep = origins[impl.plugin_name]
        try:
            impl.function(register=declare_kind)
        except Exception as exc:
            fail(ep, dist, f"register_kinds raised {type(exc).__name__}: {exc}")

    for impl in pm.hook.register_storage_backends.get_hookimpls():
        dist, version, ep = origins[impl.plugin_name]

        def register(
            name: str,
            factory: Callable[..., Any] | str,
            *,
            requires: Iterable[str] = (),
            install_hint: str | None = None,
            options: BackendOptions = NO_OPTIONS,
            _dist: str = dist,
            _version: str = version,
            _ep: str = ep.name,
        ) -> None:
            info = BackendInfo(
                name, factory, _dist, _version, tuple(requires), install_hint, _ep, options
            )
            if name in registry.conflicts:
                registry.conflicts[name].append(info)
            elif name in registry.backends:
                registry.conflicts[name] = [registry.backends.pop(name), info]
                log.warning("%s", conflict_message(name, registry.conflicts[name]))
            else:
                registry.backends[name] = info

        try:
            impl.function(register=register)
        except Exception as exc:
            fail(ep, dist, f"register_storage_backends raised {type(exc).__name__}: {exc}")
    return registry


_lock = threading.Lock()
_cache: dict[tuple[tuple[str, ...] | None, tuple[str, ...]], BackendRegistry] = {}


def get_registry(allow: Iterable[str] | None = None, block: Iterable[str] = ()) -> BackendRegistry:
    """The registry for this allow/block setting, loaded on first use and then reused."""
    key = (None if allow is None else tuple(sorted(allow)), tuple(sorted(block)))
    with _lock:
        if key not in _cache:
            _cache[key] = build_registry(allow, block)
        return _cache[key]


def clear_registry_cache() -> None:
    """Forget loaded plugins (after installing one at run time, and in tests)."""
    with _lock:
        _cache.clear()
