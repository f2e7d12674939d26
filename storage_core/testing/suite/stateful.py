"""Random sequences of operations compared, after every step, with a plain dict model.

Hypothesis finds orderings a hand-written test would not try (delete then upsert,
conditional writes on stale versions, pages after reinsertion) and shrinks a failure to
the shortest sequence. The machine is built around the per-test `storage_manager`
fixture and reprovisions the store before every example, so it needs no fixtures of its
own. It is bounded to stay fast on every backend.

A failure replays: Hypothesis saves the failing sequence in its example database (the
active profile's, by default `.hypothesis/examples` in the working directory) and tries
it first on the next run; the report prints the steps as Python calls, the
`@reproduce_failure` blob, and which records the store and the model disagree on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from storage_core.errors import ConflictError, DuplicateRecordError
from storage_core.kinds import LOG_ENTRY
from storage_core.manager import StorageManager
from storage_core.records import LogEntry
from storage_core.testing.samples import present

STATEFUL_SETTINGS = settings(
    # explicit: Hypothesis's own "ci" profile (picked when CI is set) has no database,
    # and a failure a backend author cannot replay costs them the most time
    database=DirectoryBasedExampleDatabase(".hypothesis/examples"),
    max_examples=15,
    stateful_step_count=25,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)

KEYS = st.sampled_from(["a", "b", "c", "d", "\u00e9", "k-1"])
DOMAINS = st.sampled_from(["one.example", "two.example"])
LOGS = st.lists(st.dictionaries(st.sampled_from(["z", "a", "m"]), st.integers(-5, 5)), max_size=3)
VERSIONS = st.none() | st.integers(0, 4)


@dataclass
class ModelRecord:
    data: dict[str, Any]
    version: int = 1


@dataclass
class Model:
    """What the store must contain: a dict keeps exactly the insertion-order rule."""

    records: dict[str, ModelRecord] = field(default_factory=dict)

    def rows(self, domain: str | None = None) -> list[tuple[str, dict[str, Any], int]]:
        return [
            (key, rec.data, rec.version)
            for key, rec in self.records.items()
            if domain is None or rec.data["domain"] == domain
        ]


def _entry(key: str, domain: str, logs: list[Any], deactivated: bool) -> LogEntry:
    return LogEntry(
        scid=key,
        did=f"did:webvh:{key}:{domain}",
        domain=domain,
        namespace="ns",
        identifier=key,
        logs=logs,
        deactivated=deactivated,
    )


def _data(record: LogEntry) -> dict[str, Any]:
    return {name: getattr(record, name) for name in LOG_ENTRY.data_fields}


def _rows(records: list[LogEntry]) -> list[tuple[str, dict[str, Any], int]]:
    return [(r.scid, _data(r), r.record_version) for r in records]


Rows = list[tuple[str, dict[str, Any], int]]


def disagreement(what: str, store: Rows, model: Rows) -> str:
    """Where the store and the model differ, readably: missing, unexpected, different
    records, and the order when only that differs."""
    got, want = {k: (d, v) for k, d, v in store}, {k: (d, v) for k, d, v in model}
    lines = [f"{what}: the store disagrees with the model"]
    lines += [f"  missing from the store: {k!r} {want[k]}" for k in want if k not in got]
    lines += [f"  not in the model: {k!r} {got[k]}" for k in got if k not in want]
    lines += [
        f"  {k!r}: store {got[k]}, model {want[k]}" for k in want if k in got and got[k] != want[k]
    ]
    if len(lines) == 1:
        lines.append(f"  order: store {[r[0] for r in store]}, model {[r[0] for r in model]}")
    return "\n".join(lines)


def build_machine(sm: StorageManager) -> type[RuleBasedStateMachine]:
    """A state machine class bound to one open store."""

    class StorageMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            sm.init_db(recreate=True)
            self.model = Model()

        @rule(key=KEYS, domain=DOMAINS, logs=LOGS, deactivated=st.booleans())
        def create(self, key: str, domain: str, logs: list[Any], deactivated: bool) -> None:
            record = _entry(key, domain, logs, deactivated)
            if key in self.model.records:
                with pytest.raises(DuplicateRecordError):
                    sm.create_record(record)
                return
            created = sm.create_record(record)
            self.model.records[key] = ModelRecord(_data(record))
            assert created.record_version == 1

        @rule(key=KEYS, logs=LOGS, deactivated=st.booleans(), expected=VERSIONS)
        def update(
            self, key: str, logs: list[Any], deactivated: bool, expected: int | None
        ) -> None:
            current = self.model.records.get(key)
            if expected == 0:
                expected = None  # 0 is not a valid update precondition
            if current is None:
                assert (
                    sm.update_log_entry(key, expected, logs=logs, deactivated=deactivated) is None
                )
                return
            if expected is not None and expected != current.version:
                with pytest.raises(ConflictError):
                    sm.update_log_entry(key, expected, logs=logs, deactivated=deactivated)
                return
            updated = present(
                sm.update_log_entry(key, expected, logs=logs, deactivated=deactivated)
            )
            current.data.update(logs=logs, deactivated=deactivated)
            current.version += 1
            assert (updated.record_version, _data(updated)) == (current.version, current.data)

        @rule(key=KEYS, domain=DOMAINS, logs=LOGS, expected=VERSIONS)
        def upsert(self, key: str, domain: str, logs: list[Any], expected: int | None) -> None:
            record = _entry(key, domain, logs, deactivated=False)
            current = self.model.records.get(key)
            actual = 0 if current is None else current.version
            if expected is not None and expected != actual:
                with pytest.raises(ConflictError):
                    sm.upsert_record(record, expected)
                return
            stored = sm.upsert_record(record, expected)
            if current is None:
                self.model.records[key] = current = ModelRecord(_data(record))
            else:
                current.data, current.version = _data(record), current.version + 1
            assert stored.record_version == current.version

        @rule(key=KEYS)
        def delete(self, key: str) -> None:
            assert sm.delete_log_entry(key) is (self.model.records.pop(key, None) is not None)

        @rule(key=KEYS)
        def get(self, key: str) -> None:
            found = sm.get_log_entry(key)
            expected = self.model.records.get(key)
            if expected is None:
                assert found is None
            else:
                found = present(found)
                assert (_data(found), found.record_version) == (expected.data, expected.version)

        @rule(
            domain=st.none() | DOMAINS,
            limit=st.none() | st.integers(0, 4),
            offset=st.integers(0, 5),
        )
        def page(self, domain: str | None, limit: int | None, offset: int) -> None:
            filters = None if domain is None else {"domain": domain}
            expected = self.model.rows(domain)
            end = None if limit is None else offset + limit
            page = _rows(sm.get_log_entries(filters, limit, offset))
            what = f"page(domain={domain!r}, limit={limit}, offset={offset})"
            assert page == expected[offset:end], disagreement(what, page, expected[offset:end])
            assert sm.count_log_entries(filters) == len(expected), f"{what}: count"

        @invariant()
        def store_matches_model(self) -> None:
            listed = _rows(sm.get_log_entries())
            assert listed == self.model.rows(), disagreement("list", listed, self.model.rows())
            streamed = _rows(list(sm.stream_records(LOG_ENTRY, batch_size=2)))
            assert streamed == self.model.rows(), disagreement(
                "stream", streamed, self.model.rows()
            )

    return StorageMachine


class TestStateful:
    def test_random_operation_sequences_match_a_model(
        self, storage_manager: StorageManager
    ) -> None:
        run_state_machine_as_test(build_machine(storage_manager), settings=STATEFUL_SETTINGS)
