"""What the operator sees while a migration runs, and the summary table at the end.

On a terminal: one bar per category redrawn in place (count, rate, ETA). Otherwise
(logs, CI): a plain line every few seconds and one when a category ends.
"""

from __future__ import annotations

import sys
import time
from typing import IO

from webvh_storage_migrate.report import CategoryStats, RunReport

_BAR = 24


def _eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    def __init__(self, stream: IO[str] | None = None, interval: float = 5.0) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
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
        self._draw(now, final=False)

    def finish(self) -> None:
        if self._stats is not None:
            self._draw(time.monotonic(), final=True)
        self._stats = None

    def _draw(self, now: float, final: bool) -> None:
        stats = self._stats
        assert stats is not None
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
        self.stream.write(text + "\n")
        self.stream.flush()


def summary_table(report: RunReport) -> str:
    """Per category read / written / unchanged / rejected / archived / skipped, time, rate."""
    cols = ("read", "written", "unchanged", "rejected", "archived", "skipped")
    head = f"{'category':<22}" + "".join(f"{c:>10}" for c in cols) + f"{'time s':>9}{'rate/s':>10}"
    lines = [head, "-" * len(head)]
    for s in report.categories:
        lines.append(
            f"{s.category[:22]:<22}"
            + "".join(f"{getattr(s, c):>10}" for c in cols)
            + f"{s.seconds:>9.2f}{s.rate:>10,.0f}"
        )
    totals = report.totals()
    seconds = sum(s.seconds for s in report.categories)
    rate = totals["read"] / seconds if seconds else 0.0
    lines.append("-" * len(head))
    lines.append(
        f"{'total':<22}"
        + "".join(f"{totals[c]:>10}" for c in cols)
        + f"{seconds:>9.2f}{rate:>10,.0f}"
    )
    if report.dry_run:
        lines.append("dry run: nothing was written; 'written' counts what would be written")
    return "\n".join(lines)
