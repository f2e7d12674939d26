"""Filters, counting, pagination and the ordering rule shared by every backend.

Ordering is insertion order (when a key was first created), so keys are deliberately
inserted out of alphabetical order: a backend sorting by key fails here.
"""

from __future__ import annotations

from typing import Any

import pytest

from storage_core.errors import ValidationError
from storage_core.kinds import KINDS
from storage_core.manager import StorageManager
from storage_core.testing.samples import sample_record

#: Not sorted by any rule a backend could reproduce except insertion order.
UNSORTED_KEYS = ["m", "c", "z", "a", "k", "b", "y", "e", "q", "d"]


def keys(records: list[Any], kind: str = "log_entry") -> list[str]:
    spec = KINDS[kind]
    return [spec.key_of(r) for r in records]


def _seed_log_entries(sm: StorageManager) -> None:
    """Ten entries over two domains, two namespaces and both deactivated values."""
    for i, key in enumerate(UNSORTED_KEYS):
        sm.create_record(
            sample_record(
                "log_entry",
                key,
                domain="a.example" if i % 2 == 0 else "b.example",
                namespace="ns1" if i % 3 == 0 else "ns2",
                deactivated=i % 4 == 0,
            )
        )


class TestQueries:
    def test_equality_filter_on_every_filterable_field(
        self, storage_manager: StorageManager
    ) -> None:
        """One field differs per record; filtering on it returns exactly that record."""
        for kind, spec in KINDS.items():
            base = sample_record(kind, "base")
            storage_manager.create_record(base)
            for name in spec.filterable:
                if name == spec.key:
                    continue
                other = (
                    not getattr(base, name)
                    if isinstance(getattr(base, name), bool)
                    else ("other-" + name)
                )
                storage_manager.create_record(sample_record(kind, f"k-{name}", **{name: other}))
                found = storage_manager.list_records(kind, {name: other})
                assert keys(found, kind) == [f"k-{name}"], (kind, name)
                assert storage_manager.count_records(kind, {name: other}) == 1, (kind, name)
            everything = storage_manager.count_records(kind)
            assert keys(storage_manager.list_records(kind, {spec.key: "base"}), kind) == ["base"]
            assert storage_manager.count_records(kind, {spec.key: "nope"}) == 0
            assert everything == len(spec.filterable), kind

    def test_any_of_list_and_anded_filters(self, storage_manager: StorageManager) -> None:
        sm = storage_manager
        _seed_log_entries(sm)
        either = sm.get_log_entries({"namespace": ["ns1", "ns2"]})
        assert keys(either) == UNSORTED_KEYS
        assert keys(sm.get_log_entries({"scid": ["z", "m", "nope"]})) == ["m", "z"]
        both = sm.get_log_entries({"domain": "a.example", "namespace": "ns1"})
        assert keys(both) == ["m", "y"]
        assert sm.count_log_entries({"domain": "a.example", "namespace": ["ns1"]}) == 2
        assert keys(sm.get_log_entries({"domain": ("b.example",), "scid": {"e", "c", "m"}})) == [
            "c",
            "e",
        ]

    def test_bool_filters(self, storage_manager: StorageManager) -> None:
        sm = storage_manager
        _seed_log_entries(sm)
        assert keys(sm.get_log_entries({"deactivated": True})) == ["m", "k", "q"]
        assert sm.count_log_entries({"deactivated": False}) == 7
        assert sm.count_log_entries({"deactivated": [True, False]}) == 10

    def test_empty_any_of_list_matches_nothing(self, storage_manager: StorageManager) -> None:
        _seed_log_entries(storage_manager)
        assert storage_manager.get_log_entries({"domain": []}) == []
        assert storage_manager.count_log_entries({"domain": []}) == 0
        assert list(storage_manager.stream_records("log_entry", {"domain": []})) == []

    def test_filter_values_match_exactly(self, storage_manager: StorageManager) -> None:
        """No pattern matching, case folding or trimming: SQL LIKE wildcards, quotes and
        case variants are plain characters."""
        values = ["a%b", "a_b", "axb", "A_B", "a_b ", "o'brien", 'q"uote', "\u00e9t\u00e9", "ete"]
        for i, value in enumerate(values):
            storage_manager.create_record(sample_record("log_entry", f"k{i}", namespace=value))
        for i, value in enumerate(values):
            assert keys(storage_manager.get_log_entries({"namespace": value})) == [f"k{i}"], value
        assert storage_manager.count_log_entries({"namespace": "%"}) == 0

    def test_unknown_filter_key_names_the_filter(self, storage_manager: StorageManager) -> None:
        sm = storage_manager
        for call in (
            lambda: sm.get_log_entries({"logs": "x"}),
            lambda: sm.count_log_entries({"logs": "x"}),
            lambda: sm.stream_records("log_entry", {"logs": "x"}),
        ):
            with pytest.raises(ValidationError) as err:
                call()
            assert err.value.field == "filters.logs"
        with pytest.raises(ValidationError) as err:
            sm.get_tasks({"nope": 1})
        assert err.value.field == "filters.nope"

    def test_filter_value_of_wrong_type_names_the_filter(
        self, storage_manager: StorageManager
    ) -> None:
        cases: list[tuple[Any, str]] = [
            ({"deactivated": "yes"}, "filters.deactivated"),
            ({"deactivated": [True, 1]}, "filters.deactivated"),
            ({"domain": 5}, "filters.domain"),
            ({"domain": ["ok", None]}, "filters.domain"),
            ({"domain": "a\x00b"}, "filters.domain"),
        ]
        for filters, field in cases:
            with pytest.raises(ValidationError) as err:
                storage_manager.get_log_entries(filters)
            assert err.value.field == field, filters
        with pytest.raises(ValidationError) as err:
            storage_manager.get_log_entries(["domain"])  # type: ignore[arg-type]
        assert err.value.field == "filters"

    def test_pages_never_skip_or_repeat(self, storage_manager: StorageManager) -> None:
        sm = storage_manager
        all_keys = [f"{(i * 7) % 23:02d}-{i}" for i in range(23)]  # unsorted, distinct
        for key in all_keys:
            sm.create_record(
                sample_record("task", key, status="odd" if key[-1] in "13579" else "even")
            )
        assert keys(sm.get_tasks(), "task") == all_keys
        for size in (1, 4, 7, 23, 50):
            pages = [sm.get_tasks(limit=size, offset=o) for o in range(0, 23, size)]
            assert [k for page in pages for k in keys(page, "task")] == all_keys, size
            assert all(len(page) == min(size, 23 - i * size) for i, page in enumerate(pages))
        odd = keys(sm.get_tasks({"status": "odd"}), "task")
        paged = [
            k
            for o in range(0, len(odd), 3)
            for k in keys(sm.get_tasks({"status": "odd"}, limit=3, offset=o), "task")
        ]
        assert paged == odd

    def test_paging_edges(self, storage_manager: StorageManager) -> None:
        sm = storage_manager
        _seed_log_entries(sm)
        assert sm.get_log_entries(limit=0) == []
        assert sm.get_log_entries(offset=10) == []
        assert sm.get_log_entries(offset=1000, limit=5) == []
        assert keys(sm.get_log_entries(offset=8)) == UNSORTED_KEYS[8:]
        assert keys(sm.get_log_entries(limit=None, offset=3)) == UNSORTED_KEYS[3:]
        assert keys(sm.get_log_entries(limit=100)) == UNSORTED_KEYS

    def test_invalid_paging_names_the_argument(self, storage_manager: StorageManager) -> None:
        cases: tuple[tuple[dict[str, Any], str], ...] = (
            ({"limit": -1}, "limit"),
            ({"limit": "3"}, "limit"),
            ({"limit": True}, "limit"),
            ({"offset": -1}, "offset"),
            ({"offset": None}, "offset"),
            ({"offset": 1.0}, "offset"),
        )
        for kwargs, field in cases:
            with pytest.raises(ValidationError) as err:
                storage_manager.get_log_entries(**kwargs)
            assert err.value.field == field, kwargs


