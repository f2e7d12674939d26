"""Timing helpers: interleaved rounds, best-of and median, ratios, and the result table.

The machine is shared and noisy, so nothing here is an absolute claim: each operation
runs ours and its baselines alternately, in the same process on the same data, several
rounds, and reports the ratio of the best rates (the least disturbed round of each) with
the median ratio alongside.
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
    target: float | None = None  # ours / raw driver must be >= this
    seed_target: float | None = None  # ours / seed pattern must be >= this
    note: str = ""

    def best(self, name: str | None = None) -> float:
        rates = self.ours if name is None else self.baselines[name]
        return max(rates) if rates else float("nan")

    def ratio(self, name: str) -> float:
        """ours / baseline, best round of each."""
        if name not in self.baselines or not self.ours:
            return float("nan")
        return self.best() / self.best(name)

    def median_ratio(self, name: str) -> float:
        """Median over rounds of ours/baseline within the same round."""
        if name not in self.baselines or not self.ours:
            return float("nan")
        pairs = zip(self.ours, self.baselines[name], strict=False)
        return statistics.median(o / b for o, b in pairs)

    def holds(self, name: str) -> bool | None:
        goal = self.target if name == "raw" else self.seed_target
        if goal is None or name not in self.baselines:
            return None
        return self.ratio(name) >= goal

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "backend": self.backend,
            "op": self.op,
            "unit": self.unit,
            "ours_rate": self.best(),
            "ours_rates": self.ours,
            "note": self.note,
        }
        for name, rates in self.baselines.items():
            out[f"{name}_rate"] = max(rates)
            out[f"{name}_rates"] = rates
            out[f"ratio_vs_{name}"] = self.ratio(name)
            out[f"median_ratio_vs_{name}"] = self.median_ratio(name)
        if self.target is not None:
            out["target_vs_raw"] = self.target
            out["meets_target_vs_raw"] = self.holds("raw")
        if self.seed_target is not None:
            out["target_vs_seed"] = self.seed_target
            out["meets_target_vs_seed"] = self.holds("seed")
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


def fmt_ratio(value: float, goal: float | None) -> str:
    if value != value:
        return "-"
    text = f"{value:.2f}"
    if goal is not None:
        text += " ok" if value >= goal else f" MISS (<{goal:g})"
    return text


def table(results: list[Result]) -> str:
    """A Markdown table: one row per backend and operation."""
    head = (
        "| backend | operation | ours /s | raw driver /s | ours/raw (median) | target "
        "| seed pattern /s | ours/seed |"
    )
    lines = [head, "|" + "---|" * 8]
    for res in results:
        raw = res.baselines.get("raw")
        seed = res.baselines.get("seed")
        raw_ratio = (
            f"{fmt_ratio(res.ratio('raw'), res.target)} ({res.median_ratio('raw'):.2f})"
            if raw
            else "-"
        )
        seed_ratio = fmt_ratio(res.ratio("seed"), res.seed_target) if seed else "-"
        lines.append(
            f"| {res.backend} | {res.op} | {fmt_rate(res.best())} {res.unit} "
            f"| {fmt_rate(res.best('raw')) if raw else '-'} "
            f"| {raw_ratio} | {'-' if res.target is None else f'>= {res.target:g}'} "
            f"| {fmt_rate(res.best('seed')) if seed else '-'} | {seed_ratio} |"
        )
    return "\n".join(lines)
