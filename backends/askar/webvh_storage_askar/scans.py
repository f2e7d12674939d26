"""Freeing an Askar scan now: shared by the backend and the migration's reader child."""

from __future__ import annotations

from ctypes import c_size_t
from typing import Any


def free_scan(scan: Any) -> None:
    """Free a scan's native handle now, so its pool connection goes back at once.

    aries_askar 0.5 has no Scan.close(): its handle is freed by a finalizer at garbage
    collection, which skips a zeroed handle, so zeroing before freeing cannot double free.
    """
    handle = getattr(scan, "handle", None)
    if handle:
        value, handle.value = handle.value, 0
        type(handle)._cleanup(c_size_t(value))
    if hasattr(scan, "_buffer"):
        scan._buffer = None  # the last page of entries, if any