class TestOrdering:
    def test_list_and_stream_follow_insertion_order(self, storage_manager: StorageManager) -> None:
        for kind in KINDS:
            for key in UNSORTED_KEYS:
                storage_manager.create_record(sample_record(kind, key))
            assert keys(storage_manager.list_records(kind), kind) == UNSORTED_KEYS, kind
            streamed = storage_manager.stream_records(kind, batch_size=3)
            assert keys(list(streamed), kind) == UNSORTED_KEYS, kind

    def test_update_and_upsert_keep_a_records_place(self, storage_manager: StorageManager) -> None:
        sm = storage_manager
        _seed_log_entries(sm)
        sm.update_log_entry("m", identifier="zzz")
        sm.update_log_entry("a", deactivated=True)
        sm.upsert_record(sample_record("log_entry", "c", identifier="replaced"))
        assert keys(sm.get_log_entries()) == UNSORTED_KEYS
        for key in ("z", "k"):
            sm.create_or_update_whois(key, {"v": 1})
        sm.create_or_update_whois("z", {"v": 2})
        assert keys(sm.list_records("whois"), "whois") == ["z", "k"]

    def test_delete_then_recreate_moves_to_the_end(self, storage_manager: StorageManager) -> None:
        sm = storage_manager
        _seed_log_entries(sm)
        assert sm.delete_log_entry("m") is True
        sm.create_record(sample_record("log_entry", "m"))
        assert sm.delete_log_entry("e") is True
        sm.upsert_record(sample_record("log_entry", "e"))
        expected = [k for k in UNSORTED_KEYS if k not in ("m", "e")] + ["m", "e"]
        assert keys(sm.get_log_entries()) == expected
        assert keys(list(sm.stream_records("log_entry", batch_size=4))) == expected
        assert keys(sm.get_log_entries(limit=3, offset=7)) == expected[7:]
