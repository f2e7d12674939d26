"""The reverse direction: a SQL store back into an Askar store in this project's layout.

Jobs stream each kind with StorageManager.stream_records (records as stored, versions
and timestamps included) and the askar_archive rows verbatim, so the same engine and
verify code run in both directions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing

from storage_core.kinds import KINDS, KindSpec
from storage_core.manager import StorageManager
from webvh_storage_migrate.items import Item
from webvh_storage_migrate.jobs import Job
from webvh_storage_migrate.layout_detect import Action, CategoryPlan
from webvh_storage_migrate.targets import SqlArchive

ARCHIVE_JOB = "askar_archive"


class SqlSource:
    def __init__(
        self, manager: StorageManager, archive: SqlArchive | None, batch_size: int
    ) -> None:
        self.manager = manager
        self.archive = archive
        self.batch_size = batch_size

    def survey(self) -> dict[str, int]:
        counts = {spec.category: self.manager.count_records(spec) for spec in KINDS.values()}
        if self.archive is not None:
            counts[ARCHIVE_JOB] = self.archive.count(None)
        return {c: n for c, n in counts.items() if n > 0}

    def plans(self, counts: dict[str, int], only: list[str] | None) -> list[CategoryPlan]:
        wanted = list(counts) if only is None else only
        by_category = {spec.category: spec for spec in KINDS.values()}
        plans = []
        for category in wanted:
            action = Action.NATIVE if category in by_category else Action.ARCHIVE
            plans.append(CategoryPlan(category, action, counts.get(category, 0)))
        return plans

    def jobs(self, plans: list[CategoryPlan]) -> list[Job]:
        by_category = {spec.category: spec for spec in KINDS.values()}
        jobs = []
        for plan in plans:
            spec = by_category.get(plan.category)
            chunks = self._records(spec) if spec else self._archive_rows()
            jobs.append(Job(plan, chunks))
        return jobs

    def _records(self, spec: KindSpec) -> Callable[[], Iterator[list[Item]]]:
        def chunks() -> Iterator[list[Item]]:
            stream = self.manager.stream_records(spec, batch_size=self.batch_size)
            items = (
                Item(spec.category, spec.key_of(r), spec, r, keep_version=True) for r in stream
            )
            yield from _batched(stream, items, self.batch_size)

        return chunks

    def _archive_rows(self) -> Callable[[], Iterator[list[Item]]]:
        def chunks() -> Iterator[list[Item]]:
            if self.archive is None:
                return
            rows = self.archive.rows()
            items = (Item(row.category, row.name, archive=row) for row in rows)
            yield from _batched(rows, items, self.batch_size)

        return chunks


def _batched(source: Iterator, items: Iterator[Item], size: int) -> Iterator[list[Item]]:
    """`items` (made from `source`) in lists of `size`; `source` is closed at the end or
    when the caller stops early, so a server-side cursor is never left open."""
    with closing(source):
        batch: list[Item] = []
        for item in items:
            batch.append(item)
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch
