"""A job per source category: its plan and a way to stream its converted Items.

The engine and the verify pass take a list of jobs and never care whether the items
come from an Askar store (forward) or a SQL store (reverse).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from webvh_storage_migrate import legacy
from webvh_storage_migrate.askar_reader import ScanReader
from webvh_storage_migrate.convert import Converter
from webvh_storage_migrate.items import Item
from webvh_storage_migrate.layout_detect import (
    KNOWN,
    Action,
    CategoryPlan,
    plan_categories,
)
from webvh_storage_migrate.lookup import RunIndex
from webvh_storage_migrate.source import AskarStore

_LIGHT_TAGS = ("logEntries", "witnessFile", "whois")  # big categories: tags are not kept


def _keeps_tags(category: str) -> bool:
    return category not in _LIGHT_TAGS


@dataclass
class Job:
    plan: CategoryPlan
    chunks: Callable[[], Iterator[list[Item]]]

    @property
    def category(self) -> str:
        return self.plan.category


class AskarSource:
    """Jobs over an Askar store in either layout (legacy server or this project's)."""

    def __init__(self, store: AskarStore, reader: ScanReader, index: RunIndex) -> None:
        self.store = store
        self.reader = reader
        self.index = index
        self.converter = Converter(index, fetch_tags=self._tags_of)
        self.discovered = False
        self._clients_indexed = False

    def _tags_of(self, category: str, name: str) -> dict[str, str] | None:
        entry = self.store.fetch(category, name)
        return None if entry is None else entry.tags

    def survey(self) -> dict[str, int]:
        """Entries per category. Counts known categories; scans only if some are unknown."""
        counts = self.store.count_many([*KNOWN, None])
        total = counts.pop(None)
        if sum(counts.values()) < total:
            self.discovered = True
            counts = self.store.discover_categories()
        return {c: n for c, n in counts.items() if n > 0}

    def plans(self, counts: dict[str, int], only: list[str] | None) -> list[CategoryPlan]:
        return plan_categories(counts, only)

    def jobs(self, plans: list[CategoryPlan]) -> list[Job]:
        """A job per plan; the reader starts streaming their categories right away."""
        read = [p.category for p in plans if p.action is not Action.SKIP]
        wanted = [(category, _keeps_tags(category)) for category in read]
        if self._needs_client_index(plans):
            wanted.insert(0, ("logEntries", False))  # read first by build_client_index
        self.reader.expect(wanted)
        return [Job(plan, self._chunker(plan)) for plan in plans]

    def _needs_client_index(self, plans: list[CategoryPlan]) -> bool:
        categories = {p.category for p in plans}
        return (
            not self._clients_indexed
            and "logEntries" not in categories
            and any(c in legacy.BY_CLIENT_SCID for c in categories)
        )

    def _chunker(self, plan: CategoryPlan) -> Callable[[], Iterator[list[Item]]]:
        def chunks() -> Iterator[list[Item]]:
            if plan.action is Action.SKIP:
                return
            if plan.category in legacy.BY_CLIENT_SCID and not self._clients_indexed:
                self.build_client_index()
            with_tags = _keeps_tags(plan.category)
            for raw in self.reader.chunks(plan.category, with_tags=with_tags):
                yield self.converter.convert(plan, raw)
            if plan.category == "logEntries":
                self._clients_indexed = True

        return chunks

    def build_client_index(self) -> None:
        """Fill client_id -> scid from logEntries, writing nothing: for runs that take
        witnessFile/whois without logEntries (e.g. `--categories whois`)."""
        for raw in self.reader.chunks("logEntries", with_tags=False):
            self.converter.index_clients(raw)
        self._clients_indexed = True
