"""JSON and record (de)serialisation shared by every backend, the migration and verify.

orjson keeps key order and is fast; records travel as plain dicts with ISO-8601 UTC
timestamps so any store that holds JSON holds a record exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from storage_core import encoded
from storage_core.kinds import KindSpec, R


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def dumps_fields(fields: dict[str, Any]) -> bytes:
    """A record's fields as one JSON object, byte for byte `orjson.dumps(fields)`, but
    encoded field by field: a field nested MAX_JSON_DEPTH deep (orjson's own limit) still
    fits in the object around it, one level deeper than orjson would go. A value the
    manager's validation encoded in this call is not encoded again (`encoded.dumps`)."""
    body = b",".join(orjson.dumps(k) + b":" + encoded.dumps(v) for k, v in fields.items())
    return b"{" + body + b"}"


def dumps_str(value: Any) -> str:
    return orjson.dumps(value).decode()


#: JSON text -> Python, bound straight to orjson (a wrapper would cost a call per read).
loads: Callable[[bytes | bytearray | memoryview | str], Any] = orjson.loads


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_timestamp(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def parse_timestamp(value: str | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


#: `spec.all_fields` by record type, computed once: every record read and written by
#: Askar passes here, and `all_fields` walks `dataclasses.fields` on each call.
_ALL_FIELDS: dict[type[Any], tuple[str, ...]] = {}


def _all_fields(spec: KindSpec[Any]) -> tuple[str, ...]:
    names = _ALL_FIELDS.get(spec.record)
    if names is None:
        names = _ALL_FIELDS[spec.record] = spec.all_fields
    return names


def record_to_dict(spec: KindSpec[R], record: R) -> dict[str, Any]:
    """Every field of the record, timestamps as ISO strings (the Askar value layout)."""
    out = {name: getattr(record, name) for name in _all_fields(spec)}
    for name in spec.datetime_fields:
        out[name] = format_timestamp(out[name])
    return out


def record_from_dict(spec: KindSpec[R], data: dict[str, Any]) -> R:
    values = {name: data[name] for name in _all_fields(spec) if name in data}
    for name in spec.datetime_fields:
        if name in values:
            values[name] = parse_timestamp(values[name])
    return spec.record(**values)


def record_digest(spec: KindSpec[R], record: R, *, include_version: bool = False) -> str:
    """A digest of a record's content, for checking that two stores hold the same record
    (the migration's unchanged check and its verify pass).

    Fields are hashed in the kind's declared order. Inside JSON documents key order is
    content (a DID log must read back byte-identical), so documents are hashed exactly as
    held: no key sorting at any level.
    """
    data = record_to_dict(spec, record)
    if not include_version:
        data.pop("record_version", None)
    return hashlib.sha256(dumps_fields(data)).hexdigest()
