"""Compare what the source converts to with what the target holds, category by category.

Reuses the migration's jobs (same conversion) and the engine's batched key lookups, so
memory stays flat. Per category: counts, and an order-independent digest (a sum) of
every record's content digest (codec.record_digest: key order inside documents counts)
and every archive entry's (ArchivedEntry.digest) on each side; every missing or
differing row is listed (up to a cap) and any difference makes the run exit non-zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from storage_core.codec import record_digest
from storage_core.interface import ArchivedEntry
from storage_core.kinds import KINDS
from webvh_storage_migrate.convert import Item, Job
from webvh_storage_migrate.engine import Archive, RecordTarget, align_unknown, target_is_newer
from webvh_storage_migrate.legacy import Action
from webvh_storage_migrate.report import CategoryStats, Progress

MAX_LISTED = 200
_MOD = 1 << 256


class _Sum:
    """An order-independent digest of a set of digests (sum modulo 2**256)."""

    def __init__(self) -> None:
        self.value = 0

    def add(self, hex_digest: str) -> None:
        self.value = (self.value + int(hex_digest, 16)) % _MOD

    @property
    def hex(self) -> str:
        return f"{self.value:064x}"


class Verifier:
    def __init__(
        self,
        records: RecordTarget,
        archive: Archive | None,
        progress: Progress,
        *,
        late_rejects: Mapping[tuple[str, str], ArchivedEntry | None] | None = None,
        overwrite_newer: bool = False,
    ) -> None:
        self.records = records
        self.archive = archive
        self.progress = progress
        #: Entries the copy rejected only when writing them: rejected here too.
        self.late_rejects = late_rejects or {}
        self.overwrite_newer = overwrite_newer
        self.mismatches: list[dict[str, str]] = []
        self.mismatch_count = 0
        self.kind_counts: dict[str, int] = {}
        self.archive_counts: dict[str, int] = {}

    def run(self, jobs: Iterable[Job]) -> dict[str, Any]:
        categories: dict[str, dict[str, Any]] = {}
        for job in jobs:
            if job.plan.action is Action.SKIP:
                continue
            categories[job.category] = self._category(job)
        kinds = {}
        for name, source_count in self.kind_counts.items():
            target_count = self.records.count(KINDS[name])
            kinds[name] = {"source": source_count, "target": target_count}
            # more rows than the source gave: written by others (the new server, after
            # going live); reported, not a mismatch. Fewer: some are missing.
            if target_count < source_count:
                problem = f"target holds {target_count} rows, source {source_count}"
                self._mismatch(name, "*", problem)
        archives = {}
        for category, source_count in self.archive_counts.items():
            target_count = self.archive.archive_count(category) if self.archive else 0
            archives[category] = {"source": source_count, "target": target_count}
            if target_count != source_count:
                self._mismatch(
                    category, "*", f"archive holds {target_count} rows, source {source_count}"
                )
        return {
            "ok": self.mismatch_count == 0,
            "categories": categories,
            "kinds": kinds,
            "archive": archives,
            "mismatch_count": self.mismatch_count,
            "mismatches": self.mismatches,
        }

    def _category(self, job: Job) -> dict[str, Any]:
        stats = CategoryStats(job.category, "verify", total=job.plan.total)
        self.progress.start(stats)
        result: dict[str, Any] = {
            "source": 0,
            "matched": 0,
            "missing": 0,
            "different": 0,
            "rejected": 0,
            "kept_newer": 0,
        }
        source_sum, target_sum = _Sum(), _Sum()
        try:
            for items in job.chunks():
                stats.read += len(items)
                self._apply_late_rejects(items)
                self._records(items, result, source_sum, target_sum)
                self._archived(items, result, source_sum, target_sum)
                self.progress.advance()
        finally:
            self.progress.finish()
        result["source_digest"] = source_sum.hex
        result["target_digest"] = target_sum.hex
        return result

    def _apply_late_rejects(self, items: list[Item]) -> None:
        if not self.late_rejects:
            return
        for item in items:
            key = (item.category, item.name)
            if item.reject is None and key in self.late_rejects:
                item.reject = "rejected when written"
                item.record = None
                item.archive = self.late_rejects[key]

    def _records(self, items: list[Item], result: dict[str, Any], src: _Sum, dst: _Sum) -> None:
        result["rejected"] += sum(1 for i in items if i.reject is not None)
        good = [i for i in items if i.reject is None and i.is_record]
        if not good or good[0].spec is None:
            return
        spec = good[0].spec
        self.kind_counts[spec.name] = self.kind_counts.get(spec.name, 0) + len(good)
        result["source"] += len(good)
        existing = self.records.existing(spec, [spec.key_of(i.record) for i in good])
        for item in good:
            key = spec.key_of(item.record)
            target = existing.get(key)
            source = align_unknown(spec, item.record, target)
            mine = record_digest(spec, source, include_version=item.keep_version)
            src.add(mine)
            if target is None:
                result["missing"] += 1
                self._mismatch(item.category, item.name, f"{spec.name} {key!r} missing in target")
                continue
            theirs = record_digest(spec, target, include_version=item.keep_version)
            dst.add(theirs)
            if theirs == mine:
                result["matched"] += 1
            elif not self.overwrite_newer and target_is_newer(
                spec, source, target, keep_version=item.keep_version
            ):
                result["kept_newer"] += 1  # the going-live guard left it: not a mismatch
            else:
                result["different"] += 1
                self._mismatch(item.category, item.name, f"{spec.name} {key!r} differs")

    def _archived(self, items: list[Item], result: dict[str, Any], src: _Sum, dst: _Sum) -> None:
        by_category: dict[str, list[ArchivedEntry]] = {}
        for item in items:
            if item.archive is not None:  # rejected entries are archived verbatim too
                by_category.setdefault(item.archive.category, []).append(item.archive)
        for category, group in by_category.items():
            self.archive_counts[category] = self.archive_counts.get(category, 0) + len(group)
            known = (
                self.archive.archive_get(category, [e.name for e in group]) if self.archive else {}
            )
            for entry in group:
                mine = entry.digest
                src.add(mine)
                held = known.get(entry.name)
                theirs = None if held is None else held.digest
                if theirs is not None:
                    dst.add(theirs)
                if theirs == mine:
                    continue
                problem = "missing in the archive" if theirs is None else "archive entry differs"
                self._mismatch(entry.category, entry.name, problem)
                result["missing" if theirs is None else "different"] += 1

    def _mismatch(self, category: str, name: str, problem: str) -> None:
        self.mismatch_count += 1
        if len(self.mismatches) < MAX_LISTED:
            self.mismatches.append({"category": category, "name": name, "problem": problem})
