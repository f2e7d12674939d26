"""The shared input checks, directly: what is refused and what each error names."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from storage_core.codec import dumps_fields
from storage_core.errors import ValidationError
from storage_core.kinds import LOG_ENTRY, TASK
from storage_core.records import LogEntry
from storage_core.validation import (
    MAX_BATCH_SIZE,
    MAX_FILTER_VALUES,
    MAX_JSON_DEPTH,
    check_json,
    check_timestamp,
    normalize_filters,
    validate_batch_size,
    validate_changes,
    validate_paging,
    validate_record,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def entry(**overrides):
    fields = dict(
        scid="s",
        did="did:webvh:s:example.com:ns:id",
        domain="example.com",
        namespace="ns",
        identifier="id",
        logs=[{"a": 1}],
    )
    return LogEntry(**{**fields, **overrides})


def test_valid_record_gets_timestamps():
    rec = validate_record(LOG_ENTRY, entry(), max_payload=1 << 20, now=NOW)
    assert rec.created_at == rec.updated_at == NOW


@pytest.mark.parametrize(
    ("overrides", "field", "problem"),
    [
        ({"scid": ""}, "scid", "empty"),
        ({"scid": "a\x00b"}, "scid", "NUL"),
        ({"scid": "\ud800"}, "scid", "surrogate"),
        ({"scid": "x" * 65537}, "scid", "limit"),
        ({"did": 5}, "did", "string"),
        ({"logs": {"not": "a list"}}, "logs", "list"),
        ({"logs": [math.nan]}, "logs", "nan"),
        ({"logs": [float("inf")]}, "logs", "inf"),
        ({"logs": [{1: "int key"}]}, "logs", "JSON"),
        ({"logs": [2**70]}, "logs", "JSON"),
        ({"deactivated": "False"}, "deactivated", "bool"),
        ({"created_at": datetime(2026, 1, 1)}, "created_at", "timezone"),
        ({"record_version": 0}, "record_version", ">= 1"),
    ],
)
def test_bad_fields_are_named(overrides, field, problem):
    with pytest.raises(ValidationError) as info:
        validate_record(LOG_ENTRY, entry(**overrides), max_payload=1 << 20, now=NOW)
    assert info.value.field == field
    assert problem.lower() in info.value.problem.lower()


def test_deep_nesting_is_refused():
    doc: list = []
    for _ in range(300):
        doc = [doc]
    with pytest.raises(ValidationError, match="logs"):
        validate_record(LOG_ENTRY, entry(logs=doc), max_payload=1 << 20, now=NOW)


def test_payload_limit():
    with pytest.raises(ValidationError, match="limit is 100"):
        check_json("content", "x" * 200, max_bytes=100)


def test_nul_inside_json_is_storable():
    assert check_json("content", {"a": "x\x00y"}, max_bytes=100) == b'{"a":"x\\u0000y"}'


def test_filters_normalise_and_reject_unknown_keys():
    assert normalize_filters(TASK, {"status": ["a", "b", "a"], "task_type": "t"}) == {
        "status": ("a", "b"),
        "task_type": ("t",),
    }
    with pytest.raises(ValidationError) as info:
        normalize_filters(TASK, {"status; DROP TABLE tasks": "x"})
    assert info.value.field == "filters.status; DROP TABLE tasks"
    with pytest.raises(ValidationError, match=r"filters\.deactivated"):
        normalize_filters(LOG_ENTRY, {"deactivated": "true"})


def test_changes_cannot_touch_key_version_or_timestamps():
    for name in ("scid", "record_version", "created_at", "nope"):
        with pytest.raises(ValidationError) as info:
            validate_changes(LOG_ENTRY, {name: "x"}, max_payload=100)
        assert info.value.field == name
    with pytest.raises(ValidationError, match="at least one"):
        validate_changes(LOG_ENTRY, {}, max_payload=100)


@pytest.mark.parametrize(("limit", "offset"), [(-1, 0), (True, 0), (1, -5), ("3", 0)])
def test_paging_is_checked(limit, offset):
    with pytest.raises(ValidationError):
        validate_paging(limit, offset)


def nested(depth: int) -> object:
    doc: object = "leaf"
    for _ in range(depth):
        doc = [doc]
    return doc


def test_json_depth_limit_is_exact():
    assert check_json("content", nested(MAX_JSON_DEPTH), max_bytes=1 << 20)
    with pytest.raises(
        ValidationError,
        match=f"content: nests JSON deeper than the limit of {MAX_JSON_DEPTH} levels",
    ):
        check_json("content", nested(MAX_JSON_DEPTH + 1), max_bytes=1 << 20)
    loop: list = []
    loop.append(loop)  # a cycle is refused the same way, not a RecursionError
    with pytest.raises(ValidationError, match="deeper"):
        check_json("content", loop, max_bytes=1 << 20)


def test_a_record_nested_to_the_limit_encodes_exactly_in_one_object():
    """The Askar layout wraps every record in one more object (codec.dumps_fields)."""
    fields = {"scid": "s", "logs": nested(MAX_JSON_DEPTH), "n": -0.0, "x": None}
    encoded = dumps_fields(fields)
    assert orjson.loads(encoded) == fields
    small = {"a": [1, {"b": -0.0}], "é": "ü", "c": None}
    assert dumps_fields(small) == orjson.dumps(small)
    assert dumps_fields({}) == b"{}"


@pytest.mark.parametrize(
    ("stamp", "ok"),
    [
        (datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))), False),
        (datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-14))), False),
        (datetime(1, 1, 1, 14, tzinfo=timezone(timedelta(hours=14))), True),
    ],
)
def test_timestamps_must_exist_in_utc(stamp, ok):
    if ok:
        assert check_timestamp("created_at", stamp) == stamp
    else:
        with pytest.raises(ValidationError, match="outside years 1-9999 in UTC") as info:
            check_timestamp("created_at", stamp)
        assert info.value.field == "created_at"


def test_counts_are_bounded_to_64_bits_and_batch_size_to_its_maximum():
    assert validate_paging(2**63 - 1, 2**63 - 1) == (2**63 - 1, 2**63 - 1)
    for limit, offset, field in ((2**63, 0, "limit"), (None, 2**63, "offset")):
        with pytest.raises(ValidationError) as info:
            validate_paging(limit, offset)
        assert info.value.field == field
    assert validate_batch_size(MAX_BATCH_SIZE) == MAX_BATCH_SIZE
    for bad in (0, True, 1.0, MAX_BATCH_SIZE + 1, 2**63):
        with pytest.raises(ValidationError, match="batch_size"):
            validate_batch_size(bad)


def test_filter_values_are_counted_over_every_field():
    half = [f"v{i}" for i in range(MAX_FILTER_VALUES // 2)]
    assert len(normalize_filters(TASK, {"task_id": half, "status": half})["status"]) == len(half)
    with pytest.raises(ValidationError, match=f"at most {MAX_FILTER_VALUES}") as info:
        normalize_filters(TASK, {"task_id": half, "status": [*half, "one more"]})
    assert info.value.field == "filters.status"
