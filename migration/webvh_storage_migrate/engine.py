"""Batching, the unchanged check and the writes: the migration loop itself.

Per batch: one "any of these keys" query tells what the target already holds; only new
or changed records and archive entries are written, each kind in one transaction
(StorageManager.bulk_upsert), retried row by row when validation refuses the batch.
Conversion is deterministic and writes are upserts, so a run killed at any point is
completed by simply running it again.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Protocol

from storage_core.codec import record_digest, utcnow
from storage_core.errors import StorageError, ValidationError
from storage_core.interface import ArchivedEntry
from storage_core.kinds import LOG_ENTRY, KindSpec
from storage_core.manager import StorageManager
from storage_core.validation import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    validate_key,
    validate_record,
    validate_records,
)
from webvh_storage_migrate.convert import Item, Job, location_of
from webvh_storage_migrate.legacy import Action
from webvh_storage_migrate.report import CategoryStats, Progress, RejectsFile


class Archive(Protocol):
    """Where archived entries go: a StorageManager whose backend has the archive
    capability, or (reverse runs) the raw Askar store (askar_reader.AskarStore)."""

    def archive_get(self, category: str, names: Sequence[str]) -> dict[str, ArchivedEntry]: ...
    def archive_upsert(self, entries: Sequence[ArchivedEntry]) -> int: ...
    def archive_count(self, category: str | None = None) -> int: ...


def align_unknown(spec: KindSpec[Any], source: Any, target: Any) -> Any:
    """Take the target's timestamps where the source has none to give (e.g. a legacy
    resource without proof.created): those were set when the row was first written."""
    if not spec.timestamps or target is None:
        return source
    changes = {}
    for name in ("created_at", "updated_at"):
        if getattr(source, name) is None:
            changes[name] = getattr(target, name)
    return replace(source, **changes) if changes else source


def target_is_newer(spec: KindSpec[Any], source: Any, target: Any, *, keep_version: bool) -> bool:
    """The going-live guard: True when the target's (differing) record was written after
    the migration, so copying the source over it would roll it back. A record in this
    project's layout: the target's record_version is higher. A legacy conversion (which
    the migration writes at version 1): the target's record_version is above 1 (someone
    wrote it since), or its DID log extends the legacy log."""
    if keep_version:
        return bool(target.record_version > source.record_version)
    if target.record_version > 1:
        return True
    if spec is LOG_ENTRY:
        theirs, ours = target.logs, source.logs
        return len(theirs) > len(ours) and theirs[: len(ours)] == ours
    return False


KEPT_NEWER = "kept-newer: the target's record is newer (written after the migration); left as is"


def same_record(spec: KindSpec[Any], source: Any, target: Any, *, with_version: bool) -> bool:
    source = align_unknown(spec, source, target)
    return record_digest(spec, source, include_version=with_version) == record_digest(
        spec, target, include_version=with_version
    )


class RecordTarget:
    """Records of every kind, through the StorageManager of the target store."""

    def __init__(self, manager: StorageManager) -> None:
        self.manager = manager

    def existing(self, spec: KindSpec[Any], keys: Sequence[str]) -> dict[str, Any]:
        if not keys:
            return {}
        rows = self.manager.list_records(spec, {spec.key: list(keys)})
        return {spec.key_of(row): row for row in rows}

    def write(self, spec: KindSpec[Any], records: Sequence[Any]) -> dict[int, str]:
        """Write in one transaction; if validation refuses the batch, write row by row
        so a bad row rejects only itself. Returns {position: reason} of refused rows."""
        if not records:
            return {}
        try:
            self.manager.bulk_upsert(spec, records)
            return {}
        except ValidationError:
            pass
        refused: dict[int, str] = {}
        for position, record in enumerate(records):
            try:
                self.manager.bulk_upsert(spec, [record])
            except ValidationError as exc:
                refused[position] = f"failed validation: {exc}"
        return refused

    def count(self, spec: KindSpec[Any]) -> int:
        return self.manager.count_records(spec)


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
        archive: Archive | None,
        rejects: RejectsFile,
        progress: Progress,
        *,
        dry_run: bool = False,
        strict: bool = False,
        overwrite_newer: bool = False,
        max_payload: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        self.records = records  # None: nothing to compare with (dry run, no schema yet)
        self.archive = archive
        self.rejects = rejects
        self.progress = progress
        self.dry_run = dry_run
        self.strict = strict
        self.overwrite_newer = overwrite_newer
        self.max_payload = max_payload
        self._empty_kinds: dict[str, bool] = {}
        self._verbatim: Callable[[Item], ArchivedEntry | None] | None = None
        #: Entries rejected only when written (validation, a taken location): verify
        #: treats them as rejected too. (category, name) -> their archive copy.
        self.late_rejects: dict[tuple[str, str], ArchivedEntry | None] = {}

    def run(self, jobs: Iterable[Job], into: list[CategoryStats]) -> None:
        with collector_between_batches():
            for job in jobs:
                stats = CategoryStats(job.category, job.plan.action.value, total=job.plan.total)
                into.append(stats)
                self.run_job(job, stats)

    def run_job(self, job: Job, stats: CategoryStats) -> None:
        started = time.monotonic()
        self.progress.start(stats)
        self._verbatim = job.verbatim
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
        except KeyboardInterrupt:
            stats.interrupted = True
            raise
        finally:
            stats.seconds = time.monotonic() - started
            self.progress.finish()

    # --- one batch ------------------------------------------------------------------------
    def process(self, items: list[Item], stats: CategoryStats) -> None:
        stats.read += len(items)
        by_spec: dict[str, tuple[KindSpec[Any], list[Item]]] = {}
        for item in items:
            if item.reject is None and item.is_record and item.spec is not None:
                try:
                    validate_key(item.spec, item.spec.key_of(item.record))
                    by_spec.setdefault(item.spec.name, (item.spec, []))[1].append(item)
                except ValidationError as exc:
                    item.reject = f"failed validation: {exc}"
            if item.reject is not None:
                self._reject(item, stats)
        written: set[int] = set()
        for spec, group in by_spec.values():
            written |= self._write_records(spec, group, stats)
        written |= self._write_archive([i for i in items if i.archive is not None])
        for item in items:
            if item.reject is not None:
                if item.archive is not None:
                    stats.archived += 1
                continue
            if item.kept_newer:
                stats.kept_newer += 1
                stats.note(KEPT_NEWER)
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

    def _reject(self, item: Item, stats: CategoryStats, *, late: bool = False) -> None:
        """Count and file a rejected entry; one rejected only when written is archived
        verbatim here (conversion rejects carry their copy already)."""
        if late:
            if item.archive is None and self._verbatim is not None:
                item.archive = self._verbatim(item)
            self.late_rejects[(item.category, item.name)] = item.archive
        stats.rejected += 1
        self.rejects.add(item.category, item.name, item.reject or "")
        if self.strict:
            raise StrictStop(item.category, item.name, item.reject or "")

    def _write_records(
        self, spec: KindSpec[Any], group: list[Item], stats: CategoryStats
    ) -> set[int]:
        existing = {}
        if self.records is not None and self._may_hold(spec):
            if spec is LOG_ENTRY:
                group = self._refuse_taken_locations(group, stats)
            existing = self.records.existing(spec, [spec.key_of(i.record) for i in group])
        pending: list[tuple[Item, Any]] = []
        for item in group:
            old = existing.get(spec.key_of(item.record))
            if old is not None:
                if same_record(spec, item.record, old, with_version=item.keep_version):
                    continue
                if not self.overwrite_newer and target_is_newer(
                    spec, item.record, old, keep_version=item.keep_version
                ):
                    item.kept_newer = True
                    continue
            pending.append((item, self._prepared(spec, item, old)))
        if self.dry_run or self.records is None:
            refused = self._validate(spec, [rec for _, rec in pending])
        else:
            refused = self.records.write(spec, [rec for _, rec in pending])
        done: set[int] = set()
        for position, (item, _) in enumerate(pending):
            if position in refused:
                item.reject = refused[position]
                self._reject(item, stats, late=True)
            else:
                done.add(id(item))
        return done

    def _refuse_taken_locations(self, group: list[Item], stats: CategoryStats) -> list[Item]:
        """Reject logs whose DID location the target already gives another scid (e.g.
        a DID the new server created there); returns the others."""
        assert self.records is not None
        identifiers = sorted({i.record.identifier for i in group})
        held = self.records.manager.list_records(LOG_ENTRY, {"identifier": identifiers})
        taken = {location_of(log): log.scid for log in held}
        kept = []
        for item in group:
            location = location_of(item.record)
            other = taken.get(location)
            if other is None or other == item.record.scid:
                kept.append(item)
                continue
            item.reject = (
                f"second SCID {item.record.scid!r} at location {location!r:.300}, "
                f"already taken by scid {other!r} in the target"
            )
            self._reject(item, stats, late=True)
        return kept

    def _may_hold(self, spec: KindSpec[Any]) -> bool:
        """False when the kind was empty when this run first met it: every key reaches the
        target once per run (duplicates are settled in conversion), so there is nothing
        to look up and a fresh migration saves one query per batch."""
        if self.records is None:
            return False
        if spec.name not in self._empty_kinds:
            self._empty_kinds[spec.name] = self.records.count(spec) == 0
        return not self._empty_kinds[spec.name]

    @staticmethod
    def _prepared(spec: KindSpec[Any], item: Item, old: Any) -> Any:
        """The record to write: as stored for this project's layout; for a legacy
        conversion, version 1 when new, else the target's version + 1."""
        record = align_unknown(spec, item.record, old)
        if item.keep_version or old is None:
            return record
        return replace(record, record_version=old.record_version + 1)

    def _validate(self, spec: KindSpec[Any], records: list[Any]) -> dict[int, str]:
        """Each refused record's position and why: the batch is checked at once (the
        common case: none), record by record only to name every refusal."""
        now = utcnow()
        try:
            validate_records(spec, records, max_payload=self.max_payload, now=now)
            return {}
        except ValidationError:
            pass
        refused = {}
        for position, record in enumerate(records):
            try:
                validate_record(spec, record, max_payload=self.max_payload, now=now)
            except ValidationError as exc:
                refused[position] = f"failed validation: {exc}"
        return refused

    def _write_archive(self, items: list[Item]) -> set[int]:
        """Write the archive entries that are new or whose digest (value and tags)
        differs from the target's; returns the ids of those items."""
        if not items:
            return set()
        if self.archive is None:
            if self.dry_run:
                return {id(i) for i in items}
            raise StorageError("entries to archive but the target has no archive")
        by_category: dict[str, list[tuple[Item, ArchivedEntry]]] = {}
        for item in items:
            if item.archive is not None:
                by_category.setdefault(item.archive.category, []).append((item, item.archive))
        changed: list[tuple[Item, ArchivedEntry]] = []
        for category, group in by_category.items():
            known = self.archive.archive_get(category, [entry.name for _, entry in group])
            for item, entry in group:
                old = known.get(entry.name)
                if old is None or old.digest != entry.digest:
                    changed.append((item, entry))
        if changed and not self.dry_run:
            self.archive.archive_upsert([entry for _, entry in changed])
        return {id(item) for item, _ in changed}
