from collections.abc import Callable

from storage_core.hookspecs import hookimpl


@hookimpl
def register_storage_backends(register: Callable[..., None]) -> None:
    register("memory", "webvh_storage_memory.backend:MemoryBackend")
