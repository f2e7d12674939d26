"""Registers the built-in Askar backend; aries-askar is imported only when it is chosen."""

from collections.abc import Callable

from storage_core.hookspecs import hookimpl
from webvh_storage_askar.config import ASKAR_OPTIONS


@hookimpl
def register_storage_backends(register: Callable[..., None]) -> None:
    register(
        "askar",
        "webvh_storage_askar.backend:AskarBackend",
        requires=("aries_askar",),
        install_hint="install the extra: pip install 'webvh-storage[askar]'",
        options=ASKAR_OPTIONS,
    )
