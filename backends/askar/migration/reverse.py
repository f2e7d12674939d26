"""The reverse direction: a SQL store back into an Askar store in this project's layout.

Jobs stream each kind with StorageManager.stream_records (records as stored, versions
and timestamps included) and the askar_archive rows verbatim, so the same engine and
verify code run in both directions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing

from backends.askar.migration.items import Item
from backends.askar.migration.jobs import Job
from backends.askar.migration.layout_detect import Action, CategoryPlan
from backends.askar.migration.targets import SqlArchive
from storage_core.kinds import KINDS, KindSpec
from storage_core.manager import StorageManager

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
            counts[ARCHIVE_JOB] = self.archive.backend.count_archive(None)
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
            batch: list[Item] = []
            stream = self.manager.stream_records(spec, batch_size=self.batch_size)
            with closing(stream):
                for record in stream:
                    key = spec.key_of(record)
                    batch.append(Item(spec.category, key, spec, record, keep_version=True))
                    if len(batch) >= self.batch_size:
                        yield batch
                        batch = []
            if batch:
                yield batch

        return chunks

    def _archive_rows(self) -> Callable[[], Iterator[list[Item]]]:
        def chunks() -> Iterator[list[Item]]:
            if self.archive is None:
                return
            batch: list[Item] = []
            rows = self.archive.rows()
            with closing(rows):
                for row in rows:
                    batch.append(Item(row.category, row.name, archive=row))
                    if len(batch) >= self.batch_size:
                        yield batch
                        batch = []
            if batch:
                yield batch

        return chunks
