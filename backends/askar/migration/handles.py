"""Opening an Askar store and freeing scans: shared by the in-process store (source.py)
and the reader child (scan_child.py), which imports nothing heavier than this."""

from __future__ import annotations

from typing import Any


async def open_askar_store(
    uri: str, key: str | None, method: str, profile: str | None, *, create: bool = False
) -> Any:
    from aries_askar import Store

    pass_key = key if method != "none" else None
    if create:
        try:
            return await Store.open(uri, method, pass_key, profile=profile)
        except Exception:
            return await Store.provision(uri, method, pass_key, profile=profile)
    return await Store.open(uri, method, pass_key, profile=profile)


def free_scan(scan: Any) -> None:
    """Free a scan's native handle now instead of at garbage collection, so its pool
    connection is returned at once.

    aries_askar 0.5 has no Scan.close(); its handle is freed by a finalizer that skips a
    zeroed handle, so freeing and zeroing here cannot double free.
    """
    handle = getattr(scan, "handle", None)
    if handle:
        type(handle)._cleanup(handle.value)
        handle.value = 0
    if hasattr(scan, "_buffer"):
        scan._buffer = None
