"""`storage_core.ordering`: parsing `order_by` and the reference sort every backend
matches (the conformance suite compares each backend against it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest

from storage_core.errors import ValidationError
from storage_core.kinds import LOG_ENTRY, POLICY
from storage_core.ordering import OrderKey, orderable_fields, parse_order_by, sort_records


@dataclass(frozen=True)
class Row:
    name: str
    value: object


def _names(rows: list[Row]) -> list[str]:
    return [r.name for r in rows]


def test_parse_forms() -> None:
    assert parse_order_by(LOG_ENTRY, None) is None
    assert parse_order_by(LOG_ENTRY, []) is None
    assert parse_order_by(LOG_ENTRY, "domain") == (OrderKey("domain"),)
    assert parse_order_by(LOG_ENTRY, ("-created_at", "scid")) == (
        OrderKey("created_at", descending=True),
        OrderKey("scid"),
    )
    assert str(OrderKey("did", descending=True)) == "-did"


def test_allowed_fields_are_filterable_plus_timestamps() -> None:
    assert orderable_fields(POLICY) == ("policy_id",)
    assert orderable_fields(LOG_ENTRY)[-2:] == ("created_at", "updated_at")
    with pytest.raises(ValidationError, match="allowed: policy_id"):
        parse_order_by(POLICY, "-updated_at")
    with pytest.raises(ValidationError, match="got dict"):
        parse_order_by(LOG_ENTRY, {"scid": 1})


def test_nulls_last_ascending_first_descending_ties_in_given_order() -> None:
    rows = [Row("a", 2), Row("b", None), Row("c", 1), Row("d", None), Row("e", 2)]
    up = sort_records(rows, (OrderKey("value"),))
    down = sort_records(rows, (OrderKey("value", descending=True),))
    assert _names(up) == ["c", "a", "e", "b", "d"]
    assert _names(down) == ["b", "d", "a", "e", "c"]


def test_several_keys_and_value_kinds() -> None:
    later = datetime(2025, 1, 1, 12, tzinfo=UTC)
    earlier_elsewhere = datetime(2025, 1, 1, 13, tzinfo=timezone(timedelta(hours=2)))  # 11:00Z
    rows = [Row("x", later), Row("y", earlier_elsewhere)]
    assert _names(sort_records(rows, (OrderKey("value"),))) == ["y", "x"]  # by instant
    words = [Row("1", "é"), Row("2", "a"), Row("3", "B"), Row("4", "b")]
    assert _names(sort_records(words, (OrderKey("value"),))) == ["3", "2", "4", "1"]
    flags = [Row("t", True), Row("f", False)]
    assert _names(sort_records(flags, (OrderKey("value"),))) == ["f", "t"]
    pairs = [Row("b", 1), Row("a", 1), Row("a", 2)]
    by_both = sort_records(pairs, (OrderKey("name"), OrderKey("value", descending=True)))
    assert [(r.name, r.value) for r in by_both] == [("a", 2), ("a", 1), ("b", 1)]
