from storage_core.hookspecs import hookimpl


@hookimpl
def register_storage_backends(register):
    register("memory", "webvh_storage_memory.backend:MemoryBackend")
