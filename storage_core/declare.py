"""Declaring a kind of record: `@record_kind(...)` over a frozen dataclass.

The field types come from the dataclass's annotations, so the record type a caller
builds and the kind every backend stores are one description::

    @storage_core.record_kind("credential", key="credential_id", indexed=["issuer_did"])
    @dataclass(frozen=True, slots=True, kw_only=True)
    class Credential:
        credential_id: str
        issuer_did: str
        revoked: bool = False
        credential: dict[str, Any] = field(default_factory=dict)
        created_at: datetime | None = None
        updated_at: datetime | None = None
        record_version: int = 1

Annotations and what they store: `str` (at most 1,024 UTF-8 bytes, may be indexed),
`Text` (unlimited text), `int` (64-bit), `float` (finite), `bool`, `datetime` (aware,
stored in UTC), `dict[str, str]`, `dict[...]`, `list[...]` and `JSON` / `Any` (any JSON
value); `X | None` makes a field optional. `record_version: int = 1` is required;
`created_at` / `updated_at` (`datetime | None = None`, both or neither) are kept by the
backends like the built-in kinds' timestamps. The nine did:webvh kinds are declared
with this same API (storage_core/kinds.py).
"""

from __future__ import annotations

import dataclasses
import re
import types
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Annotated, Any, TypeAlias, TypeVar, Union, get_args, get_origin, get_type_hints

from storage_core.errors import ValidationError
from storage_core.kindspec import INDEXABLE, KIND_REGISTRY, FieldType, KindSpec, R


class _TextMarker:
    """The `Annotated` marker of `Text`."""

    def __repr__(self) -> str:
        return "storage_core.Text"


TEXT_MARKER = _TextMarker()
#: A string without the 1,024-byte limit of `str` fields (never indexed): `field: Text`.
Text: TypeAlias = Annotated[str, TEXT_MARKER]
#: Any JSON value (dict, list, str, int, float, bool or None).
JSON: TypeAlias = Any

#: The fields every record type has, which the backends maintain.
TIMESTAMP_FIELDS = ("created_at", "updated_at")
VERSION_FIELD = "record_version"
#: Kind and table names: SQL identifiers that need no quoting, short enough for
#: PostgreSQL's 63-byte names once suffixes such as `_seq_seq` are added.
_NAME = re.compile(r"[a-z][a-z0-9_]{0,47}")

C = TypeVar("C", bound=type)


def record_kind(
    name: str,
    *,
    key: str,
    indexed: Iterable[str] = (),
    unique: Iterable[Sequence[str]] = (),
    max_payload_bytes: int | None = None,
    table: str | None = None,
    category: str | None = None,
) -> Callable[[C], C]:
    """Declare the decorated frozen dataclass as the record of kind `name`.

    `key`: the field that identifies a record (a `str`). `indexed`: fields to filter on
    (SQL indexes, Askar tags). `unique`: tuples of fields no two records may share (each
    also indexed). `max_payload_bytes`: the largest field of this kind, in bytes, instead
    of the settings' `max_payload_bytes`. `table`: the SQL table (default: `name`).
    `category`: the Askar category (default: `<top-level package of the class>:<name>`).

    Returns the class unchanged. Declaring a name again with the same shape is a no-op;
    with another shape it is a ValidationError naming the difference.
    """

    def decorate(cls: C) -> C:
        declare_kind(
            cls,
            name,
            key=key,
            indexed=indexed,
            unique=unique,
            max_payload_bytes=max_payload_bytes,
            table=table,
            category=category,
        )
        return cls

    return decorate


def declare_kind(
    record: type[R],
    name: str,
    *,
    key: str,
    indexed: Iterable[str] = (),
    unique: Iterable[Sequence[str]] = (),
    max_payload_bytes: int | None = None,
    table: str | None = None,
    category: str | None = None,
) -> KindSpec[R]:
    """`record_kind` as a call (what a plugin's `register_kinds(register)` is given):
    registers the kind and returns its spec."""
    spec = build_spec(
        record,
        name,
        key=key,
        indexed=indexed,
        unique=unique,
        max_payload_bytes=max_payload_bytes,
        table=table,
        category=category,
    )
    registered: KindSpec[R] = KIND_REGISTRY.add(spec, refuse_other_shape)
    return registered


