"""`order_by=` on lists and streams: the same order on every backend.

Every backend must give exactly `storage_core.ordering.sort_records`'s order (checked
here against values written out by hand too, so the reference itself is pinned): strings
by code point, False before True, timestamps by instant, insertion order breaking ties,
so pages cut anywhere in a run of equal values line up.

Askar cannot sort in its scans: it sorts at most `max_sorted` matching records in memory
and refuses more (tests/test_askar_backend.py checks the refusal); within that it gives
the same answers as every other backend, which is what this suite checks.
"""

from __future__ import annotations

import dataclasses
from contextlib import closing
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from storage_core.async_manager import AsyncStorageManager
from storage_core.errors import ValidationError
from storage_core.kinds import KINDS, LOG_ENTRY, TASK, FieldType, KindSpec
from storage_core.manager import StorageManager
from storage_core.ordering import orderable_fields, parse_order_by, sort_records
from storage_core.testing.samples import sample_record

#: Insertion order, deliberately unsorted; repeats make ties.
UNSORTED_KEYS = ["m", "c", "z", "a", "k", "b", "y", "e", "q", "d"]
#: String values in insertion order: code point order is "B" < "Z" < "a" < "b" < "é";
#: a locale collation (en_US) would give a < B < b < é < Z.
STRINGS = ["b", "B", "é", "a", "Z", "a", "b", "B", "Z", "é"]
BASE_TIME = datetime(2025, 1, 1, tzinfo=UTC)


def _keys(spec: KindSpec[Any], records: list[Any]) -> list[str]:
    return [spec.key_of(r) for r in records]


def _value(ftype: FieldType, i: int) -> Any:
    return i % 3 == 1 if ftype is FieldType.BOOL else STRINGS[i]


def _seed(sm: StorageManager, spec: KindSpec[Any]) -> list[Any]:
    """Ten records of `spec`, each orderable field given values with ties, out of
    order; created_at set out of order too (bulk_upsert stores it as given)."""
    records = []
    for i, key in enumerate(UNSORTED_KEYS):
        fields = {
            name: _value(spec.field_types[name], i)
            for name in spec.filterable
            if name != spec.key
            and spec.field_types[name] in (FieldType.BOOL, FieldType.INDEXED_STR)
        }
        record = sample_record(spec.name, key, **fields)
        if spec.timestamps:
            created = BASE_TIME + timedelta(hours=(i * 7) % 10)
            record = dataclasses.replace(record, created_at=created, updated_at=created)
        records.append(record)
    sm.bulk_upsert(spec.name, records)
    return sm.list_records(spec.name)  # as stored, in insertion order


def _order_forms(spec: KindSpec[Any]) -> list[Any]:
    """Every orderable field both ways, and some lists of them."""
    fields = orderable_fields(spec)
    forms: list[Any] = [f for name in fields for f in (name, f"-{name}")]
    others = [f for f in fields if f != spec.key]
    if others:
        forms.append([others[0], f"-{spec.key}"])
        forms.append([f"-{others[-1]}", others[0]] if len(others) > 1 else [f"-{others[0]}"])
    return forms


