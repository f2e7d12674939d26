"""The forward run's middle: Askar entries in, Items out, one job per category.

An Item is what one source entry becomes: a record, a verbatim archive entry, or a
reason (reject or skip). The engine, the dry run and the verify pass all consume the
same Items, so the three agree. Conversion is deterministic: the same entry always
becomes the same record, which is what makes a re-run (after a crash, or just twice)
write nothing new.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from storage_core.codec import record_from_dict
from storage_core.errors import ValidationError
from storage_core.interface import ArchivedEntry
from storage_core.kinds import LOG_ENTRY, KindSpec
from storage_core.records import LogEntry
from storage_core.validation import MAX_INDEXED_BYTES, check_text
from webvh_storage_askar.layout import entry_name
from webvh_storage_migrate import legacy
from webvh_storage_migrate.askar_reader import AskarStore, RawEntry, ScanReader
from webvh_storage_migrate.exact_json import NotExactJson, loads_exact
from webvh_storage_migrate.legacy import KNOWN, Action, CategoryPlan, Rejected, plan_categories
from webvh_storage_migrate.verbatim import to_archive

NATIVE_PREFIX = "webvh:"
_LIGHT_TAGS = ("logEntries", "witnessFile", "whois")  # big categories: tags are not kept
_CHUNK = 500  # SQLite host parameters per IN (...) query
TagFetcher = Callable[[str, str], dict[str, str] | None]


@dataclass(slots=True)
class Item:
    """The outcome for one source entry: a record and/or an archive entry, or a reject
    or skip reason.

    `keep_version` marks records read in this project's own layout, whose
    record_version is part of their content and is written as stored.
    """

    category: str
    name: str
    spec: KindSpec[Any] | None = None
    record: Any = None
    archive: ArchivedEntry | None = None
    reject: str | None = None
    skip: str | None = None  # nothing to write, for this reason (not an error)
    note: str | None = None
    keep_version: bool = False
    kept_newer: bool = False  # the target's record is newer: left as it is
    raw: RawEntry | None = None  # the entry as read (archived verbatim if rejected)

    @property
    def is_record(self) -> bool:
        return self.record is not None and self.reject is None and self.skip is None


@dataclass
class Job:
    """A source category: its plan and a way to stream its Items, chunk by chunk. The
    engine and verify never care whether they come from Askar (forward) or not."""

    plan: CategoryPlan
    chunks: Callable[[], Iterator[list[Item]]]
    #: The verbatim archive copy of a rejected item's source entry (None: not possible).
    verbatim: Callable[[Item], ArchivedEntry | None] | None = None

    @property
    def category(self) -> str:
        return self.plan.category


def archive_entry(entry: RawEntry, tags: dict[str, str] | None = None) -> ArchivedEntry:
    """The entry verbatim; rejects values that a text column cannot hold exactly."""
    for what, text in (("category", entry.category), ("name", entry.name)):
        try:
            check_text(what, text, max_bytes=MAX_INDEXED_BYTES)
        except ValidationError as exc:
            raise Rejected(f"cannot be archived: {exc}") from None
    try:
        text = entry.value.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected("value is not UTF-8 text; archived as base64") from None
    if "\x00" in text:
        raise Rejected("value contains NUL; archived as base64")
    return ArchivedEntry(entry.category, entry.name, text, dict(tags or entry.tags or {}))


class RunIndex:
    """A run-scoped, disk-backed index: client_id -> scid, and the keys already produced.

    witnessFile and whois are keyed by client_id ("ns:id") while their records are keyed
    by scid, which only the client's log holds. Keeping that map (and the set of keys
    seen, to catch two entries converting to one key) in a temporary SQLite file keeps
    memory flat however many DIDs the store holds.
    """

    def __init__(self) -> None:
        fd, self.path = tempfile.mkstemp(prefix="migrate-askar-", suffix=".sqlite")
        os.close(fd)
        self._db = sqlite3.connect(self.path)
        self._db.executescript(
            """
            PRAGMA journal_mode=OFF;
            PRAGMA synchronous=OFF;
            CREATE TABLE client_scid (client_id TEXT PRIMARY KEY, scid TEXT NOT NULL);
            CREATE TABLE seen (kind TEXT, key TEXT, origin TEXT, PRIMARY KEY (kind, key));
            """
        )

    def add_clients(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._db.executemany("INSERT OR REPLACE INTO client_scid VALUES (?, ?)", pairs)

    def scids_for(self, client_ids: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(client_ids), _CHUNK):
            part = list(client_ids[start : start + _CHUNK])
            marks = ",".join("?" * len(part))
            rows = self._db.execute(
                f"SELECT client_id, scid FROM client_scid WHERE client_id IN ({marks})", part
            )
            found.update(rows)
        return found

    def claim_keys(self, kind: str, keyed: Sequence[tuple[str, str]]) -> list[str | None]:
        """Claim each (key, origin) in order; per position, None if this entry now owns
        the key, else the origin (category/name) of the entry that took it first."""
        earlier: dict[str, str] = {}
        for start in range(0, len(keyed), _CHUNK):
            keys = [k for k, _ in keyed[start : start + _CHUNK]]
            marks = ",".join("?" * len(keys))
            rows = self._db.execute(
                f"SELECT key, origin FROM seen WHERE kind = ? AND key IN ({marks})", [kind, *keys]
            )
            earlier.update(rows)
        result: list[str | None] = []
        fresh: list[tuple[str, str, str]] = []
        for key, origin in keyed:
            if key in earlier:
                result.append(earlier[key])
            else:
                earlier[key] = origin
                fresh.append((kind, key, origin))
                result.append(None)
        self._db.executemany("INSERT INTO seen VALUES (?, ?, ?)", fresh)
        return result

    def reset_seen(self) -> None:
        """Forget claimed keys (a second pass over the same source, e.g. verify)."""
        self._db.execute("DELETE FROM seen")

    def close(self) -> None:
        self._db.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


class Converter:
    """Chunks of raw entries -> Items, per the category's plan."""

    def __init__(self, index: RunIndex, fetch_tags: TagFetcher | None = None) -> None:
        self.index = index
        self.fetch_tags = fetch_tags

    def convert(self, plan: CategoryPlan, chunk: list[RawEntry]) -> list[Item]:
        if plan.action is Action.ARCHIVE:
            items = [self._archived(entry, plan.reason) for entry in chunk]
        elif plan.action is Action.NATIVE:
            spec = plan.spec
            assert spec is not None
            items = [self._native(spec, entry) for entry in chunk]
        elif plan.category in legacy.BY_CLIENT_SCID:
            items = self._by_client(plan.category, chunk)
        else:
            items = [self._by_name(plan.category, entry) for entry in chunk]
        if plan.category == "logEntries":
            self._claims_then_clients(items)
        else:
            self._claim_keys(items)
            self._claim_locations(items)
        for item, entry in zip(items, chunk, strict=True):
            item.raw = entry
            if item.reject is not None and item.archive is None:
                item.archive = self.verbatim(item)
        return items

    def verbatim(self, item: Item) -> ArchivedEntry | None:
        """The source entry of `item` exactly (tags fetched when the scan skipped them),
        for the archive; None when its category or name cannot be an archive key."""
        entry = item.raw
        if entry is None:
            return None
        for what, text in (("category", entry.category), ("name", entry.name)):
            try:
                check_text(what, text, max_bytes=MAX_INDEXED_BYTES)
            except ValidationError:
                return None
        tags = entry.tags
        if tags is None and self.fetch_tags is not None:
            tags = self.fetch_tags(entry.category, entry.name)
        return to_archive(entry.category, entry.name, entry.value, tags)

    def index_clients(self, chunk: list[RawEntry]) -> None:
        """Only record client_id -> scid for the convertible logs of a chunk."""
        self._claims_then_clients([self._by_name("logEntries", entry) for entry in chunk])

    def _claims_then_clients(self, logs: list[Item]) -> None:
        """Claim the logs' keys and locations, then map client_id -> scid for the logs
        that were not rejected (a log superseded by this project's layout still maps:
        same scid)."""
        scids = {id(i): i.record.scid for i in logs if i.is_record}
        self._claim_keys(logs)
        self._claim_locations(logs)
        self.index.add_clients(
            (i.name, scids[id(i)]) for i in logs if id(i) in scids and i.reject is None
        )

    # --- per layout -----------------------------------------------------------------
    def _archived(self, entry: RawEntry, reason: str) -> Item:
        try:
            return Item(entry.category, entry.name, archive=archive_entry(entry), note=reason)
        except Rejected as exc:
            return Item(entry.category, entry.name, reject=exc.reason)

    def _native(self, spec: KindSpec[Any], entry: RawEntry) -> Item:
        try:
            data = _parse(entry)
            if not isinstance(data, dict):
                raise Rejected(f"value must be a JSON object, got {type(data).__name__}")
            try:
                record = record_from_dict(spec, data)
            except (TypeError, ValueError) as exc:
                raise Rejected(f"value is not a {spec.record.__name__}: {exc}") from None
            if entry_name(spec.key_of(record)) != entry.name:  # a long key: its digest
                raise Rejected(f"{spec.key} {spec.key_of(record)!r:.80} differs from entry name")
        except Rejected as exc:
            return Item(entry.category, entry.name, reject=exc.reason)
        return Item(entry.category, entry.name, spec, record, keep_version=True)

    def _by_name(self, category: str, entry: RawEntry) -> Item:
        spec, convert = legacy.BY_NAME[category]
        try:
            value = _parse(entry)
            record = convert(entry.name, value)
            archive = archive_entry(entry) if legacy.is_lossy(category, value) else None
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
        spec: KindSpec[Any],
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
                archive=archive_entry(entry, tags),
                note="orphan: no convertible logEntries entry for its client_id; "
                "kept verbatim in the archive",
            )
        except Rejected as exc:
            return Item(category, entry.name, reject=exc.reason)

    def _claim_locations(self, items: list[Item]) -> None:
        """Reject a log whose DID location (domain, namespace, identifier) another log
        with another scid already holds: a second SCID is never silently re-homed."""
        logs = [i for i in items if i.is_record and i.spec is LOG_ENTRY]
        if not logs:
            return
        owners = self.index.claim_keys(
            "location", [(location_of(i.record), f"{i.category}/{i.name}") for i in logs]
        )
        for item, owner in zip(logs, owners, strict=True):
            if owner is not None:
                item.reject = (
                    f"second SCID {item.record.scid!r} at location "
                    f"{location_of(item.record)!r:.300}, already taken by {owner}"
                )

    def _claim_keys(self, items: list[Item]) -> None:
        """Reject a second entry converting to a key another entry already produced."""
        by_kind: dict[str, tuple[KindSpec[Any], list[Item]]] = {}
        for item in items:
            if item.is_record and item.spec is not None:
                by_kind.setdefault(item.spec.name, (item.spec, []))[1].append(item)
        for kind, (spec, group) in by_kind.items():
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
                        item.note = f"{reason}; legacy value kept in the archive"
                else:
                    item.reject = f"duplicate {spec.key} {key!r}: already produced by {owner}"


