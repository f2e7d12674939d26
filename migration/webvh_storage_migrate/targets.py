"""Where converted data goes: records through StorageManager, verbatim rows to an archive.

Both sides answer "what do you already hold for these keys?" in one query per batch,
so the engine writes only new or changed rows and the verify pass compares digests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any, Protocol

import orjson

from storage_core.codec import record_digest
from storage_core.errors import StorageError, ValidationError
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
    data = orjson.dumps([value, sorted(tags.items())])
    return hashlib.sha256(data).hexdigest()


class ArchiveTarget(Protocol):
    def existing(self, category: str, names: Sequence[str]) -> dict[str, str]: ...
    def write(self, rows: Sequence[ArchiveRow]) -> int: ...
    def count(self, category: str) -> int: ...


class SqlArchive:
    """The `askar_archive` table of the SQL backend.

    Its API has no lookup by name, so the digests of one category's archived rows are
    loaded once, when that category is first compared (memory grows with the archive
    of that one category only, not with the store).
    """

    def __init__(self, backend: Any) -> None:
        missing = [
            m
            for m in ("bulk_upsert_archive", "iter_archive", "count_archive")
            if not hasattr(backend, m)
        ]
        if missing:
            raise StorageError(
                f"target backend {getattr(backend, 'name', '?')!r} has no askar_archive "
                f"support (missing {', '.join(missing)}); migrate into the sqlalchemy backend"
            )
        self.backend = backend
        self._digests: dict[str, dict[str, str]] = {}

    def _category(self, category: str) -> dict[str, str]:
        if category not in self._digests:
            self._digests[category] = {
                name: row_digest(value, tags or {})
                for _cat, name, value, tags in self.backend.iter_archive(category)
            }
        return self._digests[category]

    def existing(self, category: str, names: Sequence[str]) -> dict[str, str]:
        known = self._category(category)
        return {n: known[n] for n in names if n in known}

    def write(self, rows: Sequence[ArchiveRow]) -> int:
        if not rows:
            return 0
        self.backend.bulk_upsert_archive([(r.category, r.name, r.value, r.tags) for r in rows])
        for r in rows:
            if r.category in self._digests:
                self._digests[r.category][r.name] = row_digest(r.value, r.tags)
        return len(rows)

    def count(self, category: str) -> int:
        return self.backend.count_archive(category)

    def rows(self) -> Iterator[ArchiveRow]:
        for category, name, value, tags in self.backend.iter_archive(None):
            yield ArchiveRow(category, name, value, dict(tags or {}))


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