class TestOrderBy:
    def test_every_order_form_on_every_kind(self, storage_manager: StorageManager) -> None:
        """list and stream give the reference order for each form, each kind."""
        sm = storage_manager
        for kind, spec in KINDS.items():
            stored = _seed(sm, spec)
            for form in _order_forms(spec):
                expected = _keys(spec, sort_records(stored, parse_order_by(spec, form) or ()))
                listed = sm.list_records(kind, order_by=form)
                assert _keys(spec, listed) == expected, (kind, form)
                streamed = list(sm.stream_records(kind, batch_size=3, order_by=form))
                assert _keys(spec, streamed) == expected, (kind, form, "stream")
                assert streamed == listed, (kind, form)

    def test_strings_by_code_point_and_ties_in_insertion_order(
        self, storage_manager: StorageManager
    ) -> None:
        sm = storage_manager
        _seed(sm, LOG_ENTRY)
        # domain per key: m b, c B, z é, a a, k Z, b a, y b, e B, q Z, d é
        assert _keys(LOG_ENTRY, sm.get_log_entries(order_by="domain")) == [
            "c", "e", "k", "q", "a", "b", "m", "y", "z", "d",
        ]  # fmt: skip
        assert _keys(LOG_ENTRY, sm.get_log_entries(order_by="-domain")) == [
            "z", "d", "m", "y", "a", "b", "k", "q", "c", "e",
        ]  # fmt: skip
        assert _keys(LOG_ENTRY, sm.get_log_entries(order_by=["-domain", "scid"])) == [
            "d", "z", "m", "y", "a", "b", "k", "q", "c", "e",
        ]  # fmt: skip
        assert _keys(LOG_ENTRY, sm.get_log_entries(order_by="scid")) == sorted(UNSORTED_KEYS)

    def test_bools_false_first(self, storage_manager: StorageManager) -> None:
        sm = storage_manager
        _seed(sm, LOG_ENTRY)  # deactivated: True for indexes 1, 4, 7 (c, k, e)
        assert _keys(LOG_ENTRY, sm.get_log_entries(order_by="-deactivated"))[:3] == ["c", "k", "e"]
        assert _keys(LOG_ENTRY, sm.get_log_entries(order_by="deactivated"))[-3:] == ["c", "k", "e"]

    def test_timestamps_by_instant(self, storage_manager: StorageManager) -> None:
        sm = storage_manager
        _seed(sm, LOG_ENTRY)  # created_at hours: (i * 7) % 10 -> 0 7 4 1 8 5 2 9 6 3
        by_age = ["m", "a", "y", "d", "z", "b", "q", "c", "k", "e"]
        assert _keys(LOG_ENTRY, sm.get_log_entries(order_by="created_at")) == by_age
        assert _keys(LOG_ENTRY, sm.get_log_entries(order_by="-created_at")) == by_age[::-1]
        sm.update_log_entry("q", logs=[])  # updated now: newest of all
        assert _keys(LOG_ENTRY, sm.get_log_entries(order_by="-updated_at"))[0] == "q"
        assert _keys(LOG_ENTRY, sm.get_log_entries(order_by="updated_at"))[-1] == "q"

    def test_pages_are_stable_under_ties(self, storage_manager: StorageManager) -> None:
        """Pages of every size, cut inside runs of equal values, add up to the list."""
        sm = storage_manager
        _seed(sm, LOG_ENTRY)
        for form in ("deactivated", "-deactivated", ["namespace", "-deactivated"]):
            whole = _keys(LOG_ENTRY, sm.get_log_entries(order_by=form))
            for size in (1, 2, 3, 4):
                pages: list[str] = []
                for offset in range(0, len(whole), size):
                    pages += _keys(LOG_ENTRY, sm.get_log_entries(None, size, offset, form))
                assert pages == whole, (form, size)

    def test_filters_with_order(self, storage_manager: StorageManager) -> None:
        sm = storage_manager
        _seed(sm, LOG_ENTRY)
        found = sm.get_log_entries({"deactivated": False}, order_by="-scid", limit=3, offset=1)
        assert _keys(LOG_ENTRY, found) == ["y", "q", "m"]
        streamed = sm.stream_records(
            "log_entry", {"domain": ["a", "B"]}, batch_size=1, order_by="-domain"
        )
        assert _keys(LOG_ENTRY, list(streamed)) == ["a", "b", "c", "e"]
        assert sm.get_log_entries({"scid": "nope"}, order_by="domain") == []
        assert sm.get_log_entries(limit=0, order_by="domain") == []

    def test_named_lists_take_order_by(self, storage_manager: StorageManager) -> None:
        sm = storage_manager
        for key, status in (("t1", "running"), ("t2", "done"), ("t3", "pending")):
            sm.create_task(key, "sync", status)
            sm.create_resource(key, f"scid-{status}", "did", "schema", "n", {})
        assert _keys(TASK, sm.get_tasks(order_by="status")) == ["t2", "t3", "t1"]
        assert [r.resource_id for r in sm.get_resources(order_by="-scid")] == ["t1", "t3", "t2"]

    def test_stream_sees_records_written_between_pages(
        self, storage_manager: StorageManager
    ) -> None:
        """No position is held between pages: a record that sorts after the last one
        served and is written meanwhile is seen; one sorting before is not."""
        sm = storage_manager
        _seed(sm, LOG_ENTRY)
        with closing(sm.stream_records(LOG_ENTRY, batch_size=2, order_by="scid")) as stream:
            first = [next(stream).scid, next(stream).scid]
            sm.create_record(sample_record("log_entry", "zz"))
            sm.create_record(sample_record("log_entry", "0"))
            rest = [r.scid for r in stream]
        assert first == ["a", "b"]
        # a backend that reads the whole order up front (Askar, the memory example)
        # serves what was there when the stream began
        assert rest in (
            ["c", "d", "e", "k", "m", "q", "y", "z", "zz"],
            ["c", "d", "e", "k", "m", "q", "y", "z"],
        )

    @pytest.mark.parametrize(
        ("order_by", "problem"),
        [
            ("logs", "'logs' is not an orderable field of log_entry; allowed: scid, did"),
            ("-nope", "'-nope' is not an orderable field"),
            ("+scid", "'+scid' is not an orderable field"),
            (3, "must be a field name or a list of them, got int"),
            (["scid", None], "must hold field names (str), got NoneType"),
            (["scid", "-scid"], "names 'scid' twice"),
        ],
    )
    def test_bad_order_by_is_a_validation_error(
        self, storage_manager: StorageManager, order_by: Any, problem: str
    ) -> None:
        sm = storage_manager
        sm.create_record(sample_record("log_entry", "a"))
        for call in (
            lambda: sm.list_records("log_entry", order_by=order_by),
            lambda: sm.stream_records("log_entry", order_by=order_by),
            lambda: sm.get_log_entries(order_by=order_by),
        ):
            with pytest.raises(ValidationError) as caught:
                call()
            assert caught.value.field == "order_by"
            assert problem in str(caught.value)
        with pytest.raises(ValidationError, match="created_at"):
            sm.list_records("policy", order_by="created_at")  # no timestamps
        assert len(sm.list_records("log_entry")) == 1

    def test_empty_order_is_insertion_order(self, storage_manager: StorageManager) -> None:
        sm = storage_manager
        _seed(sm, LOG_ENTRY)
        assert _keys(LOG_ENTRY, sm.get_log_entries(order_by=[])) == UNSORTED_KEYS
        assert _keys(LOG_ENTRY, sm.get_log_entries(order_by=None)) == UNSORTED_KEYS


@pytest.mark.asyncio
class TestAsyncOrderBy:
    async def test_async_face_orders_like_the_sync_one(
        self, async_storage_manager: AsyncStorageManager
    ) -> None:
        sm = async_storage_manager
        for i, key in enumerate(UNSORTED_KEYS):
            await sm.create_record(sample_record("log_entry", key, domain=STRINGS[i]))
        stored = await sm.list_records("log_entry")
        for form in ("domain", "-domain", ["-domain", "-scid"], "-created_at"):
            expected = _keys(LOG_ENTRY, sort_records(stored, parse_order_by(LOG_ENTRY, form) or ()))
            assert _keys(LOG_ENTRY, await sm.get_log_entries(order_by=form)) == expected
            streamed = [r async for r in sm.stream_records("log_entry", None, 4, form)]
            assert _keys(LOG_ENTRY, streamed) == expected
        with pytest.raises(ValidationError, match="order_by"):
            await sm.list_records("log_entry", order_by="logs")