def location_of(log: LogEntry) -> str:
    """Where a log's DID is served: its domain, namespace and identifier."""
    return f"{log.domain}/{log.namespace}/{log.identifier}"


def _parse(entry: RawEntry) -> Any:
    try:
        return loads_exact(entry.value)
    except NotExactJson as exc:
        raise Rejected(str(exc)) from None


def _keeps_tags(category: str) -> bool:
    return category not in _LIGHT_TAGS


class AskarSource:
    """Jobs over an Askar store in either layout (legacy server or this project's)."""

    def __init__(self, store: AskarStore, reader: ScanReader, index: RunIndex) -> None:
        self.store = store
        self.reader = reader
        self.index = index
        self.converter = Converter(index, fetch_tags=store.fetch_tags)
        self.discovered = False
        self._clients_indexed = False

    def survey(self) -> dict[str, int]:
        """Entries per category. Counts known categories; scans only if some are unknown."""
        counted = self.store.count_many([*KNOWN, None])
        total = counted.pop(None)
        counts = {c: n for c, n in counted.items() if c is not None}
        if sum(counts.values()) < total:
            self.discovered = True
            counts = self.store.discover_categories()
        return {c: n for c, n in counts.items() if n > 0}

    def plans(self, counts: dict[str, int], only: tuple[str, ...] | None) -> list[CategoryPlan]:
        return plan_categories(counts, only)

    def jobs(self, plans: list[CategoryPlan]) -> list[Job]:
        """A job per plan; the reader starts streaming their categories right away."""
        read = [p.category for p in plans if p.action is not Action.SKIP]
        wanted = [(category, _keeps_tags(category)) for category in read]
        if self._needs_client_index(plans):
            wanted.insert(0, ("logEntries", False))  # read first by build_client_index
        self.reader.expect(wanted)
        return [Job(plan, self._chunker(plan), self.converter.verbatim) for plan in plans]

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

    def rewind(self) -> None:
        """Ready for a second pass over the same source (verify after copying)."""
        self.index.reset_seen()
