"""The archive's statements (Capability.ARCHIVE: the migration's verbatim entries), for
both faces: the sync backend runs them on a Connection, the async one on an
AsyncConnection, so the two read and write the archive table alike.

Reads go to the primary (the migration checks what it just wrote). A stream is keyset
pages ordered by (category, name): each page is one read, nothing is held between them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, func, select, tuple_

from storage_core.interface import ArchivedEntry
from webvh_storage_sqlalchemy.dialects import Dialect
from webvh_storage_sqlalchemy.dialects.base import Insert
from webvh_storage_sqlalchemy.models import archive_table
from webvh_storage_sqlalchemy.rows import BULK_CHUNK_ROWS, chunks

_t = archive_table
_COLUMNS = (_t.c.category, _t.c.name, _t.c.value, _t.c.tags)
#: The entries of one category among the bound `names`.
GET = select(*_COLUMNS).where(
    _t.c.category == bindparam("category"), _t.c.name.in_(bindparam("names", expanding=True))
)


def upsert_statement(dialect: Dialect) -> Insert:
    """Insert, or replace the value, tags and time of an entry with the same key."""
    insert = dialect.insert(archive_table)
    return insert.on_conflict_do_update(
        index_elements=[_t.c.category, _t.c.name],
        set_={n: insert.excluded[n] for n in ("value", "tags", "archived_at")},
    )


def upsert_batches(
    entries: Sequence[ArchivedEntry], now: datetime
) -> Iterator[list[dict[str, Any]]]:
    """The parameters of the upsert, BULK_CHUNK_ROWS entries per statement."""
    for chunk in chunks(entries, BULK_CHUNK_ROWS):
        yield [
            {
                "category": e.category,
                "name": e.name,
                "value": e.value,
                "tags": dict(e.tags),
                "archived_at": now,
            }
            for e in chunk
        ]


def get_batches(category: str, names: Sequence[str]) -> Iterator[dict[str, Any]]:
    """The parameters of GET, BULK_CHUNK_ROWS names per statement."""
    for chunk in chunks(names, BULK_CHUNK_ROWS):
        yield {"category": category, "names": list(chunk)}


def page(category: str | None, batch_size: int, after: tuple[str, str] | None) -> Select[Any]:
    """The next page of a stream: up to batch_size entries after the key `after`."""
    stmt = select(*_COLUMNS)
    if category is not None:
        stmt = stmt.where(_t.c.category == category)
    if after is not None:
        stmt = stmt.where(tuple_(_t.c.category, _t.c.name) > tuple_(*after))
    return stmt.order_by(_t.c.category, _t.c.name).limit(batch_size)


def last_key(rows: Sequence[Any]) -> tuple[str, str]:
    return (rows[-1][0], rows[-1][1])


def count_statement(category: str | None) -> Select[Any]:
    stmt = select(func.count()).select_from(archive_table)
    return stmt if category is None else stmt.where(_t.c.category == category)


def entry_of(row: Sequence[Any]) -> ArchivedEntry:
    category, name, value, tags = row
    return ArchivedEntry(category, name, value, tags or {})
