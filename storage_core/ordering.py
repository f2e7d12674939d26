"""Sort orders of lists and streams (`order_by=`): parsed once here, the same rules for
every backend.

`order_by` is a field name (`"-"` in front for descending) or a list of them. Allowed
fields are a kind's filterable (indexed) fields, and `created_at` / `updated_at` for
kinds with timestamps. Backends get a parsed `OrderBy` tuple, or None for the default
order (insertion order), and must order exactly as `sort_records` does:

- insertion order (the record's place, `seq` in SQL, the row id in Askar) is always the
  last tie-break, so equal values keep their insertion order and pages stay stable;
- None (an optional field without a value) sorts after every value ascending and before
  every value descending (PostgreSQL's default: NULLS LAST for ASC, FIRST for DESC);
- strings by Unicode code point (no locale collation), bools False < True, numbers by
  value, datetimes by instant.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, TypeVar

from storage_core.errors import ValidationError
from storage_core.kinds import KindSpec

T = TypeVar("T")
#: The timestamps a kind with `timestamps=True` may also be ordered by.
TIMESTAMP_FIELDS = ("created_at", "updated_at")


@dataclass(frozen=True, slots=True)
class OrderKey:
    """One sort key: a field, ascending unless `descending`."""

    field: str
    descending: bool = False

    def __str__(self) -> str:
        return f"-{self.field}" if self.descending else self.field


#: What callers pass: a field name ("-" prefix: descending), a list of them, or None.
OrderByArg = str | Sequence[str] | None
#: What backends receive: the keys in priority order (never empty).
OrderBy = tuple[OrderKey, ...]


def orderable_fields(spec: KindSpec[Any]) -> tuple[str, ...]:
    """The fields `order_by` accepts for `spec`."""
    return (*spec.filterable, *(TIMESTAMP_FIELDS if spec.timestamps else ()))


def parse_order_by(spec: KindSpec[Any], order_by: Any) -> OrderBy | None:
    """`order_by` as given by a caller -> the keys, or None for insertion order (None,
    or an empty list). A field named twice is refused: the second would never decide."""
    if order_by is None:
        return None
    items: Iterable[Any]
    if isinstance(order_by, str):
        items = (order_by,)
    elif isinstance(order_by, list | tuple):
        items = order_by
    else:
        raise ValidationError(
            "order_by",
            f"must be a field name or a list of them, got {type(order_by).__name__}",
        )
    allowed = orderable_fields(spec)
    keys: builtins.list[OrderKey] = []
    for item in items:
        if not isinstance(item, str):
            raise ValidationError(
                "order_by", f"must hold field names (str), got {type(item).__name__}"
            )
        descending = item.startswith("-")
        name = item[1:] if descending else item
        if name not in allowed:
            raise ValidationError(
                "order_by",
                f"{item!r} is not an orderable field of {spec.name}; allowed: "
                f"{', '.join(allowed)} (prefix '-' for descending)",
            )
        if any(k.field == name for k in keys):
            raise ValidationError("order_by", f"names {name!r} twice")
        keys.append(OrderKey(name, descending))
    return tuple(keys) or None


def sort_records(records: Iterable[T], order: OrderBy) -> builtins.list[T]:
    """`records` (given in insertion order) in `order`: the reference every backend
    matches. Stable sorts from the last key to the first keep insertion order as the
    final tie-break; None goes last ascending, first descending."""
    out = builtins.list(records)
    for key in reversed(order):
        get = attrgetter(key.field)
        present = [r for r in out if get(r) is not None]
        nulls = [r for r in out if get(r) is None]
        present.sort(key=get, reverse=key.descending)  # reverse=True stays stable
        out = nulls + present if key.descending else present + nulls
    return out
