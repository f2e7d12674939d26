"""Timing helpers: interleaved rounds, medians and spreads of ratios, and the result table.

The machine is shared and noisy, so nothing here is an absolute claim: each operation
runs ours and its baselines alternately, in the same process on the same data, several
rounds. Each round gives one ratio (ours / baseline, measured side by side); the table
shows the MEDIAN of those per-round ratios and their spread (lowest-highest), and
ok/MISS compares the median with the target. Rates are medians of the rounds.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# A block: run the operation `n` times (or over n items) and return the count done.
Block = Callable[[], int]


@dataclass
class Result:
    backend: str
    op: str
    unit: str  # what the rate counts: "ops", "rows", "pages"
    ours: list[float] = field(default_factory=list)  # rates per round
    baselines: dict[str, list[float]] = field(default_factory=dict)
    target: float | None = None  # ours / raw driver must be >= this (median of rounds)
    seed_target: float | None = None  # ours / original pattern must be >= this
    note: str = ""

    def rate(self, name: str | None = None) -> float:
        """Median rate over the rounds (ours, or the baseline `name`)."""
        rates = self.ours if name is None else self.baselines.get(name, [])
        return statistics.median(rates) if rates else float("nan")

    def ratios(self, name: str) -> list[float]:
        """ours / baseline of each round (the two measured side by side)."""
        if name not in self.baselines or not self.ours:
            return []
        return [o / b for o, b in zip(self.ours, self.baselines[name], strict=False)]

    def ratio(self, name: str) -> float:
        """The median of the per-round ratios: what ok/MISS compares with the target."""
        values = self.ratios(name)
        return statistics.median(values) if values else float("nan")

    def spread(self, name: str) -> tuple[float, float]:
        values = self.ratios(name)
        return (min(values), max(values)) if values else (float("nan"), float("nan"))

    def holds(self, name: str) -> bool | None:
        goal = self.goal(name)
        if goal is None or name not in self.baselines:
            return None
        return self.ratio(name) >= goal

    def goal(self, name: str) -> float | None:
        return {"raw": self.target, "original": self.seed_target}.get(name)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "backend": self.backend,
            "op": self.op,
            "unit": self.unit,
            "ours_median_rate": self.rate(),
            "ours_rates": self.ours,
            "note": self.note,
        }
        for name, rates in self.baselines.items():
            out[f"{name}_median_rate"] = self.rate(name)
            out[f"{name}_rates"] = rates
            out[f"ratios_vs_{name}"] = self.ratios(name)
            out[f"median_ratio_vs_{name}"] = self.ratio(name)
        if self.target is not None:
            out["target_vs_raw"] = self.target
            out["meets_target_vs_raw"] = self.holds("raw")
        if self.seed_target is not None:
            out["target_vs_original"] = self.seed_target
            out["meets_target_vs_original"] = self.holds("original")
        return out


def timed(block: Block) -> float:
    """Rate (items per second) of one run of `block`."""
    gc.collect()
    start = time.perf_counter()
    done = block()
    elapsed = time.perf_counter() - start
    return done / elapsed if elapsed > 0 else float("inf")


def compare(
    result: Result,
    rounds: int,
    ours: Block,
    baselines: dict[str, Block],
    *,
    before: Callable[[int], None] | None = None,
) -> Result:
    """Run ours and each baseline alternately for `rounds` rounds (order rotated each
    round so none always goes first); `before(round)` runs untimed before each block."""
    runners: list[tuple[str | None, Block]] = [(None, ours), *baselines.items()]
    for name in baselines:
        result.baselines.setdefault(name, [])
    for r in range(rounds):
        order = runners[r % len(runners) :] + runners[: r % len(runners)]
        for name, block in order:
            if before is not None:
                before(r)
            rate = timed(block)
            (result.ours if name is None else result.baselines[name]).append(rate)
    return result


def fmt_rate(rate: float) -> str:
    if rate != rate:  # nan
        return "-"
    if rate >= 100_000:
        return f"{rate / 1000:,.0f}k"
    if rate >= 10_000:
        return f"{rate / 1000:,.1f}k"
    if rate >= 100:
        return f"{rate:,.0f}"
    return f"{rate:,.1f}"


def fmt_ratio(res: Result, name: str) -> str:
    """`median [lowest-highest]` of the per-round ratios, with ok/MISS against the target."""
    value = res.ratio(name)
    if value != value:
        return "-"
    low, high = res.spread(name)
    text = f"{value:.2f} [{low:.2f}-{high:.2f}]"
    goal = res.goal(name)
    if goal is not None:
        text += " ok" if value >= goal else f" MISS (<{goal:g})"
    return text


#: Baselines in table order: (key in Result.baselines, column title).
COLUMNS = (
    ("raw", "raw driver"),
    ("original", "original"),
    ("advanced-alchemy", "advanced-alchemy"),
)


def table(results: list[Result]) -> str:
    """A Markdown table: one row per backend and operation; rates are medians of the
    rounds, "x name" the median [spread] of the per-round ratios ours / name."""
    head = "| backend | operation | ours /s | target (x raw)"
    for _, title in COLUMNS:
        head += f" | {title} /s | x {title}"
    lines = [head + " |", "|" + "---|" * (4 + 2 * len(COLUMNS))]
    for res in results:
        target = "-" if res.target is None else f">= {res.target:g}"
        row = f"| {res.backend} | {res.op} | {fmt_rate(res.rate())} {res.unit} | {target}"
        for name, _ in COLUMNS:
            if res.baselines.get(name):
                row += f" | {fmt_rate(res.rate(name))} | {fmt_ratio(res, name)}"
            else:
                row += " | - | -"
        lines.append(row + " |")
    return "\n".join(lines)
