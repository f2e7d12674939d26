"""How a record sits in Askar: category, entry name, JSON value and string tags.

- category: `spec.category` ("webvh:<kind>"), one per kind;
- name: the record's key;
- value: every field as JSON (`codec.record_to_dict`), so each field round-trips exactly
  and nothing is ever read back from tags;
- tags: every `spec.filterable` field as a string (booleans "true"/"false"). The key is
  tagged too, so a filter on the key is one WQL query that keeps Askar's row-id order
  (direct fetches by name could not tell the insertion order of several keys).
"""

from __future__ import annotations

from typing import Any

from storage_core import codec
from storage_core.kinds import KindSpec
from storage_core.validation import Filters

Wql = dict[str, Any]


def tag_value(value: Any) -> str:
    """Tags are strings in Askar; booleans are spelled like JSON."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def tags_of(spec: KindSpec, data: dict[str, Any]) -> dict[str, str]:
    return {name: tag_value(data[name]) for name in spec.filterable}


def encode(spec: KindSpec, record: Any) -> tuple[bytes, dict[str, str]]:
    """The (value, tags) pair that stores `record`."""
    data = codec.record_to_dict(spec, record)
    return codec.dumps(data), tags_of(spec, data)


def encode_dict(spec: KindSpec, data: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """Like `encode`, for a record already in its dict form (read-modify-write)."""
    return codec.dumps(data), tags_of(spec, data)


def decode(spec: KindSpec, raw: bytes | memoryview) -> Any:
    return codec.record_from_dict(spec, codec.loads(raw))


def decode_dict(raw: bytes | memoryview) -> dict[str, Any]:
    return codec.loads(raw)


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
