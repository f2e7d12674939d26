"""Records to driver parameters and driver rows to records, for the statements that skip
SQLAlchemy's type layer (the dialects' fast paths), and rows in chunks for bulk writes.

Each builder is made once per kind: it looks up which fields need converting up front, so
a call only converts those (JSON documents with orjson, timestamps as each driver wants
them) and builds the record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

from storage_core.codec import loads
from storage_core.encoded import dumps_str
from storage_core.kinds import FieldType, KindSpec

#: A value converter, or None where the driver's value is already the record's.
Converter = Callable[[Any], Any]
#: Which converter a field needs, from its name and FieldType (None: not a data field,
#: i.e. created_at, updated_at or record_version).
ConverterFor = Callable[[str, FieldType | None], Converter | None]
RowToRecord = Callable[[Sequence[Any]], Any]
RecordToParams = Callable[[Any], list[Any]]
ValuesToParams = Callable[[Sequence[Any]], list[Any]]

TIMESTAMP_FIELDS = frozenset({"created_at", "updated_at"})
#: Rows per statement in bulk writes (bounds memory; one transaction for all).
BULK_CHUNK_ROWS = 1000


def is_json(ftype: FieldType | None) -> bool:
    return ftype is not None and ftype.is_json


def load_json(value: Any) -> Any:
    return None if value is None else loads(value)


def dump_json(value: Any) -> str | None:
    """The driver's JSON text: validation's encoding when the manager validated this very
    document in this call, else a fresh one."""
    return None if value is None else dumps_str(value)


def in_utc(value: datetime | None) -> datetime | None:
    """A timestamptz as an aware UTC datetime. asyncpg hands back 0001-01-01 00:00 UTC,
    the earliest instant, as a naive `datetime.min` (its -infinity): that is UTC too."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def record_builder(
    spec: KindSpec[Any], fields: Sequence[str], convert: ConverterFor
) -> RowToRecord:
    """Row (columns in `fields` order, extra trailing columns ignored) -> record."""
    names = tuple(fields)
    plan = tuple(
        (i, _none_kept(fn) if name in spec.optional else fn)
        for i, name in enumerate(names)
        if (fn := convert(name, spec.field_types.get(name))) is not None
    )
    record_type = spec.record

    def build(row: Sequence[Any]) -> Any:
        values = list(row)
        for i, fn in plan:
            values[i] = fn(values[i])
        return record_type(**dict(zip(names, values, strict=False)))

    return build


def _none_kept(fn: Converter) -> Converter:
    """`fn` for a field that may hold None (SQL NULL reads back as None)."""

    def convert(value: Any) -> Any:
        return None if value is None else fn(value)

    return convert


def is_datetime(name: str, ftype: FieldType | None) -> bool:
    """A timestamp or a DATETIME field: what each driver reads and writes its own way."""
    return ftype is FieldType.DATETIME or name in TIMESTAMP_FIELDS


def params_builder(
    spec: KindSpec[Any], fields: Sequence[str], timestamp: Converter
) -> RecordToParams:
    """Record -> positional parameters of `fields`: JSON fields as orjson text (encoded
    once per write: `dump_json`), timestamps
    through `timestamp`, everything else as it is."""
    read_all = attrgetter(*fields)  # every field in one C call
    converted = _param_plan(spec, fields, timestamp)

    def convert(record: Any) -> list[Any]:
        values = list(read_all(record))
        for i, fn in converted:
            values[i] = fn(values[i])
        return values

    return convert


def values_builder(
    spec: KindSpec[Any], fields: Sequence[str], timestamp: Converter
) -> ValuesToParams:
    """Values of `fields`, in order -> positional parameters, converted as params_builder
    converts a record's (an update's new values are not a record)."""
    converted = _param_plan(spec, fields, timestamp)

    def convert(given: Sequence[Any]) -> list[Any]:
        values = list(given)
        for i, fn in converted:
            values[i] = fn(values[i])
        return values

    return convert


def _param_plan(
    spec: KindSpec[Any], fields: Sequence[str], timestamp: Converter
) -> tuple[tuple[int, Converter], ...]:
    plan: list[tuple[int, Converter]] = []
    for i, name in enumerate(fields):
        if is_json(spec.field_types.get(name)):
            plan.append((i, dump_json))
        elif is_datetime(name, spec.field_types.get(name)):
            plan.append((i, timestamp))
    return tuple(plan)


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
