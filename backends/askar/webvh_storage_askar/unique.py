"""A kind's `unique=` field tuples on Askar, which has no unique index: before a write,
a tag query in the write's own transaction looks for another record with the same
values (the unique fields are always tags: declare.py indexes them).

On a SQLite store a write transaction holds the file's write lock, so the check and the
write are atomic; on PostgreSQL two concurrent transactions may both pass the check
(Askar's transactions are READ COMMITTED), which docs/kinds.md states.
"""

from __future__ import annotations

from typing import Any

from storage_core.errors import DuplicateRecordError
from storage_core.kinds import KindSpec


async def refuse_clash(txn: Any, spec: KindSpec[Any], name: str, tags: dict[str, str]) -> None:
    """Raise DuplicateRecordError naming the fields when an entry other than `name` (the
    written record's entry name, layout.entry_name) has the values `tags` gives one of
    the kind's unique tuples (a None value, i.e. an absent tag, never clashes: SQL treats
    NULLs as distinct too)."""
    for fields in spec.unique:
        if not all(f in tags for f in fields):
            continue
        wql = {f: tags[f] for f in fields}
        for entry in await txn.fetch_all(spec.category, wql, 2):
            if entry.name != name:
                raise DuplicateRecordError(spec.name, name, fields)
