"""Indexed fields stay indexed correctly when a record changes, and a bulk write the
store itself refuses half-way leaves nothing behind.

A stale index (an update that leaves the record findable under its old value) is the
bug a random state machine finds only sometimes; here every indexed field of every
kind is moved once, through each way a record changes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from storage_core.errors import StorageError, ValidationError
from storage_core.interface import Capability
from storage_core.kinds import KINDS, LOG_ENTRY, KindSpec
from storage_core.manager import StorageManager
from storage_core.testing.samples import present, sample_record
from storage_core.testing.suite.queries import keys

#: More records than one statement of a chunked bulk writer (1000 in the SQL backend),
#: so the refused one fails a later chunk after earlier ones were written.
BULK_SIZE = 1100
REFUSED_AT = 1050


def _values(spec: KindSpec[Any], name: str, record: Any) -> tuple[Any, Any]:
    """An old and a new value for the indexed field `name`."""
    current = getattr(record, name)
    if isinstance(current, bool):
        return current, not current
    return f"old-{name}", f"new-{name}"


def _change(
    sm: StorageManager, how: str, spec: KindSpec[Any], record: Any, name: str, new: Any
) -> None:
    """Set `name` to `new` on the stored `record` through `how` (update, upsert, bulk)."""
    if how == "update":
        present(sm.update_record(spec.name, spec.key_of(record), **{name: new}))
    elif how == "upsert":
        sm.upsert_record(replace(record, **{name: new}))
    else:
        stored: Any = present(sm.get_record(spec.name, spec.key_of(record)))
        sm.bulk_upsert(spec.name, [replace(stored, **{name: new})])


class TestIndexedFieldChanges:
    @pytest.mark.parametrize("how", ["update", "upsert", "bulk_upsert"])
    def test_changing_an_indexed_field_moves_the_record_between_filter_results(
        self, storage_manager: StorageManager, how: str
    ) -> None:
        """Filter by the old value: only the bystander; by the new: only the moved one."""
        sm = storage_manager
        failures: list[str] = []
        for kind, spec in KINDS.items():
            for name in spec.filterable:
                if name == spec.key:
                    continue
                old, new = _values(spec, name, sample_record(kind, "probe"))
                moved = sample_record(kind, f"moved-{name}", **{name: old})
                bystander = sample_record(kind, f"stays-{name}", **{name: old})
                sm.create_record(moved)
                sm.create_record(bystander)
                _change(sm, how, spec, moved, name, new)
                found_old = keys(sm.list_records(kind, {name: old}), kind)
                found_new = keys(sm.list_records(kind, {name: new}), kind)
                streamed = keys(list(sm.stream_records(kind, {name: new}, batch_size=2)), kind)
                counts = (sm.count_records(kind, {name: old}), sm.count_records(kind, {name: new}))
                got = (found_old, found_new, streamed, counts)
                want = ([f"stays-{name}"], [f"moved-{name}"], [f"moved-{name}"], (1, 1))
                if got != want:
                    failures.append(f"{kind}.{name} after {how}: got {got}, want {want}")
                sm.delete_record(kind, f"moved-{name}")
                sm.delete_record(kind, f"stays-{name}")
        assert not failures, "stale index:\n" + "\n".join(failures)


class TestAtomicity:
    def test_bulk_upsert_the_store_refuses_mid_way_writes_nothing(
        self, storage_manager: StorageManager
    ) -> None:
        """The backend itself fails (not validation): armed through the documented test
        hook `StorageBackend.refuse_writes_for_testing`, the store refuses one record
        near the end of a batch; the batch must leave no record written or changed."""
        sm = storage_manager
        existing = sm.create_record(sample_record(LOG_ENTRY, "existing"))
        batch = [sample_record(LOG_ENTRY, f"bulk-{i:04d}") for i in range(BULK_SIZE)]
        batch[3] = replace(existing, identifier="changed", record_version=7)
        refused = LOG_ENTRY.key_of(batch[REFUSED_AT])
        if Capability.NO_ROLLBACK in sm.capabilities:
            pytest.xfail(
                f"backend {sm.backend_name!r} declares {Capability.NO_ROLLBACK!r}: a bulk_upsert "
                "failing mid-way leaves the records before the failure written"
            )
        armed = sm.backend.refuse_writes_for_testing(LOG_ENTRY, refused)
        if not armed:
            pytest.fail(
                f"backend {sm.backend_name!r} does not implement the test hook "
                "StorageBackend.refuse_writes_for_testing, so bulk_upsert atomicity cannot be "
                f"checked: implement it, or declare Capability.NO_ROLLBACK if the store "
                "cannot roll back (see docs/writing-a-backend.md)"
            )
        with pytest.raises(StorageError) as err:
            sm.bulk_upsert(LOG_ENTRY, batch)
        assert not isinstance(err.value, ValidationError), err.value
        assert sm.get_log_entries() == [existing]
        assert sm.count_log_entries() == 1
        assert sm.get_log_entry("bulk-0000") is None
        assert sm.bulk_upsert(LOG_ENTRY, batch[:REFUSED_AT]) == REFUSED_AT  # works on
