"""Registers the memory backend: where it is (a dotted path, imported only when chosen)
and what it is configured with (nothing: no URL, no options, so any option given to
`open_storage("memory", ...)` is refused by name)."""

from collections.abc import Callable

from storage_core.hookspecs import hookimpl
from storage_core.options import BackendOptions

MEMORY_OPTIONS = BackendOptions()


@hookimpl
def register_storage_backends(register: Callable[..., None]) -> None:
    register("memory", "webvh_storage_memory.backend:MemoryBackend", options=MEMORY_OPTIONS)
