"""bulk_upsert (the import/restore primitive) and stream_records (the export side)."""

from __future__ import annotations

import gc
from contextlib import closing
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from storage_core.errors import ValidationError
from storage_core.kinds import KINDS, LOG_ENTRY
from storage_core.manager import StorageManager
from storage_core.records import LogEntry
from storage_core.testing.samples import data_of, present, sample_record
from storage_core.testing.suite.queries import keys

T0 = datetime(2020, 2, 29, 12, 30, 45, 123456, tzinfo=UTC)


def _restored_entries(count: int, start: int = 0) -> list[LogEntry]:
    """Records as an export would hold them: old timestamps, high versions."""
    return [
        sample_record(
            LOG_ENTRY,
            f"bulk-{i:03d}",
            created_at=T0 + timedelta(days=i),
            updated_at=T0 + timedelta(days=i, hours=1),
            record_version=i + 5,
        )
        for i in range(start, start + count)
    ]


class TestBulkUpsert:
    def test_records_are_written_exactly_as_given(self, storage_manager: StorageManager) -> None:
        records = _restored_entries(12)
        assert storage_manager.bulk_upsert("log_entry", records) == 12
        assert storage_manager.get_log_entries() == records
        plus_two = timezone(timedelta(hours=2))
        local = replace(
            records[0],
            scid="local-tz",
            created_at=T0.astimezone(plus_two),
            updated_at=T0.astimezone(plus_two),
        )
        storage_manager.bulk_upsert("log_entry", [local])
        stored = present(storage_manager.get_log_entry("local-tz"))
        assert (stored.created_at, stored.updated_at) == (T0, T0)
        assert present(stored.created_at).utcoffset() == timedelta(0)

    def test_every_kind_round_trips(self, storage_manager: StorageManager) -> None:
        for kind in KINDS:
            records = [replace(sample_record(kind, f"b{i}"), record_version=3) for i in range(3)]
            assert storage_manager.bulk_upsert(kind, records) == 3
            stored = storage_manager.list_records(kind)
            assert [data_of(r) for r in stored] == [data_of(r) for r in records], kind
            assert [r.record_version for r in stored] == [3, 3, 3], kind

    def test_existing_keys_are_replaced_in_place(self, storage_manager: StorageManager) -> None:
        sm = storage_manager
        for key in ("x", "y", "z"):
            sm.create_record(sample_record("log_entry", key))
        sm.bulk_upsert(
            "log_entry",
            [
                sample_record("log_entry", "new", created_at=T0, updated_at=T0),
                sample_record(
                    "log_entry",
                    "x",
                    identifier="restored",
                    created_at=T0,
                    updated_at=T0,
                    record_version=9,
                ),
            ],
        )
        assert keys(sm.get_log_entries()) == ["x", "y", "z", "new"]
        restored = present(sm.get_log_entry("x"))
        assert (restored.identifier, restored.created_at, restored.record_version) == (
            "restored",
            T0,
            9,
        )

    def test_missing_timestamps_are_filled_consistently(
        self, storage_manager: StorageManager
    ) -> None:
        storage_manager.bulk_upsert("task", [sample_record("task", "t")])
        task = present(storage_manager.get_task("t"))
        assert task.created_at is not None
        assert task.created_at == task.updated_at

    def test_one_invalid_record_writes_nothing(self, storage_manager: StorageManager) -> None:
        sm = storage_manager
        sm.create_record(sample_record("log_entry", "existing"))
        before = sm.get_log_entries()
        good = _restored_entries(5)
        for bad, field in (
            (replace(good[0], scid="bad", logs="not a list"), "logs"),  # type: ignore[arg-type]
            (replace(good[0], scid="bad", created_at=datetime(2020, 1, 1)), "created_at"),
            (replace(good[0], scid="bad", record_version=0), "record_version"),
            (replace(good[0], scid="a\x00b"), "scid"),
            (sample_record("task", "wrong-kind"), "record"),
        ):
            batch = [*good[1:], replace(before[0], identifier="changed"), bad]
            with pytest.raises(ValidationError) as err:
                sm.bulk_upsert("log_entry", batch)
            assert err.value.field == field
            assert sm.get_log_entries() == before, field

    def test_repeated_key_in_one_call_is_rejected(self, storage_manager: StorageManager) -> None:
        records = _restored_entries(3)
        with pytest.raises(ValidationError) as err:
            storage_manager.bulk_upsert("log_entry", [*records, replace(records[1], did="x")])
        assert err.value.field == "scid"
        assert storage_manager.count_log_entries() == 0

    def test_empty_call_writes_nothing(self, storage_manager: StorageManager) -> None:
        assert storage_manager.bulk_upsert("log_entry", []) == 0
        assert storage_manager.bulk_upsert("policy", iter(())) == 0
        assert storage_manager.count_log_entries() == 0


class TestStream:
    @pytest.mark.parametrize("batch_size", [1, 7, 500])
    def test_streams_everything_in_order(
        self, storage_manager: StorageManager, batch_size: int
    ) -> None:
        records = _restored_entries(30)
        storage_manager.bulk_upsert("log_entry", records)
        streamed = list(storage_manager.stream_records(LOG_ENTRY, batch_size=batch_size))
        assert streamed == records
        odd = [r for r in records if r.record_version % 2]
        for record in odd:
            storage_manager.update_log_entry(record.scid, namespace="odd")
        filtered = storage_manager.stream_records(LOG_ENTRY, {"namespace": "odd"}, batch_size)
        assert keys(list(filtered)) == keys(odd)

    def test_early_closed_stream_releases_the_store(self, storage_manager: StorageManager) -> None:
        """Stopping early (closing or dropping the iterator) must free the cursor or
        connection, many times over, so later calls neither block nor fail."""
        sm = storage_manager
        sm.bulk_upsert("log_entry", _restored_entries(20))
        for _ in range(15):
            with closing(sm.stream_records(LOG_ENTRY, batch_size=3)) as stream:
                assert next(stream).scid == "bulk-000"
                assert next(stream).scid == "bulk-001"
        dropped = sm.stream_records(LOG_ENTRY, batch_size=2)
        next(dropped)
        del dropped
        gc.collect()
        sm.create_record(sample_record("log_entry", "after"))
        assert present(sm.update_log_entry("bulk-000", identifier="changed")).record_version == 6
        assert sm.count_log_entries() == 21
        assert len(list(sm.stream_records(LOG_ENTRY, batch_size=7))) == 21
        assert sm.bulk_upsert("log_entry", _restored_entries(2, start=50)) == 2

    def test_other_calls_work_while_a_stream_is_open(self, storage_manager: StorageManager) -> None:
        """Exporting one kind while reading another (log entry -> its resources) is the
        normal migration loop."""
        sm = storage_manager
        sm.bulk_upsert("log_entry", _restored_entries(6))
        for i in range(6):
            sm.create_record(sample_record("witness_file", f"bulk-{i:03d}"))
        seen = []
        for entry in sm.stream_records(LOG_ENTRY, batch_size=2):
            assert sm.get_witness_file(entry.scid) is not None
            assert sm.count_log_entries() == 6
            seen.append(entry.scid)
        assert seen == [f"bulk-{i:03d}" for i in range(6)]

    def test_invalid_batch_size_names_it(self, storage_manager: StorageManager) -> None:
        for size in (0, -1, "10", True, 1.5):
            with pytest.raises(ValidationError) as err:
                storage_manager.stream_records(LOG_ENTRY, batch_size=size)  # type: ignore[arg-type]
            assert err.value.field == "batch_size", size