def kind_spec(record: type[R]) -> KindSpec[R]:
    """The spec of a declared record type (typed: `kind_spec(Credential)` is a
    `KindSpec[Credential]`)."""
    spec = KIND_REGISTRY.by_record.get(record)
    if spec is None:
        raise ValidationError("record", f"{record.__name__} is not a declared record kind")
    found: KindSpec[R] = spec
    return found


def build_spec(
    record: type[R],
    name: str,
    *,
    key: str,
    indexed: Iterable[str] = (),
    unique: Iterable[Sequence[str]] = (),
    max_payload_bytes: int | None = None,
    table: str | None = None,
    category: str | None = None,
) -> KindSpec[R]:
    """The spec `record_kind` registers, every argument checked."""
    _check_name("name", name)
    table = name if table is None else table
    _check_name("table", table)
    if category is None:
        category = f"{record.__module__.partition('.')[0]}:{name}"
    if not isinstance(category, str) or not category:
        raise ValidationError("category", "must be a non-empty string")
    if max_payload_bytes is not None and (
        not isinstance(max_payload_bytes, int)
        or isinstance(max_payload_bytes, bool)
        or max_payload_bytes < 1
    ):
        raise ValidationError(
            "max_payload_bytes", f"must be an integer >= 1, got {max_payload_bytes!r}"
        )
    field_types, optional, timestamps = _fields_of(record, name, key)
    if isinstance(indexed, str):
        indexed = (indexed,)
    unique_sets = tuple(_unique_fields(u) for u in unique)
    filterable: dict[str, None] = {key: None}
    for field in (*indexed, *(f for u in unique_sets for f in u)):
        ftype = field_types.get(field)
        if ftype is None:
            raise ValidationError("indexed", f"{field!r} is not a field of {record.__name__}")
        if ftype not in INDEXABLE:
            raise ValidationError(
                "indexed", f"{field!r} is a {ftype.value} field, which cannot be indexed"
            )
        filterable[field] = None
    return KindSpec(
        name=name,
        record=record,
        key=key,
        table=table,
        category=category,
        field_types=field_types,
        filterable=tuple(filterable),
        timestamps=timestamps,
        optional=frozenset(optional),
        unique=unique_sets,
        max_payload_bytes=max_payload_bytes,
    )


def _check_name(what: str, value: object) -> None:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValidationError(
            what, f"{value!r} must be lower-case letters, digits and _, at most 48, a letter first"
        )


def _unique_fields(fields: Sequence[str]) -> tuple[str, ...]:
    chosen = (fields,) if isinstance(fields, str) else tuple(fields)
    if not chosen or len(set(chosen)) != len(chosen):
        raise ValidationError("unique", f"{fields!r} must name distinct fields")
    return chosen


