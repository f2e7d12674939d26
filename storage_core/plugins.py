"""Find storage backends through the `storage_core.backends` entry points, via pluggy.

Built-in backends are entry points of this distribution and load exactly like
third-party ones. Loading is lazy (first use) and happens once per allow/block setting.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from storage_core import hookspecs
from storage_core.config import Settings
from storage_core.errors import (
    DuplicateBackendError,
    InvalidBackendError,
    MissingDependencyError,
    PluginLoadError,
    UnknownBackendError,
)
from storage_core.interface import StorageBackend

ENTRY_POINT_GROUP = "storage_core.backends"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackendInfo:
    name: str
    factory: Callable[..., Any] | str
    distribution: str
    version: str
    requires: tuple[str, ...] = ()
    install_hint: str | None = None

    @property
    def dependencies_installed(self) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in self.requires)

    def load_factory(self) -> Callable[..., Any]:
        missing = [m for m in self.requires if importlib.util.find_spec(m) is None]
        if missing:
            hint = self.install_hint or f"install {', '.join(missing)}"
            raise MissingDependencyError(
                f"backend {self.name!r} needs {', '.join(missing)}, which is not installed; {hint}"
            )
        if callable(self.factory):
            return self.factory
        module_name, _, attr = self.factory.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split(".") if attr else ():
                obj = getattr(obj, part)
        except ImportError as exc:
            raise MissingDependencyError(
                f"backend {self.name!r} failed to import {module_name}: {exc}"
                + (f"; {self.install_hint}" if self.install_hint else "")
            ) from exc
        factory: Callable[..., Any] = obj
        return factory

    def capabilities(self) -> frozenset[str] | None:
        """The backend class's declared capabilities, or None if it cannot be imported."""
        try:
            return frozenset(getattr(self.load_factory(), "capabilities", frozenset()))
        except Exception:
            return None


@dataclass
class BackendRegistry:
    """The backends the loaded plugins registered, by name, and the plugins that failed."""

    backends: dict[str, BackendInfo] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # entry-point name -> error
    plugin_manager: pluggy.PluginManager | None = None

    def get(self, name: str) -> BackendInfo:
        try:
            return self.backends[name]
        except KeyError:
            pass
        if name in self.failed:
            raise PluginLoadError(
                f"the plugin providing backend {name!r} failed to load: {self.failed[name]}"
            )
        known = ", ".join(sorted(self.backends)) or "none"
        msg = (
            f"no storage backend named {name!r} is registered (registered: {known}). "
            f"Install the package that provides it (e.g. `pip install webvh-storage-{name}`) "
            f"or set STORAGE_BACKEND to one of the registered names."
        )
        if self.failed:
            msg += " Plugins that failed to load: " + "; ".join(
                f"{p}: {e}" for p, e in self.failed.items()
            )
        raise UnknownBackendError(msg)

    def build(self, name: str, settings: Settings) -> StorageBackend:
        info = self.get(name)
        factory = info.load_factory()
        backend = factory(settings)
        if not isinstance(backend, StorageBackend):
            raise InvalidBackendError(
                f"backend {name!r} from {info.distribution}: factory {info.factory!r} returned "
                f"{type(backend).__name__}, which does not subclass "
                f"storage_core.interface.StorageBackend"
            )
        backend.name = name
        return backend


def _distribution_of(ep: EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return ("unknown", "?")
    return (dist.metadata["Name"] or dist.name, dist.version)


def _normalize(name: str) -> str:
    """Compare names as pip does (PEP 503): case, `-`, `_` and `.` runs are equivalent."""
    return re.sub(r"[-_.]+", "-", name).lower()


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
    origins: dict[str, tuple[str, str]] = {}

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
            registry.failed[ep.name] = f"{dist} ({ep.value}): {type(exc).__name__}: {exc}"
            log.warning("storage plugin %s failed to load: %s", ep.name, registry.failed[ep.name])
            continue
        pm.register(module, name=f"{dist}:{ep.name}")
        origins[f"{dist}:{ep.name}"] = (dist, version)

    for impl in pm.hook.register_storage_backends.get_hookimpls():
        dist, version = origins.get(impl.plugin_name, (impl.plugin_name, "?"))

        def register(
            name: str,
            factory: Callable[..., Any] | str,
            *,
            requires: Iterable[str] = (),
            install_hint: str | None = None,
            _dist: str = dist,
            _version: str = version,
        ) -> None:
            existing = registry.backends.get(name)
            if existing is not None:
                raise DuplicateBackendError(
                    f"backend name {name!r} is registered by both {existing.distribution} and "
                    f"{_dist}; uninstall one or block it with STORAGE_DISABLE_PLUGINS"
                )
            registry.backends[name] = BackendInfo(
                name, factory, _dist, _version, tuple(requires), install_hint
            )

        try:
            impl.function(register=register)
        except DuplicateBackendError:
            raise
        except Exception as exc:
            ep_name = impl.plugin_name.rpartition(":")[2]
            registry.failed[ep_name] = f"{dist}: {type(exc).__name__}: {exc}"
            log.warning("storage plugin %s failed to register: %s", ep_name, exc)
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
