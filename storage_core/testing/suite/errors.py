"""Every error a caller can meet, its attributes, and that nothing was written."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from storage_core.errors import ConflictError, DuplicateRecordError, ValidationError
from storage_core.kinds import KINDS
from storage_core.manager import StorageManager
from storage_core.testing.samples import SAMPLE_CHANGES, data_of, present, sample_record

#: One create_or_update_* call per kind that has them: (kind, call(sm, key, **kw)).
CREATE_OR_UPDATE: list[tuple[str, Callable[..., Any]]] = [
    ("policy", lambda sm, key, **kw: sm.create_or_update_policy(key, {"witness": True}, **kw)),
    ("registry", lambda sm, key, **kw: sm.create_or_update_registry(key, "t", {"a": 1}, **kw)),
    ("witness_file", lambda sm, key, **kw: sm.create_or_update_witness_file(key, [], **kw)),
    ("whois", lambda sm, key, **kw: sm.create_or_update_whois(key, {"p": 1}, **kw)),
]


def _field_of(call: Callable[[], Any]) -> str:
    with pytest.raises(ValidationError) as err:
        call()
    return err.value.field


class TestMissingAndDuplicate:
    def test_create_of_an_existing_key_raises_duplicate(
        self, storage_manager: StorageManager
    ) -> None:
        sm = storage_manager
        for kind in KINDS:
            first = sm.create_record(sample_record(kind, "dup"))
            with pytest.raises(DuplicateRecordError) as err:
                sm.create_record(sample_record(kind, "dup", **SAMPLE_CHANGES[kind]))
            assert (err.value.kind, err.value.key) == (kind, "dup")
            assert sm.get_record(kind, "dup") == first, kind
            assert sm.count_records(kind) == 1, kind

    def test_named_creates_raise_duplicate(self, storage_manager: StorageManager) -> None:
        sm = storage_manager
        creates: list[Callable[[], object]] = [
            lambda: sm.create_log_entry("d", "did:webvh:d:x", "x", "n", "i", []),
            lambda: sm.create_resource("d", "s", "did", "type", "name", {}),
            lambda: sm.create_task("d", "type", "pending"),
            lambda: sm.create_test_log_entry("d", []),
            lambda: sm.create_test_resource("d", "s", {}),
        ]
        for create in creates:
            create()
            with pytest.raises(DuplicateRecordError):
                create()

    def test_missing_keys_read_as_none_and_delete_as_false(
        self, storage_manager: StorageManager
    ) -> None:
        sm = storage_manager
        sm.create_record(sample_record("log_entry", "present"))
        for kind in KINDS:
            assert sm.get_record(kind, "missing") is None, kind
            assert sm.update_record(kind, "missing", **SAMPLE_CHANGES[kind]) is None, kind
            assert sm.delete_record(kind, "missing") is False, kind
            assert sm.count_records(kind) == (1 if kind == "log_entry" else 0), kind
        getters = (
            sm.get_log_entry,
            sm.get_resource,
            sm.get_task,
            sm.get_policy,
            sm.get_registry,
            sm.get_witness_file,
            sm.get_whois,
            sm.get_test_log_entry,
            sm.get_test_resource,
        )
        assert [get("missing") for get in getters] == [None] * len(getters)
        assert sm.update_log_entry("missing", deactivated=True) is None
        assert sm.update_resource("missing", resource_name="x") is None
        assert sm.update_task("missing", status="x") is None
        deletes = (
            sm.delete_log_entry,
            sm.delete_resource,
            sm.delete_task,
            sm.delete_test_log_entry,
            sm.delete_test_resource,
        )
        assert [delete("missing") for delete in deletes] == [False] * len(deletes)


class TestValidationErrors:
    def test_wrong_types_name_the_field_and_write_nothing(
        self, storage_manager: StorageManager
    ) -> None:
        sm: Any = storage_manager  # wrong types on purpose, as an untyped caller passes them
        cases: list[tuple[Callable[[], Any], str]] = [
            (lambda: sm.create_log_entry("k", "did", "d", "n", "i", logs="[]"), "logs"),
            (lambda: sm.create_log_entry("k", "did", "d", "n", "i", [], 1), "deactivated"),
            (lambda: sm.create_log_entry("k", 42, "d", "n", "i", []), "did"),
            (lambda: sm.create_log_entry(7, "did", "d", "n", "i", []), "scid"),
            (lambda: sm.create_resource("k", "s", "did", "t", None, {}), "resource_name"),
            (lambda: sm.create_resource("k", "s", "did", "t", "n", {1, 2}), "content"),
            (lambda: sm.create_task("k", "type", "s", progress=[1]), "progress"),
            (lambda: sm.create_task("k", "type", "s", message=5), "message"),
            (lambda: sm.create_or_update_policy("k", ["witness"]), "data"),
            (lambda: sm.create_or_update_policy("k", {"witness": "yes"}), "witness"),
            (lambda: sm.create_or_update_registry("k", "t", ["not a dict"]), "registry_data"),
            (lambda: sm.create_or_update_witness_file("k", {"not": "a list"}), "witness_proofs"),
            (lambda: sm.create_or_update_whois("k", "text"), "presentation"),
            (lambda: sm.create_test_log_entry("k", [], tags={"run": 1}), "tags['run']"),
            (lambda: sm.create_test_resource("k", "s", {"x": float("nan")}), "content"),
            (lambda: sm.create_test_resource("k", "s", {"x": object()}), "content"),
            (lambda: sm.create_test_resource("k", "s", 2**70), "content"),
            (lambda: sm.create_log_entry("k", "d" * 2000, "d", "n", "i", []), "did"),
            (lambda: sm.create_log_entry("k", "did\ud800", "d", "n", "i", []), "did"),
            (lambda: sm.create_record({"scid": "k"}), "record"),
            (lambda: sm.get_record("no_such_kind", "k"), "kind"),
        ]
        for call, field in cases:
            assert _field_of(call) == field
        assert sm.info()["rows"] == dict.fromkeys(KINDS, 0)

    def test_nul_and_empty_ids_are_refused_everywhere(
        self, storage_manager: StorageManager
    ) -> None:
        sm = storage_manager
        for kind, spec in KINDS.items():
            for bad in ("a\x00b", ""):
                calls = (
                    partial(sm.create_record, sample_record(kind, bad)),
                    partial(sm.get_record, kind, bad),
                    partial(sm.delete_record, kind, bad),
                    partial(sm.update_record, kind, bad, **SAMPLE_CHANGES[kind]),
                )
                for call in calls:
                    assert _field_of(call) == spec.key, (kind, bad, call.func.__name__)
        assert _field_of(lambda: sm.create_or_update_whois("x\x00", {})) == "scid"
        assert (
            _field_of(lambda: sm.create_test_resource("r", "s", {}, tags={"k": "\x00"}))
            == "tags['k']"
        )

    def test_update_refuses_unknown_fields_the_key_and_managed_fields(
        self, storage_manager: StorageManager
    ) -> None:
        sm = storage_manager
        original = sm.create_record(sample_record("log_entry", "k"))
        for changes, field in (
            ({"nope": 1}, "nope"),
            ({"scid": "other"}, "scid"),
            ({"created_at": original.created_at}, "created_at"),
            ({"record_version": 7}, "record_version"),
            ({"deactivated": True, "nope": 1}, "nope"),
            ({"deactivated": "yes"}, "deactivated"),
            ({}, "fields"),
        ):
            assert _field_of(partial(sm.update_record, "log_entry", "k", **changes)) == field
        assert (
            _field_of(lambda: sm.update_task("k", expected_version=0, status="x"))
            == "expected_version"
        )
        assert (
            _field_of(lambda: sm.update_task("k", expected_version="1", status="x"))  # type: ignore[arg-type]
            == "expected_version"
        )
        assert sm.get_log_entry("k") == original
        assert sm.get_log_entry("other") is None


class TestOptimisticConcurrency:
    def test_update_with_a_stale_version_conflicts_and_writes_nothing(
        self, storage_manager: StorageManager
    ) -> None:
        sm = storage_manager
        sm.create_record(sample_record("task", "t"))
        current = present(sm.update_task("t", expected_version=1, status="running"))
        assert current.record_version == 2
        for stale in (1, 3):
            with pytest.raises(ConflictError) as err:
                sm.update_task("t", expected_version=stale, status="lost")
            assert (err.value.kind, err.value.key) == ("task", "t")
            assert (err.value.expected, err.value.actual) == (stale, 2)
        assert sm.get_task("t") == current
        done = present(sm.update_task("t", expected_version=2, status="done"))
        assert done.record_version == 3

    def test_upsert_with_a_stale_version_conflicts_and_writes_nothing(
        self, storage_manager: StorageManager
    ) -> None:
        sm = storage_manager
        for kind, call in CREATE_OR_UPDATE:
            first = call(sm, "k")
            second = call(sm, "k", expected_version=1)
            assert second.record_version == 2, kind
            with pytest.raises(ConflictError) as err:
                call(sm, "k", expected_version=1)
            assert (err.value.kind, err.value.expected, err.value.actual) == (kind, 1, 2)
            assert sm.get_record(kind, "k") == second, kind
            assert data_of(second) == data_of(first), kind

    def test_expected_version_zero_means_must_not_exist(
        self, storage_manager: StorageManager
    ) -> None:
        sm = storage_manager
        for kind, call in CREATE_OR_UPDATE:
            created = call(sm, "new", expected_version=0)
            assert created.record_version == 1, kind
            with pytest.raises(ConflictError) as err:
                call(sm, "new", expected_version=0)
            assert (err.value.expected, err.value.actual) == (0, 1), kind
            assert sm.get_record(kind, "new") == created, kind
        fresh = sample_record("log_entry", "fresh")
        assert sm.upsert_record(fresh, expected_version=0).record_version == 1
        with pytest.raises(ConflictError):
            sm.upsert_record(fresh, expected_version=0)

    def test_expected_version_on_a_missing_key_conflicts(
        self, storage_manager: StorageManager
    ) -> None:
        sm = storage_manager
        for kind, call in CREATE_OR_UPDATE:
            with pytest.raises(ConflictError) as err:
                call(sm, "absent", expected_version=3)
            assert (err.value.expected, err.value.actual) == (3, None), kind
            assert sm.get_record(kind, "absent") is None, kind
        assert (
            _field_of(lambda: sm.create_or_update_whois("w", {}, expected_version=-1))
            == "expected_version"
        )
