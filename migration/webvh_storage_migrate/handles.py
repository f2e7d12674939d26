"""Opening an existing Askar store, never creating one (lifecycle.py does that for the
backend): shared by the in-process store (source.py) and the reader child
(scan_child.py), which imports nothing heavier than this."""

from __future__ import annotations

from typing import Any


async def open_askar_store(uri: str, key: str | None, method: str, profile: str | None) -> Any:
    from aries_askar import Store

    pass_key = key if method != "none" else None
    return await Store.open(uri, method, pass_key, profile=profile)
