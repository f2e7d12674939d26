"""Create, read, update, upsert and delete through the generic API, for every kind."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from storage_core.kinds import KINDS, TEST_LOG_ENTRY
from storage_core.manager import StorageManager
from storage_core.testing.samples import SAMPLE_CHANGES, data_of, json_bytes, present, sample_record


class TestCrud:
    def test_create_returns_the_stored_record_for_every_kind(
        self, storage_manager: StorageManager
    ) -> None:
        for kind, spec in KINDS.items():
            record = sample_record(kind, f"{kind}-1")
            created = storage_manager.create_record(record)
            fetched = storage_manager.get_record(kind, f"{kind}-1")
            assert type(created) is spec.record, kind
            assert type(fetched) is spec.record, kind
            assert data_of(created) == data_of(record), kind
            assert fetched == created, kind
            assert created.record_version == 1, kind

    def test_update_changes_only_the_given_fields(self, storage_manager: StorageManager) -> None:
        for kind, spec in KINDS.items():
            original = storage_manager.create_record(sample_record(kind, "k"))
            changes = SAMPLE_CHANGES[kind]
            updated = present(storage_manager.update_record(spec, "k", **changes))
            expected = {**data_of(original), **changes}
            assert data_of(updated) == expected, kind
            assert data_of(present(storage_manager.get_record(kind, "k"))) == expected, kind
            assert updated.record_version == 2, kind
            assert spec.key_of(updated) == "k"

    def test_upsert_creates_then_replaces_every_data_field(
        self, storage_manager: StorageManager
    ) -> None:
        for kind, spec in KINDS.items():
            first = storage_manager.upsert_record(
                replace(sample_record(kind, "k"), **SAMPLE_CHANGES[kind])
            )
            assert first.record_version == 1, kind
            # The replacement puts back sample values, some of them None or empty: no
            # field of the first write may survive.
            replacement = sample_record(kind, "k")
            second = storage_manager.upsert_record(replacement)
            assert data_of(second) == data_of(replacement), kind
            assert second.record_version == 2, kind
            assert storage_manager.get_record(kind, "k") == second, kind
            assert storage_manager.count_records(kind) == 1, kind
            assert spec.key_of(second) == "k"

    def test_delete_removes_from_get_list_count_and_stream(
        self, storage_manager: StorageManager
    ) -> None:
        for kind in KINDS:
            storage_manager.create_record(sample_record(kind, "gone"))
            storage_manager.create_record(sample_record(kind, "kept"))
            assert storage_manager.delete_record(kind, "gone") is True, kind
            assert storage_manager.delete_record(kind, "gone") is False, kind
            assert storage_manager.get_record(kind, "gone") is None, kind
            assert [KINDS[kind].key_of(r) for r in storage_manager.list_records(kind)] == ["kept"]
            assert storage_manager.count_records(kind) == 1, kind
            assert len(list(storage_manager.stream_records(kind))) == 1, kind

    def test_kinds_are_separate_namespaces(self, storage_manager: StorageManager) -> None:
        """The same key in two kinds names two records (several kinds key on `scid`)."""
        for kind in KINDS:
            storage_manager.create_record(sample_record(kind, "shared-key"))
        assert storage_manager.delete_log_entry("shared-key") is True
        for kind in KINDS:
            expected = 0 if kind == "log_entry" else 1
            assert storage_manager.count_records(kind) == expected, kind
            assert (storage_manager.get_record(kind, "shared-key") is None) == (expected == 0)

    def test_stored_data_is_isolated_from_caller_objects(
        self, storage_manager: StorageManager
    ) -> None:
        """Mutating a list passed in, or one handed back, must not change the store."""
        logs: list[Any] = [{"versionId": "1-a", "nested": {"items": [1, 2]}}]
        created = storage_manager.create_test_log_entry("iso", logs=logs)
        snapshot = json_bytes(logs)
        logs.append({"versionId": "2-b"})
        logs[0]["nested"]["items"].append(3)
        created.logs.append("mutated return value")
        fetched = present(storage_manager.get_test_log_entry("iso"))
        assert json_bytes(fetched.logs) == snapshot
        fetched.logs.clear()
        listed = storage_manager.list_records(TEST_LOG_ENTRY)[0]
        listed.logs.append("mutated list value")
        assert json_bytes(present(storage_manager.get_test_log_entry("iso")).logs) == snapshot
