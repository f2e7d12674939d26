"""Input checks every backend shares, run before a backend sees a value.

A value either round-trips exactly through every backend or is refused here with a
ValidationError naming the field, so no backend ever writes half of a bad call.
"""

from __future__ import annotations

import marshal
import math
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

import orjson

from storage_core import encoded as _encoded
from storage_core.errors import ValidationError
from storage_core.kinds import FieldType, KindSpec, R

DEFAULT_MAX_PAYLOAD_BYTES = 16 * 1024 * 1024
# PostgreSQL b-tree entries must fit in ~2.7 kB; indexed strings stay well below.
MAX_INDEXED_BYTES = 1024
#: Keys may be longer (e.g. a credential id that embeds a proof): where a database cannot
#: index such text itself, the backend indexes a digest of it (docs/kinds.md).
MAX_KEY_BYTES = 65536
_INT_MAX = 2**63 - 1
#: Deepest nesting of lists and dicts in one JSON field (a bare scalar is depth 0,
#: `[]` depth 1). orjson refuses one level more, and the Askar backend, which wraps
#: each record in one more object, encodes fields one by one (codec.dumps_fields).
MAX_JSON_DEPTH = 254
#: Largest `batch_size` of a stream: every backend reads a page of this many records
#: at once, so memory is bounded by it and a larger one defeats the point (PostgreSQL
#: cursors once failed or looped forever at 2**31 and more).
MAX_BATCH_SIZE = 10_000
#: Most values in the filters of one call (all fields together). Askar binds every
#: value as a parameter (SQLite allows 32,766 per statement, PostgreSQL 65,535) and
#: cannot split a list, since it cannot merge pages in insertion order; the limit
#: is the same on every backend so a call never works on one and fails on another.
MAX_FILTER_VALUES = 10_000
#: Python types a JSON field may hold, exactly (no subclasses: an IntEnum or a str
#: subclass would come back as a plain int or str from some backends).
_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


def check_text(field: str, value: Any, *, optional: bool = False, max_bytes: int) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, got {type(value).__name__}")
    if "\x00" in value:
        raise ValidationError(field, "must not contain NUL (U+0000)")
    if value.isascii():
        size = len(value)
    else:
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValidationError(field, "contains an unpaired surrogate") from None
    if size > max_bytes:
        raise ValidationError(field, f"is {size} bytes, the limit is {max_bytes}")


def check_json(field: str, value: Any, *, max_bytes: int) -> bytes:
    """Return the encoded document, or refuse what JSON cannot hold exactly: anything but
    dict (str keys), list, str, int, float, bool and None, nesting deeper than
    MAX_JSON_DEPTH, NaN/Infinity, ints beyond 64 bits, unpaired surrogates. The encoding
    is kept for the backend within the manager's write call (`storage_core.encoded`)."""
    encoded = _encode_plain(value, max_bytes)
    if encoded is None:
        encoded = _encode_checked(field, value, max_bytes)
    _encoded.remember(value, encoded)
    return encoded


def _encode_plain(value: Any, max_bytes: int) -> bytes | None:
    """The encoding of a document that plainly passes check_json, else None (then
    `_encode_checked` decides, and words any error): exact types by `_marshal_exact`,
    taken by orjson, within `max_bytes`, no NaN/Infinity."""
    dumped = _marshal_exact(value)
    if dumped is None:
        return None
    try:
        encoded = orjson.dumps(value, option=_ORJSON_EXACT)
    except (orjson.JSONEncodeError, TypeError):  # bytes, sets, non-str keys, depth...
        return None
    if len(encoded) > max_bytes:
        return None
    # orjson writes NaN/Infinity as null: look only when the text has a null and
    # marshal's bytes a 0x7f or 0xff (the top byte of every NaN/Infinity; rare in a DID
    # log, where "null" is ~2 us to seek). orjson refuses ints beyond 64 bits.
    suspect = (b"\x7f" in dumped or b"\xff" in dumped) and b"null" in encoded
    return None if suspect and _non_finite(value) is not None else encoded


def _encode_checked(field: str, value: Any, max_bytes: int) -> bytes:
    """check_json's encoding, the exact walk first: what refuses a document, with the
    error naming where in it (or orjson's own reason) and why."""
    if not _plain_json(value):
        _explain_json(field, value)
    try:
        encoded = orjson.dumps(value, option=_ORJSON_EXACT)
    except (orjson.JSONEncodeError, TypeError) as exc:
        raise ValidationError(field, f"is not storable as JSON: {exc}") from None
    if len(encoded) > max_bytes:
        raise ValidationError(field, f"is {len(encoded)} bytes, the limit is {max_bytes}")
    if b"null" in encoded:
        bad = _non_finite(value)
        if bad is not None:
            raise ValidationError(field, f"contains {bad!r}, which JSON cannot represent")
    return encoded


