"""The reverse run's source: a store (any backend) read back into Items, so the same
engine and verify code copy it into an Askar store in this project's layout.

Each kind is streamed with StorageManager.stream_records (records as stored, versions
and timestamps included); archived entries (when the backend keeps an archive) go back
verbatim under their own category and name.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import Any, TypeVar

from storage_core.interface import Capability
from storage_core.kinds import KINDS, KindSpec
from storage_core.manager import StorageManager
from webvh_storage_migrate.convert import Item, Job
from webvh_storage_migrate.legacy import Action, CategoryPlan

ARCHIVE_JOB = "askar_archive"
T = TypeVar("T")


class StoreSource:
    def __init__(self, manager: StorageManager, batch_size: int) -> None:
        self.manager = manager
        self.batch_size = batch_size
        self.has_archive = Capability.ARCHIVE in manager.capabilities
        self._by_category = {spec.category: spec for spec in KINDS.values()}

    def survey(self) -> dict[str, int]:
        counts = {spec.category: self.manager.count_records(spec) for spec in KINDS.values()}
        if self.has_archive:
            counts[ARCHIVE_JOB] = self.manager.archive_count()
        return {c: n for c, n in counts.items() if n > 0}

    def plans(self, counts: dict[str, int], only: tuple[str, ...] | None) -> list[CategoryPlan]:
        wanted = list(counts) if only is None else only
        return [
            CategoryPlan(
                category,
                Action.NATIVE if category in self._by_category else Action.ARCHIVE,
                counts.get(category, 0),
            )
            for category in wanted
        ]

    def jobs(self, plans: list[CategoryPlan]) -> list[Job]:
        jobs = []
        for plan in plans:
            spec = self._by_category.get(plan.category)
            jobs.append(Job(plan, self._records(spec) if spec else self._archived))
        return jobs

    def rewind(self) -> None:
        """Nothing to forget between two passes: every pass streams the store afresh."""

    def _records(self, spec: KindSpec[Any]) -> Callable[[], Iterator[list[Item]]]:
        def chunks() -> Iterator[list[Item]]:
            stream = self.manager.stream_records(spec, batch_size=self.batch_size)
            items = (
                Item(spec.category, spec.key_of(r), spec, r, keep_version=True) for r in stream
            )
            yield from _batched(stream, items, self.batch_size)

        return chunks

    def _archived(self) -> Iterator[list[Item]]:
        if not self.has_archive:
            return
        stream = self.manager.archive_stream(None, batch_size=self.batch_size)
        items = (Item(e.category, e.name, archive=e) for e in stream)
        yield from _batched(stream, items, self.batch_size)


def _batched(source: Iterator[Any], items: Iterator[T], size: int) -> Iterator[list[T]]:
    """`items` (made from `source`) in lists of `size`; `source` is closed at the end or
    when the caller stops early, so a server-side cursor is never left open."""
    try:
        batch: list[T] = []
        for item in items:
            batch.append(item)
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch
    finally:
        if isinstance(source, Generator):
            source.close()
