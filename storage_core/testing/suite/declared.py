"""A kind declared with `storage_core.record_kind`, stored like a built-in one.

`Sample` has a field of every type a declaration may use (str, Text, int, float, bool,
datetime, JSON, dict, list, object of strings, each also optional), indexes of every
indexable type, a unique constraint and timestamps; the tests below run the generic API
over it: CRUD, lists and filters, counts, streams, bulk writes, `expected_version`, the
validation errors and the unique constraint, with the same answers on every backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, ClassVar

import pytest

from storage_core.declare import JSON, Text, kind_spec, record_kind
from storage_core.errors import ConflictError, DuplicateRecordError, ValidationError
from storage_core.manager import StorageManager
from storage_core.testing.samples import present

INT_MIN, INT_MAX = -(2**63), 2**63 - 1
#: An instant with microseconds, given in a zone that is not UTC.
WHEN = datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30)))


@record_kind(
    "conformance_sample",
    key="sample_id",
    indexed=["label", "count", "flag", "seen_at", "maybe_label"],
    unique=[("label", "count")],
    table="conformance_samples",
)
@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """A record of every field type (the conformance suite's declared kind)."""

    __test__: ClassVar[bool] = False  # a record, not a pytest test class
    sample_id: str
    label: str
    seen_at: datetime
    maybe_label: str | None = None
    body: Text = ""
    note: Text | None = None
    count: int = 0
    maybe_count: int | None = None
    ratio: float = 0.0
    maybe_ratio: float | None = None
    flag: bool = False
    maybe_flag: bool | None = None
    maybe_at: datetime | None = None
    doc: JSON = None
    data: dict[str, Any] = field(default_factory=dict)
    maybe_data: dict[str, Any] | None = None
    items: list[Any] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    record_version: int = 1


SAMPLE = kind_spec(Sample)


def sample(key: str, **fields: Any) -> Sample:
    """A valid Sample; its label is unique per key unless given."""
    values: dict[str, Any] = {"label": f"label-{key}", "seen_at": WHEN, "count": 1}
    return Sample(sample_id=key, **{**values, **fields})


def full(key: str) -> Sample:
    """A Sample with every field set, at the limits of its type."""
    return sample(
        key,
        maybe_label="maybe",
        body="ünïcode 😀 " * 1000,
        note="",
        count=INT_MIN,
        maybe_count=INT_MAX,
        ratio=-1.7976931348623157e308,
        maybe_ratio=5e-324,
        flag=True,
        maybe_flag=False,
        maybe_at=datetime(1, 1, 1, tzinfo=UTC),
        doc=[{"b": 1, "a": [None, 1.5, "x"]}],
        data={"z": 1, "a": {"nested": True}},
        maybe_data={},
        items=[1, "two", 3.0, None],
        labels={"k": "v"},
    )


def content(record: Sample) -> dict[str, Any]:
    """The caller-set fields, datetimes as UTC instants."""
    return {n: getattr(record, n) for n in SAMPLE.data_fields}


class TestDeclaredKind:
    def test_every_field_type_round_trips(self, storage_manager: StorageManager) -> None:
        sm = storage_manager
        for record in (full("full"), sample("defaults")):
            created = sm.create_record(record)
            fetched = present(sm.get_record(SAMPLE, record.sample_id))
            assert type(fetched) is Sample
            assert content(fetched) == content(record)
            assert fetched == created
            assert fetched.seen_at.utcoffset() == timedelta(0)  # stored in UTC
            assert isinstance(fetched.ratio, float) and isinstance(fetched.count, int)
            assert list(fetched.data) == list(record.data)  # JSON key order kept
        by_name: object = sm.get_record("conformance_sample", "defaults")
        assert by_name == sm.get_record(SAMPLE, "defaults") and by_name is not None

    def test_update_sets_and_clears_optional_fields(self, storage_manager: StorageManager) -> None:
        sm = storage_manager
        created = sm.create_record(sample("u"))
        assert created.created_at is not None
        changes: dict[str, Any] = {
            "maybe_label": "now",
            "maybe_count": -5,
            "maybe_ratio": 0.25,
            "maybe_flag": True,
            "maybe_at": WHEN,
            "maybe_data": {"x": [1]},
            "note": "text",
        }
        updated = present(sm.update_record(SAMPLE, "u", **changes))
        assert updated.record_version == 2
        assert {n: getattr(updated, n) for n in changes} == changes
        assert updated.created_at == created.created_at
        cleared = present(
            sm.update_record(SAMPLE, "u", expected_version=2, **dict.fromkeys(changes))
        )
        assert all(getattr(cleared, n) is None for n in changes)
        assert present(sm.get_record(SAMPLE, "u")) == cleared
        assert sm.update_record(SAMPLE, "absent", count=3) is None

    def test_upsert_and_expected_version(self, storage_manager: StorageManager) -> None:
        sm = storage_manager
        first = sm.upsert_record(sample("v", body="one"), expected_version=0)
        assert first.record_version == 1
        second = sm.upsert_record(sample("v", body="two"), expected_version=1)
        assert (second.record_version, second.body) == (2, "two")
        assert second.created_at == first.created_at
        with pytest.raises(ConflictError) as err:
            sm.upsert_record(sample("v", body="three"), expected_version=1)
        assert (err.value.kind, err.value.actual) == ("conformance_sample", 2)
        with pytest.raises(ConflictError):
            sm.update_record(SAMPLE, "v", expected_version=5, body="four")
        with pytest.raises(ConflictError):
            sm.upsert_record(sample("v"), expected_version=0)
        assert present(sm.get_record(SAMPLE, "v")).body == "two"
        assert sm.delete_record(SAMPLE, "v") is True
        assert sm.delete_record(SAMPLE, "v") is False
        assert sm.get_record(SAMPLE, "v") is None

    def test_create_of_an_existing_key_raises_duplicate(
        self, storage_manager: StorageManager
    ) -> None:
        sm = storage_manager
        sm.create_record(sample("d"))
        with pytest.raises(DuplicateRecordError) as err:
            sm.create_record(sample("d", label="other"))
        assert (err.value.kind, err.value.key, err.value.fields) == ("conformance_sample", "d", ())
        assert sm.count_records(SAMPLE) == 1

    def test_filters_on_every_indexed_type(self, storage_manager: StorageManager) -> None:
        sm = storage_manager
        later = WHEN + timedelta(microseconds=1)
        sm.create_record(sample("a", count=1, flag=True, maybe_label="m"))
        sm.create_record(sample("b", count=2, seen_at=later))
        sm.create_record(sample("c", count=INT_MAX, flag=True, seen_at=later))
        sm.create_record(sample("d", count=INT_MIN))

        def keys(**filters: Any) -> list[str]:
            found = [r.sample_id for r in sm.list_records(SAMPLE, filters=filters)]
            assert sm.count_records(SAMPLE, filters=filters) == len(found)
            return found

        assert keys() == ["a", "b", "c", "d"]
        assert keys(count=INT_MAX) == ["c"]
        assert keys(count=[INT_MIN, 2]) == ["b", "d"]
        assert keys(flag=True) == ["a", "c"]
        assert keys(seen_at=later.astimezone(timezone(timedelta(hours=-3)))) == ["b", "c"]
        assert keys(seen_at=WHEN, flag=False) == ["d"]
        assert keys(maybe_label="m") == ["a"]
        assert keys(label=["label-b", "label-a"]) == ["a", "b"]
        assert keys(sample_id="c") == ["c"]
        assert keys(count=[]) == []
        page = sm.list_records(SAMPLE, limit=2, offset=1)
        assert [r.sample_id for r in page] == ["b", "c"]

    def test_stream_and_bulk_upsert(self, storage_manager: StorageManager) -> None:
        sm = storage_manager
        records = [sample(f"k{i:03}", count=i, flag=i % 2 == 0) for i in range(25)]
        assert sm.bulk_upsert(SAMPLE, records) == 25
        streamed = list(sm.stream_records(SAMPLE, batch_size=4))
        assert [content(r) for r in streamed] == [content(r) for r in records]
        evens = [r.sample_id for r in sm.stream_records(SAMPLE, filters={"flag": True})]
        assert evens == [r.sample_id for r in records if r.flag]
        replaced = [replace(records[3], body="new"), sample("k999", count=999)]
        assert sm.bulk_upsert(SAMPLE, replaced) == 2
        keys = [r.sample_id for r in sm.list_records(SAMPLE)]
        assert keys == [r.sample_id for r in records] + ["k999"]  # k003 keeps its place
        assert present(sm.get_record(SAMPLE, "k003")).body == "new"
        with pytest.raises(ValidationError):
            sm.bulk_upsert(SAMPLE, [sample("x"), sample("x")])
        assert sm.count_records(SAMPLE) == 26

    @pytest.mark.parametrize(
        ("field_name", "value"),
        [
            ("count", INT_MAX + 1),
            ("count", INT_MIN - 1),
            ("count", True),
            ("count", 1.0),
            ("count", None),
            ("ratio", float("nan")),
            ("ratio", float("inf")),
            ("ratio", 1),
            ("flag", 1),
            ("flag", None),
            ("maybe_flag", "yes"),
            ("seen_at", datetime(2024, 1, 1)),
            ("seen_at", "2024-01-01T00:00:00Z"),
            ("maybe_at", datetime(2024, 1, 1)),
            ("label", "x" * 1025),
            ("label", None),
            ("body", None),
            ("body", "nul\x00"),
            ("data", []),
            ("items", {}),
            ("labels", {"k": 1}),
            ("doc", {1: "int key"}),
            ("maybe_data", [1]),
        ],
    )
    def test_bad_values_are_refused_and_nothing_is_written(
        self, storage_manager: StorageManager, field_name: str, value: Any
    ) -> None:
        sm = storage_manager
        bad = replace(sample("bad"), **{field_name: value})
        with pytest.raises(ValidationError) as err:
            sm.create_record(bad)
        assert err.value.field.split("[")[0] == field_name
        with pytest.raises(ValidationError):
            sm.upsert_record(bad)
        with pytest.raises(ValidationError):
            sm.bulk_upsert(SAMPLE, [sample("good"), bad])
        sm.create_record(sample("ok"))
        with pytest.raises(ValidationError):
            sm.update_record(SAMPLE, "ok", **{field_name: value})
        assert [r.sample_id for r in sm.list_records(SAMPLE)] == ["ok"]
        assert present(sm.get_record(SAMPLE, "ok")).record_version == 1

    def test_filters_are_checked(self, storage_manager: StorageManager) -> None:
        sm = storage_manager
        for filters, name in (
            ({"body": "x"}, "filters.body"),
            ({"ratio": 1.0}, "filters.ratio"),
            ({"count": "1"}, "filters.count"),
            ({"count": True}, "filters.count"),
            ({"seen_at": datetime(2024, 1, 1)}, "filters.seen_at"),
            ({"seen_at": None}, "filters.seen_at"),
            ({"flag": "true"}, "filters.flag"),
        ):
            with pytest.raises(ValidationError) as err:
                sm.list_records(SAMPLE, filters=filters)
            assert err.value.field == name, filters

    def test_unique_fields_refuse_a_second_record(self, storage_manager: StorageManager) -> None:
        sm = storage_manager
        sm.create_record(sample("u1", label="same", count=7))
        sm.create_record(sample("u2", label="same", count=8))
        for write in (
            lambda: sm.create_record(sample("u3", label="same", count=7)),
            lambda: sm.upsert_record(sample("u3", label="same", count=7)),
            lambda: sm.update_record(SAMPLE, "u2", count=7),
            lambda: sm.upsert_record(sample("u2", label="same", count=7)),
            lambda: sm.bulk_upsert(SAMPLE, [sample("u4"), sample("u3", label="same", count=7)]),
        ):
            with pytest.raises(DuplicateRecordError) as err:
                write()
            assert (err.value.kind, err.value.fields) == ("conformance_sample", ("label", "count"))
        assert [r.sample_id for r in sm.list_records(SAMPLE)] == ["u1", "u2"]
        assert present(sm.get_record(SAMPLE, "u2")).count == 8
        # a record may keep its own values, and a freed pair may be taken
        assert present(sm.upsert_record(sample("u1", label="same", count=7, body="b"))).body == "b"
        assert sm.delete_record(SAMPLE, "u1")
        assert sm.create_record(sample("u5", label="same", count=7)).sample_id == "u5"
