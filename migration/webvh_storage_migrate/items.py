"""What conversion makes of one source entry: a record, a verbatim archive row, or a reason.

The engine, the dry run and the verify pass all consume these, so the three agree on
what every entry becomes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from storage_core.kinds import KindSpec


@dataclass(frozen=True, slots=True)
class RawEntry:
    """One Askar entry as read: the value bytes once, tags only where they are kept."""

    category: str
    name: str
    value: bytes
    tags: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class ArchiveRow:
    """An entry kept exactly as stored: value text and tags untouched."""

    category: str
    name: str
    value: str
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Item:
    """The outcome for one source entry: a record and/or an archive row, or a reject or
    skip reason.

    `keep_version` marks records read in this project's own layout, whose
    record_version is part of their content and is written as stored.
    """

    category: str
    name: str
    spec: KindSpec | None = None
    record: Any = None
    archive: ArchiveRow | None = None
    reject: str | None = None
    skip: str | None = None  # nothing to write, for this reason (not an error)
    note: str | None = None
    keep_version: bool = False

    @property
    def is_record(self) -> bool:
        return self.record is not None and self.reject is None and self.skip is None


class Rejected(Exception):
    """Raised by a converter: the entry cannot be converted, for `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
