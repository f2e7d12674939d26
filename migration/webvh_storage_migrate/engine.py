"""Batching, idempotent writes and reject handling: the migration loop itself.

Per batch: one "any of these keys" query tells what the target already holds; only new
or changed rows are written, in one transaction (StorageManager.bulk_upsert), retried
row by row when validation refuses the batch. Conversion is deterministic and writes
are upserts, so a run killed at any point is completed by simply running it again.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from storage_core.codec import utcnow
from storage_core.errors import ValidationError
from storage_core.kinds import KindSpec
from storage_core.validation import DEFAULT_MAX_PAYLOAD_BYTES, validate_key, validate_record
from webvh_storage_migrate.items import Item
from webvh_storage_migrate.jobs import Job
from webvh_storage_migrate.layout_detect import Action
from webvh_storage_migrate.progress import Progress
from webvh_storage_migrate.report import CategoryStats, RejectsFile
from webvh_storage_migrate.targets import (
    ArchiveTarget,
    RecordTarget,
    align_unknown,
    row_digest,
    same_record,
)


@contextmanager
def collector_between_batches() -> Iterator[None]:
    """Pause automatic garbage collection; the engine collects after each batch instead.

    A batch is tens of thousands of live containers (parsed logs) that reference counting
    frees when the batch ends. An automatic collection in mid-batch re-scans all of them
    for nothing: a fifth of the run time at 50k log entries. One young-generation
    collection per batch keeps memory bounded should anything build cycles.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class StrictStop(Exception):
    """--strict: the first bad entry ends the run."""

    def __init__(self, category: str, name: str, reason: str) -> None:
        super().__init__(f"{category}/{name}: {reason}")


class Engine:
    def __init__(
        self,
        records: RecordTarget | None,
        archive: ArchiveTarget | None,
        rejects: RejectsFile,
        progress: Progress,
        *,
        dry_run: bool = False,
        strict: bool = False,
        max_payload: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        self.records = records  # None: nothing to compare with (dry run, no schema yet)
        self.archive = archive
        self.rejects = rejects
        self.progress = progress
        self.dry_run = dry_run
        self.strict = strict
        self.max_payload = max_payload
        self._empty_kinds: dict[str, bool] = {}

    def run(self, jobs: Iterable[Job], into: list[CategoryStats]) -> None:
        with collector_between_batches():
            for job in jobs:
                stats = CategoryStats(job.category, job.plan.action.value, total=job.plan.total)
                into.append(stats)
                self.run_job(job, stats)

    def run_job(self, job: Job, stats: CategoryStats) -> None:
        started = time.monotonic()
        self.progress.start(stats)
        try:
            if job.plan.action is Action.SKIP:
                stats.read = stats.skipped = job.plan.total
                stats.notes[job.plan.reason] = job.plan.total
                return
            for items in job.chunks():
                self.process(items, stats)
                del items
                gc.collect(1)
                self.progress.advance()
        finally:
            stats.seconds = time.monotonic() - started
            self.progress.finish()

    # --- one batch ------------------------------------------------------------------------
    def process(self, items: list[Item], stats: CategoryStats) -> None:
        stats.read += len(items)
        for item in items:
            if item.reject is None and item.is_record:
                try:
                    validate_key(item.spec, item.spec.key_of(item.record))
                except ValidationError as exc:
                    item.reject = f"failed validation: {exc}"
            if item.reject is not None:
                self._reject(item, stats)
        written: set[int] = set()
        by_spec: dict[str, list[Item]] = {}
        for item in items:
            if item.reject is None and item.is_record:
                by_spec.setdefault(item.spec.name, []).append(item)
        for group in by_spec.values():
            written |= self._write_records(group[0].spec, group, stats)
        written |= self._write_archive([i for i in items if i.reject is None and i.archive])
        for item in items:
            if item.reject is not None:
                continue
            if item.skip is not None:
                stats.skipped += 1
                stats.note(item.skip)
                continue
            if item.archive is not None:
                stats.archived += 1
            if item.note:
                stats.note(item.note)
            if id(item) in written:
                stats.written += 1
            else:
                stats.unchanged += 1

    def _reject(self, item: Item, stats: CategoryStats) -> None:
        stats.rejected += 1
        self.rejects.add(item.category, item.name, item.reject or "")
        if self.strict:
            raise StrictStop(item.category, item.name, item.reject or "")

    def _write_records(self, spec: KindSpec, group: list[Item], stats: CategoryStats) -> set[int]:
        keys = [spec.key_of(i.record) for i in group]
        existing = self.records.existing(spec, keys) if self._may_hold(spec) else {}
        pending: list[tuple[Item, Any]] = []
        for item in group:
            old = existing.get(spec.key_of(item.record))
            if old is not None and same_record(
                spec, item.record, old, with_version=item.keep_version
            ):
                continue
            pending.append((item, self._prepared(spec, item, old)))
        if self.dry_run:
            refused = self._validate(spec, [rec for _, rec in pending])
        else:
            refused = self.records.write(spec, [rec for _, rec in pending])
        done: set[int] = set()
        for position, (item, _) in enumerate(pending):
            if position in refused:
                item.reject = refused[position]
                self._reject(item, stats)
            else:
                done.add(id(item))
        return done

    def _may_hold(self, spec: KindSpec) -> bool:
        """False when the kind was empty when this run first met it: every key reaches the
        target once per run (duplicates are settled in conversion), so there is nothing
        to look up and a fresh migration saves one query per batch."""
        if self.records is None:
            return False
        if spec.name not in self._empty_kinds:
            self._empty_kinds[spec.name] = self.records.count(spec) == 0
        return not self._empty_kinds[spec.name]

    @staticmethod
    def _prepared(spec: KindSpec, item: Item, old: Any) -> Any:
        """The record to write: as stored for this project's layout; for a legacy
        conversion, version 1 when new, else the target's version + 1."""
        record = align_unknown(spec, item.record, old)
        if item.keep_version or old is None:
            return record
        return replace(record, record_version=old.record_version + 1)

    def _validate(self, spec: KindSpec, records: list[Any]) -> dict[int, str]:
        now = utcnow()
        refused = {}
        for position, record in enumerate(records):
            try:
                validate_record(spec, record, max_payload=self.max_payload, now=now)
            except ValidationError as exc:
                refused[position] = f"failed validation: {exc}"
        return refused

    def _write_archive(self, items: list[Item]) -> set[int]:
        if not items:
            return set()
        if self.archive is None:
            if self.dry_run:
                return {id(i) for i in items}
            raise RuntimeError("entries to archive but the target has no archive")
        by_category: dict[str, list[Item]] = {}
        for item in items:
            by_category.setdefault(item.archive.category, []).append(item)
        changed: list[Item] = []
        for category, group in by_category.items():
            known = self.archive.existing(category, [i.archive.name for i in group])
            for item in group:
                row = item.archive
                if known.get(row.name) != row_digest(row.value, row.tags):
                    changed.append(item)
        if changed and not self.dry_run:
            self.archive.write([i.archive for i in changed])
        return {id(i) for i in changed}
