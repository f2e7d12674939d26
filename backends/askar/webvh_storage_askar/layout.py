"""How a record sits in Askar: category, entry name, JSON value and string tags.

- category: `spec.category` ("webvh:<kind>"), one per kind;
- name: the record's key (`entry_name`: a key over 1,024 UTF-8 bytes, which Askar on
  PostgreSQL cannot index, is named by its SHA-256 digest instead; the key itself is
  in the value);
- value: every field as JSON (`codec.record_to_dict`), so each field round-trips exactly
  and nothing is ever read back from tags;
- tags: every `spec.filterable` field as a string (booleans "true"/"false", datetimes
  ISO-8601 in UTC, a None value untagged; strings spelled as `entry_name` spells them).
  The key is tagged too, so a filter on the key is one WQL query that keeps Askar's
  row-id order (direct fetches by name could not tell the insertion order of several
  keys).

Archived entries (`Capability.ARCHIVE`) sit apart from every record, in their own
category `ARCHIVE_CATEGORY`:

- name: `[category, name]` as JSON, unique per archived (category, name) and able to
  carry any string (a NUL would cut a name short at Askar's C boundary);
- value: `[category, name, value, tags]` as JSON, so the value text and the tags come
  back exactly, and the original tags can never clash with ours;
- tags: `category` (encrypted like every tag here), to count or scan one category.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import orjson

from storage_core import codec
from storage_core.interface import ArchivedEntry
from storage_core.kinds import KindSpec
from storage_core.validation import Filters

Wql = dict[str, Any]
#: Not "webvh:<kind>" of any kind, so archived entries never meet records.
ARCHIVE_CATEGORY = "webvh:archive"


#: Longest key (in UTF-8 bytes) that is its own entry name and tag value: every Askar
#: database indexes it (PostgreSQL's B-tree stops near 2.7 kB, encryption included).
NAME_BYTES = 1024
#: How a digest name starts: a control character no real key begins with. Keys that do
#: are named by their digest too, so a digest name never equals another key.
DIGEST_PREFIX = "\x1fsha256:"


def entry_name(key: str) -> str:
    """The Askar entry name (and tag value) of a key: the key itself, or for a long key
    its digest (validation allows keys up to 64 KiB)."""
    if len(key) <= NAME_BYTES // 4 and not key.startswith(DIGEST_PREFIX):
        return key  # at most 4 bytes a character: short enough, the common case
    encoded = key.encode("utf-8")
    if len(encoded) <= NAME_BYTES and not key.startswith(DIGEST_PREFIX):
        return key
    return DIGEST_PREFIX + hashlib.sha256(encoded).hexdigest()


def tag_value(value: Any) -> str:
    """Tags are strings in Askar; booleans are spelled like JSON, datetimes as the record's
    value holds them (`codec.format_timestamp`)."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, datetime):
        return str(codec.format_timestamp(value))
    if isinstance(value, str):
        return entry_name(value)
    return str(value)


def tags_of(spec: KindSpec[Any], data: dict[str, Any]) -> dict[str, str]:
    """The tags of a record in its dict form (datetimes already ISO text)."""
    return {name: tag_value(data[name]) for name in spec.filterable if data[name] is not None}


def encode(spec: KindSpec[Any], record: Any) -> tuple[bytes, dict[str, str]]:
    """The (value, tags) pair that stores `record`."""
    data = codec.record_to_dict(spec, record)
    return codec.dumps_fields(data), tags_of(spec, data)


def encode_dict(spec: KindSpec[Any], data: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """Like `encode`, for a record already in its dict form (read-modify-write)."""
    return codec.dumps_fields(data), tags_of(spec, data)


def decode(spec: KindSpec[Any], raw: bytes | memoryview) -> Any:
    return codec.record_from_dict(spec, codec.loads(raw))


def decode_dict(raw: bytes | memoryview) -> dict[str, Any]:
    data: dict[str, Any] = codec.loads(raw)
    return data


def tag_filter(filters: Filters) -> Wql | None:
    """Equality filters as WQL: one value is `{f: v}`, several `{f: {"$in": [...]}}`,
    several fields an implicit AND. None matches the whole category."""
    if not filters:
        return None
    wql: Wql = {}
    for name, values in filters.items():
        strings = [tag_value(v) for v in values]
        wql[name] = strings[0] if len(strings) == 1 else {"$in": strings}
    return wql


def archive_name(category: str, name: str) -> str:
    """The Askar entry name of an archived (category, name)."""
    return orjson.dumps([category, name]).decode()


def archive_key(entry_name: str) -> tuple[str, str]:
    """The (category, name) an archive entry name stands for: its sort key."""
    category, name = orjson.loads(entry_name)
    return category, name


def archive_tags(category: str) -> dict[str, str]:
    """The tags of an archived entry, and the filter for its whole category."""
    return {"category": category}


def encode_archived(entry: ArchivedEntry) -> tuple[str, bytes, dict[str, str]]:
    """The (entry name, value, tags) that store an archived entry."""
    value = orjson.dumps([entry.category, entry.name, entry.value, dict(entry.tags)])
    return archive_name(entry.category, entry.name), value, archive_tags(entry.category)


def decode_archived(raw: bytes | memoryview) -> ArchivedEntry:
    category, name, value, tags = orjson.loads(raw)
    return ArchivedEntry(category, name, value, tags)