def _fields_of(
    record: type[Any], name: str, key: str
) -> tuple[dict[str, FieldType], set[str], bool]:
    """(field types of the data fields, the optional ones, has timestamps)."""
    if not dataclasses.is_dataclass(record) or not isinstance(record, type):
        raise ValidationError("record", f"kind {name!r}: {record!r} is not a dataclass")
    params = getattr(record, "__dataclass_params__", None)
    if params is None or not params.frozen:
        raise ValidationError("record", f"{record.__name__} must be a frozen dataclass")
    try:
        hints = get_type_hints(record, include_extras=True)
    except Exception as exc:
        raise ValidationError(
            "record", f"the annotations of {record.__name__} cannot be resolved: {exc}"
        ) from None
    names = [f.name for f in dataclasses.fields(record)]
    if VERSION_FIELD not in names or hints.get(VERSION_FIELD) is not int:
        raise ValidationError(
            "record", f"{record.__name__} needs the field `record_version: int = 1`"
        )
    stamps = [n for n in TIMESTAMP_FIELDS if n in names]
    if stamps and len(stamps) != len(TIMESTAMP_FIELDS):
        raise ValidationError("record", f"{record.__name__} needs both created_at and updated_at")
    for stamp in stamps:
        if _strip_optional(hints[stamp]) != (datetime, True):
            raise ValidationError(
                stamp, f"must be declared `{stamp}: datetime | None = None` on {record.__name__}"
            )
    if key not in names:
        raise ValidationError("key", f"{key!r} is not a field of {record.__name__}")
    types_: dict[str, FieldType] = {}
    optional: set[str] = set()
    for field in names:
        if field in TIMESTAMP_FIELDS or field == VERSION_FIELD:
            continue
        ftype, nullable = _field_type(record.__name__, field, hints[field])
        if field == key:
            if ftype is not FieldType.INDEXED_STR or nullable:
                raise ValidationError("key", f"{key!r} must be declared `str` (not optional)")
            ftype = FieldType.KEY
        if nullable:
            if ftype is FieldType.STR:
                ftype = FieldType.OPT_STR
            elif ftype is not FieldType.JSON:
                optional.add(field)
        types_[field] = ftype
    return types_, optional, bool(stamps)


def _strip_optional(hint: Any) -> tuple[Any, bool]:
    """(the annotation without `| None`, whether it had it)."""
    if get_origin(hint) in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(args) < len(get_args(hint)):
            return args[0], True
    return hint, False


_SCALARS: dict[Any, FieldType] = {
    str: FieldType.INDEXED_STR,
    bool: FieldType.BOOL,
    int: FieldType.INT,
    float: FieldType.FLOAT,
    datetime: FieldType.DATETIME,
    Any: FieldType.JSON,
    dict: FieldType.DICT,
    list: FieldType.LIST,
}


def _field_type(owner: str, field: str, hint: Any) -> tuple[FieldType, bool]:
    base, nullable = _strip_optional(hint)
    origin = get_origin(base)
    if origin is Annotated:
        inner, *extras = get_args(base)
        if inner is str and any(e is TEXT_MARKER for e in extras):
            return FieldType.STR, nullable
        base, origin = inner, get_origin(inner)
    if origin is dict:
        if get_args(base) == (str, str):
            return FieldType.STR_DICT, nullable
        return FieldType.DICT, nullable
    if origin is list:
        return FieldType.LIST, nullable
    try:
        return _SCALARS[base], nullable
    except (KeyError, TypeError):
        raise ValidationError(
            field,
            f"{owner}.{field}: {hint!r} is not a storable type; use str, Text, int, float, "
            "bool, datetime, dict, list or JSON (optionally `| None`)",
        ) from None


def refuse_other_shape(old: KindSpec[Any], new: KindSpec[Any]) -> None:
    """Raise a ValidationError naming every difference between two declarations of one
    kind name; return when they describe the same kind."""
    problems = []
    if old.record is not new.record:  # e.g. its module imported twice: two classes
        problems.append(f"record {_qualname(old.record)} vs another class {_qualname(new.record)}")
    for field in dict.fromkeys([*old.field_types, *new.field_types]):
        was, now = old.field_types.get(field), new.field_types.get(field)
        if was != now:
            problems.append(
                f"field {field!r}: {was.value if was else 'absent'} vs "
                f"{now.value if now else 'absent'}"
            )
    for attr in (
        "key",
        "table",
        "category",
        "filterable",
        "timestamps",
        "optional",
        "unique",
        "max_payload_bytes",
    ):
        was_value, now_value = getattr(old, attr), getattr(new, attr)
        if was_value != now_value:
            if isinstance(was_value, frozenset):
                was_value, now_value = sorted(was_value), sorted(now_value)
            problems.append(f"{attr} {was_value!r} vs {now_value!r}")
    if problems:
        raise ValidationError(
            "kind",
            f"{old.name!r} is already declared with another shape: " + "; ".join(problems),
        )


def _qualname(cls: type[Any]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
