"""Turn chunks of raw Askar entries into Items, per the category's plan.

Deterministic: the same entry always becomes the same record, which is what makes a
re-run (after a crash, or just twice) write nothing new.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from storage_core.codec import record_from_dict
from storage_core.errors import ValidationError
from storage_core.kinds import KindSpec
from storage_core.validation import MAX_INDEXED_BYTES, check_text
from webvh_storage_migrate import legacy
from webvh_storage_migrate.items import ArchiveRow, Item, RawEntry, Rejected
from webvh_storage_migrate.layout_detect import Action, CategoryPlan
from webvh_storage_migrate.lookup import RunIndex
from webvh_storage_migrate.source import decode_json

NATIVE_PREFIX = "webvh:"
TagFetcher = Callable[[str, str], dict[str, str] | None]


def archive_row(entry: RawEntry, tags: dict[str, str] | None = None) -> ArchiveRow:
    """The entry verbatim; rejects values that a SQL text column cannot hold exactly."""
    for what, text in (("category", entry.category), ("name", entry.name)):
        try:
            check_text(what, text, max_bytes=MAX_INDEXED_BYTES)
        except ValidationError as exc:
            raise Rejected(f"cannot be archived: {exc}") from None
    try:
        text = entry.value.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected("value is not UTF-8 text; cannot be archived verbatim") from None
    if "\x00" in text:
        raise Rejected("value contains NUL; cannot be archived verbatim")
    return ArchiveRow(entry.category, entry.name, text, dict(tags or entry.tags or {}))


class Converter:
    def __init__(self, index: RunIndex, fetch_tags: TagFetcher | None = None) -> None:
        self.index = index
        self.fetch_tags = fetch_tags

    def convert(self, plan: CategoryPlan, chunk: list[RawEntry]) -> list[Item]:
        if plan.action is Action.ARCHIVE:
            items = [self._archived(entry, plan.reason) for entry in chunk]
        elif plan.action is Action.NATIVE:
            assert plan.spec is not None
            items = [self._native(plan.spec, entry) for entry in chunk]
        elif plan.category in legacy.BY_CLIENT_SCID:
            items = self._by_client(plan.category, chunk)
        else:
            items = [self._by_name(plan.category, entry) for entry in chunk]
            if plan.category == "logEntries":
                self.index.add_clients((i.name, i.record.scid) for i in items if i.is_record)
        self._claim_keys(items)
        return items

    def index_clients(self, chunk: list[RawEntry]) -> None:
        """Only record client_id -> scid for the convertible logs of a chunk."""
        items = [self._by_name("logEntries", entry) for entry in chunk]
        self.index.add_clients((i.name, i.record.scid) for i in items if i.is_record)

    # --- per layout -----------------------------------------------------------------
    def _archived(self, entry: RawEntry, reason: str) -> Item:
        try:
            return Item(entry.category, entry.name, archive=archive_row(entry), note=reason)
        except Rejected as exc:
            return Item(entry.category, entry.name, reject=exc.reason)

    def _native(self, spec: KindSpec, entry: RawEntry) -> Item:
        try:
            data = _parse(entry)
            if not isinstance(data, dict):
                raise Rejected(f"value must be a JSON object, got {type(data).__name__}")
            try:
                record = record_from_dict(spec, data)
            except (TypeError, ValueError) as exc:
                raise Rejected(f"value is not a {spec.record.__name__}: {exc}") from None
            if spec.key_of(record) != entry.name:
                raise Rejected(f"{spec.key} {spec.key_of(record)!r:.80} differs from entry name")
        except Rejected as exc:
            return Item(entry.category, entry.name, reject=exc.reason)
        return Item(entry.category, entry.name, spec, record, keep_version=True)

    def _by_name(self, category: str, entry: RawEntry) -> Item:
        spec, convert = legacy.BY_NAME[category]
        try:
            value = _parse(entry)
            record = convert(entry.name, value)
            archive = archive_row(entry) if legacy.is_lossy(category, value) else None
        except Rejected as exc:
            return Item(category, entry.name, reject=exc.reason)
        return Item(category, entry.name, spec, record, archive=archive)

    def _by_client(self, category: str, chunk: list[RawEntry]) -> list[Item]:
        spec, convert = legacy.BY_CLIENT_SCID[category]
        scids = self.index.scids_for([entry.name for entry in chunk])
        return [self._one_by_client(category, spec, convert, e, scids) for e in chunk]

    def _one_by_client(
        self,
        category: str,
        spec: KindSpec,
        convert: Callable[[str, Any], Any],
        entry: RawEntry,
        scids: dict[str, str],
    ) -> Item:
        try:
            value = _parse(entry)
            scid = scids.get(entry.name)
            if scid is not None:
                return Item(category, entry.name, spec, convert(scid, value))
            reason = f"no convertible logEntries entry for client_id {entry.name!r}"
            if category == "whois":
                raise Rejected(f"{reason}: cannot resolve the scid")
            tags = self.fetch_tags(category, entry.name) if self.fetch_tags else None
            return Item(
                category,
                entry.name,
                archive=archive_row(entry, tags),
                note="orphan: no convertible logEntries entry for its client_id; "
                "kept verbatim in askar_archive",
            )
        except Rejected as exc:
            return Item(category, entry.name, reject=exc.reason)

    def _claim_keys(self, items: list[Item]) -> None:
        """Reject a second entry converting to a key another entry already produced."""
        records = [i for i in items if i.is_record]
        if not records:
            return
        by_kind: dict[str, list[Item]] = {}
        for item in records:
            by_kind.setdefault(item.spec.name, []).append(item)
        for kind, group in by_kind.items():
            spec = group[0].spec
            owners = self.index.claim_keys(
                kind, [(spec.key_of(i.record), f"{i.category}/{i.name}") for i in group]
            )
            for item, owner in zip(group, owners, strict=True):
                if owner is None:
                    continue
                key = spec.key_of(item.record)
                if owner.startswith(NATIVE_PREFIX) and not item.keep_version:
                    # this project's layout is newer than the legacy one: it wins
                    item.record = None
                    reason = f"record superseded by {owner.split('/', 1)[0]}"
                    if item.archive is None:
                        item.skip = reason
                    else:
                        item.note = f"{reason}; legacy value kept in askar_archive"
                else:
                    item.reject = f"duplicate {spec.key} {key!r}: already produced by {owner}"


def _parse(entry: RawEntry) -> Any:
    try:
        return decode_json(entry.value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Rejected(f"invalid JSON: {str(exc)[:120]}") from None
