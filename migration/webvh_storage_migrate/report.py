"""Counters per category, the rejects file (JSONL) and the JSON report.

Every entry read ends up in exactly one of written / unchanged / rejected / skipped, so
`read == written + unchanged + rejected + skipped` per category: nothing is lost silently.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any


@dataclass
class CategoryStats:
    category: str
    action: str
    total: int = 0  # entries the source said it holds (for progress)
    read: int = 0
    written: int = 0  # entries whose record or archive copy was new or changed
    unchanged: int = 0  # entries already identical in the target
    rejected: int = 0
    archived: int = 0  # entries with a verbatim copy in askar_archive
    skipped: int = 0
    seconds: float = 0.0
    notes: dict[str, int] = field(default_factory=dict)  # reason -> entries

    @property
    def rate(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else 0.0

    def note(self, reason: str) -> None:
        self.notes[reason] = self.notes.get(reason, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        data["rate"] = round(self.rate, 1)
        return data


class RejectsFile:
    """One JSON object per rejected entry: category, name, reason."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._file: IO[str] | None = open(path, "w", encoding="utf-8") if path else None  # noqa: SIM115
        self.count = 0

    def add(self, category: str, name: str, reason: str) -> None:
        self.count += 1
        if self._file is not None:
            line = {"category": category, "name": name, "reason": reason}
            self._file.write(json.dumps(line, ensure_ascii=False) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@dataclass
class RunReport:
    direction: str
    source: str  # masked
    target: str  # masked
    dry_run: bool = False
    layout: str = ""
    discovered_categories: bool = False
    categories: list[CategoryStats] = field(default_factory=list)
    verify: dict[str, Any] | None = None
    error: str | None = None
    started: float = field(default_factory=time.time)
    seconds: float = 0.0

    @property
    def rejected(self) -> int:
        return sum(c.rejected for c in self.categories)

    @property
    def verify_failed(self) -> bool:
        return bool(self.verify) and not self.verify.get("ok", False)

    def totals(self) -> dict[str, int]:
        keys = ("read", "written", "unchanged", "rejected", "archived", "skipped")
        return {k: sum(getattr(c, k) for c in self.categories) for k in keys}

    def as_dict(self) -> dict[str, Any]:
        return {
            "direction": self.direction,
            "source": self.source,
            "target": self.target,
            "dry_run": self.dry_run,
            "layout": self.layout,
            "discovered_categories": self.discovered_categories,
            "seconds": round(self.seconds, 3),
            "totals": self.totals(),
            "categories": {c.category: c.as_dict() for c in self.categories},
            "archived_categories": sorted(
                c.category for c in self.categories if c.action == "archive"
            ),
            "skipped_categories": {
                c.category: {"count": c.skipped, "reason": next(iter(c.notes), "")}
                for c in self.categories
                if c.action == "skip"
            },
            "verify": self.verify,
            "error": self.error,
            "ok": not self.error and not self.rejected and not self.verify_failed,
        }

    def write(self, path: str | None) -> None:
        if path:
            Path(path).write_text(json.dumps(self.as_dict(), indent=2, ensure_ascii=False))
