"""created_at / updated_at (aware UTC) and record_version, the optimistic-lock counter."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from storage_core.kinds import KINDS
from storage_core.manager import StorageManager
from storage_core.testing.samples import (
    SAMPLE_CHANGES,
    TIMESTAMPED_KINDS,
    present,
    sample_record,
)


def _assert_aware_utc(value: datetime | None, what: str) -> None:
    assert isinstance(value, datetime), what
    assert value.tzinfo is not None and value.utcoffset() == timedelta(0), what


def _tick() -> None:
    """Let the clock move, so "later" is observable even at millisecond resolution."""
    time.sleep(0.005)


class TestTimestamps:
    def test_create_sets_equal_aware_utc_timestamps(self, storage_manager: StorageManager) -> None:
        for kind in TIMESTAMPED_KINDS:
            before = datetime.now(UTC) - timedelta(seconds=1)
            created = storage_manager.create_record(sample_record(kind, "t"))
            fetched = present(storage_manager.get_record(KINDS[kind], "t"))
            for record, how in ((created, "returned"), (fetched, "fetched")):
                _assert_aware_utc(record.created_at, f"{kind} {how} created_at")
                _assert_aware_utc(record.updated_at, f"{kind} {how} updated_at")
                assert record.created_at == record.updated_at, (kind, how)
                assert before <= record.created_at <= datetime.now(UTC), (kind, how)

    def test_update_moves_updated_at_forward_and_keeps_created_at(
        self, storage_manager: StorageManager
    ) -> None:
        for kind in TIMESTAMPED_KINDS:
            created = storage_manager.create_record(sample_record(kind, "t"))
            _tick()
            updated = present(
                storage_manager.update_record(KINDS[kind], "t", **SAMPLE_CHANGES[kind])
            )
            assert updated.created_at == created.created_at, kind
            assert updated.updated_at > created.updated_at, kind
            _assert_aware_utc(updated.updated_at, kind)
            assert storage_manager.get_record(kind, "t") == updated, kind

    def test_upsert_of_an_existing_key_keeps_created_at(
        self, storage_manager: StorageManager
    ) -> None:
        for kind in TIMESTAMPED_KINDS:
            created = storage_manager.upsert_record(sample_record(kind, "t"))
            assert created.created_at == created.updated_at, kind
            _tick()
            replaced = storage_manager.upsert_record(
                sample_record(kind, "t", **SAMPLE_CHANGES[kind])
            )
            assert replaced.created_at == created.created_at, kind
            assert replaced.updated_at > created.updated_at, kind
            assert storage_manager.get_record(kind, "t") == replaced, kind

    def test_kinds_without_timestamps_have_none(self, storage_manager: StorageManager) -> None:
        for kind, spec in KINDS.items():
            if not spec.timestamps:
                record = storage_manager.create_record(sample_record(kind, "t"))
                assert not hasattr(record, "created_at"), kind


class TestRecordVersion:
    def test_one_on_create_then_plus_one_per_write(self, storage_manager: StorageManager) -> None:
        for kind, spec in KINDS.items():
            sm = storage_manager
            assert sm.create_record(sample_record(kind, "v")).record_version == 1, kind
            updated = present(sm.update_record(spec, "v", **SAMPLE_CHANGES[kind]))
            assert updated.record_version == 2, kind
            assert sm.upsert_record(sample_record(kind, "v")).record_version == 3, kind
            updated = present(
                sm.update_record(spec, "v", expected_version=3, **SAMPLE_CHANGES[kind])
            )
            assert updated.record_version == 4, kind
            assert present(sm.get_record(spec, "v")).record_version == 4, kind
            assert sm.delete_record(kind, "v") is True
            assert sm.upsert_record(sample_record(kind, "v")).record_version == 1, kind

    def test_caller_supplied_version_is_ignored_outside_bulk(
        self, storage_manager: StorageManager
    ) -> None:
        """Only bulk_upsert (an import) writes a given version; creates start at 1."""
        sm = storage_manager
        assert sm.create_record(sample_record("task", "a", record_version=9)).record_version == 1
        assert sm.upsert_record(sample_record("task", "b", record_version=9)).record_version == 1
        assert sm.upsert_record(sample_record("task", "b", record_version=9)).record_version == 2
