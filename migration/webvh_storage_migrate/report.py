"""What the operator gets: progress while it runs, counters per category, the rejects
file (JSONL), the JSON report and the summary printed at the end.

Every entry read ends up in exactly one of written / unchanged / rejected / skipped, so
`read == written + unchanged + rejected + skipped` per category: nothing is lost silently.
On a terminal, progress is one bar per category redrawn in place (count, rate, ETA);
otherwise (logs, CI) a plain line every few seconds and one when a category ends.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

_COLUMNS = ("read", "written", "unchanged", "rejected", "archived", "skipped", "kept_newer")
_BAR = 24


@dataclass
class CategoryStats:
    category: str
    action: str
    total: int = 0  # entries the source said it holds (for progress)
    read: int = 0
    written: int = 0  # entries whose record or archive copy was new or changed
    unchanged: int = 0  # entries already identical in the target
    rejected: int = 0
    archived: int = 0  # entries with a verbatim copy in the archive
    skipped: int = 0
    kept_newer: int = 0  # the target's record is newer (going-live guard): left as is
    interrupted: bool = False  # Ctrl-C stopped the run in this category
    seconds: float = 0.0
    notes: dict[str, int] = field(default_factory=dict)  # reason -> entries

    @property
    def rate(self) -> float | None:
        """Entries read per second; None where no rate means anything (a skipped
        category is counted, never read; an interrupted one did not finish)."""
        if self.action == "skip" or self.interrupted or self.seconds <= 0:
            return None
        return self.read / self.seconds

    @property
    def rate_text(self) -> str:
        if self.interrupted:
            return "interrupted"
        return "-" if self.rate is None else f"{self.rate:,.0f}"

    def note(self, reason: str) -> None:
        self.notes[reason] = self.notes.get(reason, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        data["rate"] = None if self.rate is None else round(self.rate, 1)
        return data


class RejectsFile:
    """One JSON object per rejected entry: category, name, reason."""

    def __init__(self, path: str | None) -> None:
        self._file: IO[str] | None = open(path, "w", encoding="utf-8") if path else None  # noqa: SIM115

    def add(self, category: str, name: str, reason: str) -> None:
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
    error: str | None = None  # masked
    stopped_by_strict: bool = False
    interrupted: bool = False  # Ctrl-C
    seconds: float = 0.0

    @property
    def rejected(self) -> int:
        return sum(c.rejected for c in self.categories)

    @property
    def verify_failed(self) -> bool:
        return self.verify is not None and not self.verify.get("ok", False)

    def totals(self) -> dict[str, int]:
        return {k: sum(getattr(c, k) for c in self.categories) for k in _COLUMNS}

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
            "interrupted": self.interrupted,
            "ok": not self.error
            and not self.interrupted
            and not self.rejected
            and not self.verify_failed,
        }

    def write(self, path: str | None) -> None:
        if path:
            Path(path).write_text(json.dumps(self.as_dict(), indent=2, ensure_ascii=False))


def _eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """Progress of the category being processed; `stream=None` shows nothing."""

    def __init__(self, stream: IO[str] | None, interval: float = 5.0) -> None:
        self.stream = stream
        self.tty = stream is not None and stream.isatty()
        self.interval = interval if not self.tty else 0.1
        self._stats: CategoryStats | None = None
        self._started = 0.0
        self._last = 0.0
        self.label = "migrate"

    def start(self, stats: CategoryStats) -> None:
        self._stats = stats
        self._started = self._last = time.monotonic()
        if not self.tty:
            self._line(f"{self.label} {stats.category}: {stats.total} entries ({stats.action})")

    def advance(self) -> None:
        now = time.monotonic()
        if self._stats is None or now - self._last < self.interval:
            return
        self._last = now
        self._draw(self._stats, now, final=False)

    def finish(self) -> None:
        if self._stats is not None:
            self._draw(self._stats, time.monotonic(), final=True)
        self._stats = None

    def _draw(self, stats: CategoryStats, now: float, final: bool) -> None:
        if self.stream is None:
            return
        if stats.action == "skip":  # counted, never read: no rate, no bar
            if final:
                self._line(f"{self.label} {stats.category}: {stats.skipped} skipped")
            return
        elapsed = max(now - self._started, 1e-9)
        rate = stats.read / elapsed
        total = max(stats.total, stats.read)
        left = (total - stats.read) / rate if rate > 0 else 0.0
        share = stats.read / total if total else 1.0
        text = f"{stats.read}/{total} {share:4.0%} {rate:,.0f}/s " + (
            f"in {_eta(elapsed)}" if final else f"ETA {_eta(left)}"
        )
        if self.tty:
            filled = int(share * _BAR)
            bar = "#" * filled + "." * (_BAR - filled)
            self.stream.write(f"\r{stats.category[:20]:<20} [{bar}] {text}\x1b[K")
            if final:
                self.stream.write("\n")
            self.stream.flush()
        else:
            self._line(f"{self.label} {stats.category}: {text}" + (" done" if final else ""))

    def _line(self, text: str) -> None:
        if self.stream is not None:
            self.stream.write(text + "\n")
            self.stream.flush()


def summary_table(report: RunReport) -> str:
    """Per category read / written / unchanged / rejected / archived / skipped, time, rate."""
    head = (
        f"{'category':<22}"
        + "".join(f"{_heading(c):>11}" for c in _COLUMNS)
        + f"{'time s':>9}{'rate/s':>12}"
    )
    lines = [head, "-" * len(head)]
    for s in report.categories:
        lines.append(
            f"{s.category[:22]:<22}"
            + "".join(f"{getattr(s, c):>11}" for c in _COLUMNS)
            + f"{s.seconds:>9.2f}{s.rate_text:>12}"
        )
    totals = report.totals()
    seconds = sum(s.seconds for s in report.categories)
    rate = (
        "interrupted"
        if report.interrupted
        else f"{totals['read'] / seconds:,.0f}"
        if seconds
        else "-"
    )
    lines.append("-" * len(head))
    lines.append(
        f"{'total':<22}"
        + "".join(f"{totals[c]:>11}" for c in _COLUMNS)
        + f"{seconds:>9.2f}{rate:>12}"
    )
    if report.dry_run:
        lines.append("dry run: nothing was written; 'written' counts what would be written")
    return "\n".join(lines)


def _heading(column: str) -> str:
    return column.replace("_", "-")


def one_line(report: RunReport) -> str:
    """The run in one line (what `--quiet` prints): totals, verify, interruption."""
    totals = report.totals()
    parts = [f"{_heading(c)} {totals[c]}" for c in _COLUMNS]
    text = f"{report.direction}: " + ", ".join(parts)
    if report.dry_run:
        text += " (dry run: nothing written)"
    if report.verify is not None:
        text += "; verify " + (
            "OK" if report.verify["ok"] else f"FAILED ({report.verify['mismatch_count']})"
        )
    if report.interrupted:
        interrupted = [c.category for c in report.categories if c.interrupted]
        text += "; interrupted" + (f" in {interrupted[0]}" if interrupted else "")
    return text


def print_summary(report: RunReport, rejects_path: str | None) -> None:
    """The summary on stdout: what was done, the table, rejects and verify mismatches."""
    out = sys.stdout
    print(f"{report.direction}: {report.source} -> {report.target}", file=out)
    if report.layout:
        print(f"source layout: {report.layout}", file=out)
    if report.categories:
        print(summary_table(report), file=out)
    for s in report.categories:
        if s.interrupted:
            print(f"{s.category}: interrupted after {s.read} of {s.total} entries", file=out)
    if report.rejected:
        where = f" (see {rejects_path})" if rejects_path else ""
        print(f"{report.rejected} entries rejected{where}", file=out)
    if report.verify is not None:
        ok = report.verify["ok"]
        verdict = "OK" if ok else f"FAILED: {report.verify['mismatch_count']} mismatches"
        print(f"verify: {verdict}", file=out)
        for m in report.verify["mismatches"][:20]:
            print(f"  {m['category']}/{m['name']}: {m['problem']}", file=out)