#: orjson then refuses subclasses of str/int/dict/list, dataclasses and datetimes, which
#: it would otherwise encode (the bytes of plain JSON are the same).
_ORJSON_EXACT = (
    orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
)


def _marshal_exact(value: Any) -> bytes | None:
    """None, or `value`'s marshal encoding, and then `value` is plain JSON unless
    `orjson.dumps(value, option=_ORJSON_EXACT)` refuses it: the exact-type check at C
    speed (a 3 kB DID log: ~5 us, the walk ~17).

    marshal refuses every object but exact int, float, str, list, dict, tuple, bool and
    None, bytes-like, complex, sets, code, Ellipsis and StopIteration; orjson refuses all
    of those but tuples, and marshal writes a tuple as type code `(` or `)` (0xa8/0xa9
    with FLAG_REF). Those bytes also occur in text, lengths and ints, so then, or when
    marshal refuses, the caller walks."""
    try:
        dumped = marshal.dumps(value, 4)  # the format whose tuple codes are above
    except Exception:  # ValueError, or too deep for marshal: the walk decides
        return None
    if b"(" in dumped or b")" in dumped or b"\xa8" in dumped or b"\xa9" in dumped:
        return None
    return dumped


def _plain_json(value: Any) -> bool:
    """True when `value` holds only JSON types, at most MAX_JSON_DEPTH deep
    (`_explain_json` finds and words the problem). Runs when `_marshal_exact` cannot
    decide: one pass over each container, its children's types checked as they are met
    (a dict's keys and values in one walk of its items)."""
    kind = type(value)
    if kind is not dict and kind is not list:
        return kind in _JSON_SCALARS
    scalars = _JSON_SCALARS
    stack: list[tuple[Any, int]] = [(value, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        depth += 1
        if depth > MAX_JSON_DEPTH:
            return False
        if type(node) is dict:
            for key, child in node.items():
                if type(key) is not str:
                    return False
                ckind = type(child)
                if ckind is dict or ckind is list:
                    push((child, depth))
                elif ckind not in scalars:
                    return False
        else:
            for child in node:
                ckind = type(child)
                if ckind is dict or ckind is list:
                    push((child, depth))
                elif ckind not in scalars:
                    return False
    return True


def _explain_json(field: str, value: Any) -> None:
    """Raise the ValidationError for `field` that says where in the document (a path
    like `logs[0]['proof']`) `_plain_json` failed, and why."""
    stack: list[tuple[Any, str, int]] = [(value, field, 0)]
    while stack:
        node, path, depth = stack.pop()
        kind = type(node)
        if kind is dict or kind is list:
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise ValidationError(  # the path would be 255 steps long: not shown
                    field, f"nests JSON deeper than the limit of {MAX_JSON_DEPTH} levels"
                )
            if kind is dict:
                for k, child in reversed(node.items()):
                    if type(k) is not str:
                        raise ValidationError(
                            field, f"{path}[{k!r}] has a {type(k).__name__} key; JSON keys are str"
                        )
                    stack.append((child, f"{path}[{k!r}]", depth))
            else:
                stack.extend((c, f"{path}[{i}]", depth) for i, c in reversed(list(enumerate(node))))
        elif kind not in _JSON_SCALARS:
            raise ValidationError(
                field,
                f"{path} is a {kind.__name__}, not JSON: JSON fields hold only dict, list, str, "
                "int, float, bool and None",
            )
    raise AssertionError("_explain_json found nothing wrong")  # pragma: no cover


def _non_finite(value: Any) -> float | None:
    """A NaN or Infinity in the document (which orjson writes as null), else None."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return item
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def check_field(
    field: str, ftype: FieldType, value: Any, max_payload: int, *, optional: bool = False
) -> None:
    """Refuse a value `ftype` cannot hold exactly; None only where `optional` (OPT_STR and
    JSON fields hold None anyway)."""
    if value is None and optional:
        return
    if ftype is FieldType.KEY:
        check_text(field, value, max_bytes=MAX_KEY_BYTES)
        if not value:
            raise ValidationError(field, "must not be empty")
    elif ftype is FieldType.INDEXED_STR:
        check_text(field, value, max_bytes=MAX_INDEXED_BYTES)
    elif ftype is FieldType.STR:
        check_text(field, value, max_bytes=max_payload)
    elif ftype is FieldType.OPT_STR:
        check_text(field, value, optional=True, max_bytes=max_payload)
    elif ftype is FieldType.BOOL:
        if not isinstance(value, bool):
            raise ValidationError(field, f"must be a bool, got {type(value).__name__}")
    elif ftype is FieldType.INT:
        check_int(field, value)
    elif ftype is FieldType.FLOAT:
        if type(value) is not float:
            raise ValidationError(field, f"must be a float, got {type(value).__name__}")
        if not math.isfinite(value):
            raise ValidationError(field, f"must be finite, got {value!r}")
    elif ftype is FieldType.DATETIME:
        if check_timestamp(field, value) is None:
            raise ValidationError(field, "must be a datetime, got NoneType")
    else:  # every other type is stored as JSON (FieldType.is_json)
        _check_json_field(field, ftype, value, max_payload)


def check_int(field: str, value: Any) -> int:
    """An int (not a bool) in the 64-bit signed range every backend stores."""
    if type(value) is not int:
        raise ValidationError(field, f"must be an int, got {type(value).__name__}")
    if not -_INT_MAX - 1 <= value <= _INT_MAX:
        raise ValidationError(field, f"is outside the 64-bit range ({-_INT_MAX - 1}..{_INT_MAX})")
    return value


def _check_json_field(field: str, ftype: FieldType, value: Any, max_payload: int) -> None:
    if ftype is FieldType.LIST and not isinstance(value, list):
        raise ValidationError(field, f"must be a list, got {type(value).__name__}")
    if ftype in (FieldType.DICT, FieldType.STR_DICT) and not isinstance(value, dict):
        raise ValidationError(field, f"must be a dict, got {type(value).__name__}")
    if ftype is FieldType.STR_DICT and isinstance(value, dict):  # refused above otherwise
        for k, v in value.items():
            check_text(f"{field}[{k!r}]", k, max_bytes=MAX_INDEXED_BYTES)
            check_text(f"{field}[{k!r}]", v, max_bytes=max_payload)
    check_json(field, value, max_bytes=max_payload)


def check_timestamp(field: str, value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise ValidationError(field, f"must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None:
        raise ValidationError(field, "must be timezone-aware")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01 at +14:00 is before year 1 in UTC
        raise ValidationError(
            field, f"{value.isoformat()} is outside years 1-9999 in UTC"
        ) from None


def check_version(field: str, value: Any, *, minimum: int = 1) -> int:
    """An int (not a bool) from `minimum` to 2**63-1: versions, limits, offsets."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValidationError(field, f"must be an integer >= {minimum}, got {value!r}")
    if value > _INT_MAX:
        raise ValidationError(field, f"is outside the 64-bit range (at most {_INT_MAX})")
    return value


def validate_key(spec: KindSpec[Any], key: object) -> str:
    check_field(spec.key, FieldType.KEY, key, MAX_KEY_BYTES)
    assert isinstance(key, str)  # check_field refuses anything else (no typing.cast call)
    return key


_FAST_STR, _FAST_KEY, _FAST_BOOL, _FAST_LIST = 1, 2, 3, 4
_FAST_KINDS = {
    FieldType.INDEXED_STR: _FAST_STR,
    FieldType.KEY: _FAST_KEY,
    FieldType.BOOL: _FAST_BOOL,
    FieldType.LIST: _FAST_LIST,
}
_Plan = tuple[tuple[str, FieldType, int, bool], ...]
_PLANS: dict[int, tuple[KindSpec[Any], _Plan]] = {}  # by id(spec); the spec is kept alive


def _plan(spec: KindSpec[Any]) -> _Plan:
    found = _PLANS.get(id(spec))
    if found is not None and found[0] is spec:
        return found[1]
    plan = tuple(
        (n, t, _FAST_KINDS.get(t, 0), n in spec.optional) for n, t in spec.field_types.items()
    )
    _PLANS[id(spec)] = (spec, plan)
    return plan


def payload_limit(spec: KindSpec[Any], max_payload: int) -> int:
    """The largest field of this kind: its own `max_payload_bytes` when it declares one,
    else the settings' limit."""
    return max_payload if spec.max_payload_bytes is None else spec.max_payload_bytes


def validate_record(spec: KindSpec[R], record: R, *, max_payload: int, now: datetime) -> R:
    """Check every field; fill missing timestamps with `now`. Returns the record to store.

    Values that plainly pass (a short ASCII str without NUL for keys and indexed strings,
    non-empty for keys; a bool; a list, whose JSON is then checked) are accepted inline;
    anything else goes through `check_field`, which decides and words the error, so the
    outcome is exactly `check_field`'s."""
    limit = payload_limit(spec, max_payload)
    return _validate_record(spec, record, limit, now, _plan(spec), stamped=False)


def validate_records(
    spec: KindSpec[R], records: Iterable[R], *, max_payload: int, now: datetime
) -> list[R]:
    """`validate_record` of each record, in order: the same records, the same first error.

    Bulk imports validate 100k records: a column of keys, indexed strings or bools that
    plainly passes for every record is checked once for the batch at C speed (a few
    joins and set builds), and a column of lists whose documents all plainly pass is
    encoded in one loop; those are left out of the per-record checks, where they could
    not fail anyway; any other column is checked per record as `validate_record` does.
    Likewise timestamps that are all set, in UTC already."""
    batch = list(records)
    plan = _plan(spec)
    limit = payload_limit(spec, max_payload)
    stamped = False
    if batch and all(type(record) is spec.record for record in batch):
        plan = tuple(step for step in plan if not _plain_column(step, batch, limit))
        stamped = spec.timestamps and _stamped_in_utc(batch)
    return [_validate_record(spec, r, limit, now, plan, stamped=stamped) for r in batch]


def _plain_column(step: tuple[str, FieldType, int, bool], batch: list[Any], limit: int) -> bool:
    """True when every record's value of this field plainly passes (see validate_record);
    a list field's documents are then encoded and kept for the backend."""
    name, _, fast, _ = step
    if not fast:
        return False
    values = list(map(attrgetter(name), batch))
    types = set(map(type, values))
    if fast == _FAST_BOOL:
        return types <= {bool}  # True and False are its only values
    if fast == _FAST_LIST:
        if types != {list}:
            return False
        for doc in values:
            encoded = _encode_plain(doc, limit)
            if encoded is None:
                return False  # each record's check_json decides, in the records' order
            _encoded.remember(doc, encoded)
        return True
    if types != {str}:
        return False
    joined = "".join(values)
    return (
        joined.isascii()
        and "\x00" not in joined
        and max(map(len, values)) <= MAX_INDEXED_BYTES
        and (fast == _FAST_STR or min(map(len, values)) >= 1)
    )


def _stamped_in_utc(batch: list[Any]) -> bool:
    """Every record's created_at and updated_at is a datetime whose tzinfo is UTC (the
    very object: `check_timestamp` returns those as they are)."""
    stamps = [*map(attrgetter("created_at"), batch), *map(attrgetter("updated_at"), batch)]
    return set(map(type, stamps)) == {datetime} and set(
        map(id, map(attrgetter("tzinfo"), stamps))
    ) == {id(UTC)}


def _validate_record(
    spec: KindSpec[R], record: R, max_payload: int, now: datetime, plan: _Plan, *, stamped: bool
) -> R:
    """validate_record, checking only the fields in `plan` (all of them but columns a
    batch has already found plain) and, unless `stamped` (a batch found them set and in
    UTC), the timestamps."""
    if type(record) is not spec.record:
        raise ValidationError(
            "record", f"expected {spec.record.__name__}, got {type(record).__name__}"
        )
    in_utc: dict[str, datetime] = {}
    for name, ftype, fast, optional in plan:
        value = getattr(record, name)
        if ftype is FieldType.DATETIME and value is not None:
            utc = check_timestamp(name, value)
            if utc is not None and value.tzinfo is not UTC:
                in_utc[name] = utc  # every backend stores and returns UTC
            continue
        if fast in (_FAST_STR, _FAST_KEY):
            if (
                type(value) is str
                and (0 if fast == _FAST_STR else 1) <= len(value) <= MAX_INDEXED_BYTES
                and value.isascii()
                and "\x00" not in value
            ):
                continue
        elif fast == _FAST_BOOL:
            if value is True or value is False:
                continue
        elif fast == _FAST_LIST and type(value) is list:
            check_json(name, value, max_bytes=max_payload)
            continue
        check_field(name, ftype, value, max_payload, optional=optional)
    version = record.record_version
    if type(version) is not int or not 1 <= version <= _INT_MAX:
        check_version("record_version", version)
    if in_utc:
        record = replace(record, **in_utc)
    if not spec.timestamps or stamped:
        return record
    with_stamps: Any = record  # a kind with timestamps: its record has created_at/updated_at
    created = check_timestamp("created_at", with_stamps.created_at) or now
    updated = check_timestamp("updated_at", with_stamps.updated_at) or created
    if created is with_stamps.created_at and updated is with_stamps.updated_at:
        return record
    result: R = replace(with_stamps, created_at=created, updated_at=updated)
    return result


def validate_changes(
    spec: KindSpec[Any], changes: Mapping[str, Any], *, max_payload: int
) -> dict[str, Any]:
    """Check a partial update: only data fields, never the key, timestamps or version."""
    if not changes:
        raise ValidationError("fields", "an update needs at least one field")
    max_payload = payload_limit(spec, max_payload)
    for name, value in changes.items():
        ftype = spec.field_types.get(name)
        if ftype is None or name == spec.key:
            allowed = ", ".join(f for f in spec.field_types if f != spec.key)
            raise ValidationError(name, f"is not an updatable field of {spec.name}; use {allowed}")
        check_field(name, ftype, value, max_payload, optional=name in spec.optional)
    return {
        name: check_timestamp(name, value)
        if spec.field_types[name] is FieldType.DATETIME
        else value
        for name, value in changes.items()
    }


Filters = dict[str, tuple[Any, ...]]


def normalize_filters(spec: KindSpec[Any], filters: Mapping[str, Any] | None) -> Filters:
    """Equality filters as `{field: (allowed values...)}`; a list means "any of"."""
    if filters is None:
        return {}
    if type(filters) is not dict and not isinstance(filters, Mapping):
        raise ValidationError("filters", f"must be a dict, got {type(filters).__name__}")
    out: Filters = {}
    total = 0
    text = spec.text_filters
    for name, value in filters.items():
        # The common filter, one plain ASCII string on a string field, plainly passes
        # check_text (an ASCII string's length is its size in bytes): no other checks.
        if (
            type(value) is str
            and name in text
            and total < MAX_FILTER_VALUES
            and value.isascii()
            and "\x00" not in value
            and len(value)
            <= (MAX_KEY_BYTES if spec.field_types[name] is FieldType.KEY else MAX_INDEXED_BYTES)
        ):
            total += 1
            out[name] = (value,)
            continue
        if name not in spec.filterable:
            raise ValidationError(
                f"filters.{name}",
                f"unknown filter for {spec.name}; allowed: {', '.join(spec.filterable)}",
            )
        values = tuple(value) if isinstance(value, list | tuple | set | frozenset) else (value,)
        total += len(values)
        if total > MAX_FILTER_VALUES:
            raise ValidationError(
                f"filters.{name}",
                f"one call may filter on at most {MAX_FILTER_VALUES} values in all",
            )
        ftype = spec.field_types[name]
        if ftype is FieldType.DATETIME:  # compared as UTC instants on every backend
            values = tuple(_filter_datetime(name, v) for v in values)
        for v in values:
            if ftype is FieldType.BOOL:
                if not isinstance(v, bool):
                    raise ValidationError(f"filters.{name}", f"must be a bool, got {v!r}")
            elif ftype is FieldType.INT:
                check_int(f"filters.{name}", v)
            elif ftype is not FieldType.DATETIME:
                limit = MAX_KEY_BYTES if ftype is FieldType.KEY else MAX_INDEXED_BYTES
                check_text(f"filters.{name}", v, max_bytes=limit)
        out[name] = tuple(dict.fromkeys(values))
    return out


def _filter_datetime(name: str, value: Any) -> datetime:
    checked = check_timestamp(f"filters.{name}", value)
    if checked is None:
        raise ValidationError(f"filters.{name}", "must be a datetime, got None")
    return checked


def validate_paging(limit: Any, offset: Any) -> tuple[int | None, int]:
    """limit None or 0..2**63-1, offset 0..2**63-1: what every database's 64-bit LIMIT
    and OFFSET hold (Askar would wrap larger values modulo 2**64)."""
    if limit is not None:
        check_version("limit", limit, minimum=0)
    check_version("offset", offset, minimum=0)
    return limit, offset


def validate_batch_size(batch_size: Any) -> int:
    """1..MAX_BATCH_SIZE."""
    too_big = isinstance(batch_size, int) and batch_size > MAX_BATCH_SIZE
    if too_big and not isinstance(batch_size, bool):
        raise ValidationError("batch_size", f"must be at most {MAX_BATCH_SIZE}, got {batch_size!r}")
    return check_version("batch_size", batch_size, minimum=1)
