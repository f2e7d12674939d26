"""Where converted data goes: records through StorageManager, verbatim rows to an archive.

Both sides answer "what do you already hold for these keys?" in one query per batch,
so the engine writes only new or changed rows and the verify pass compares digests.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any, Protocol

from storage_core.codec import record_digest
from storage_core.errors import StorageError, ValidationError
from storage_core.interface import ArchivedEntry, Capability
from storage_core.kinds import KindSpec
from storage_core.manager import StorageManager
from webvh_storage_migrate.items import ArchiveRow
from webvh_storage_migrate.source import AskarStore


def align_unknown(spec: KindSpec, source: Any, target: Any) -> Any:
    """Take the target's timestamps where the source has none to give (e.g. a legacy
    resource without proof.created): those were set when the row was first written."""
    if not spec.timestamps or target is None:
        return source
    changes = {}
    for name in ("created_at", "updated_at"):
        if getattr(source, name) is None:
            changes[name] = getattr(target, name)
    return replace(source, **changes) if changes else source


def same_record(spec: KindSpec, source: Any, target: Any, *, with_version: bool) -> bool:
    source = align_unknown(spec, source, target)
    return record_digest(spec, source, include_version=with_version) == record_digest(
        spec, target, include_version=with_version
    )


class RecordTarget:
    """Records of every kind, through the StorageManager of the target store."""

    def __init__(self, manager: StorageManager) -> None:
        self.manager = manager

    def existing(self, spec: KindSpec, keys: Sequence[str]) -> dict[str, Any]:
        if not keys:
            return {}
        rows = self.manager.list_records(spec, {spec.key: list(keys)})
        return {spec.key_of(row): row for row in rows}

    def write(self, spec: KindSpec, records: Sequence[Any]) -> dict[int, str]:
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

    def count(self, spec: KindSpec) -> int:
        return self.manager.count_records(spec)


def row_digest(value: str, tags: dict[str, str]) -> str:
    return ArchivedEntry("", "", value, tags).digest


class ArchiveTarget(Protocol):
    def existing(self, category: str, names: Sequence[str]) -> dict[str, str]: ...
    def write(self, rows: Sequence[ArchiveRow]) -> int: ...
    def count(self, category: str) -> int: ...


class SqlArchive:
    """The archive of a target backend with the archive capability, via its manager."""

    def __init__(self, manager: StorageManager) -> None:
        if Capability.ARCHIVE not in manager.capabilities:
            raise StorageError(
                f"target backend {manager.backend_name!r} cannot keep archived entries "
                f"(no {Capability.ARCHIVE!r} capability)"
            )
        self.manager = manager

    def existing(self, category: str, names: Sequence[str]) -> dict[str, str]:
        found = self.manager.archive_get(category, names)
        return {name: entry.digest for name, entry in found.items()}

    def write(self, rows: Sequence[ArchiveRow]) -> int:
        if not rows:
            return 0
        return self.manager.archive_upsert(
            [ArchivedEntry(r.category, r.name, r.value, r.tags) for r in rows]
        )

    def count(self, category: str | None) -> int:
        return self.manager.archive_count(category)

    def rows(self) -> Iterator[ArchiveRow]:
        for e in self.manager.archive_stream(None):
            yield ArchiveRow(e.category, e.name, e.value, dict(e.tags))


class AskarArchive:
    """Archived rows written back into an Askar store under their original category."""

    def __init__(self, store: AskarStore) -> None:
        self.store = store

    def existing(self, category: str, names: Sequence[str]) -> dict[str, str]:
        found = {}
        for name in names:
            entry = self.store.fetch(category, name)
            if entry is not None:
                found[name] = row_digest(entry.value.decode("utf-8", "replace"), entry.tags or {})
        return found

    def write(self, rows: Sequence[ArchiveRow]) -> int:
        self.store.put_many([(r.category, r.name, r.value, r.tags) for r in rows])
        return len(rows)

    def count(self, category: str) -> int:
        return self.store.count(category)
