"""Which categories a store holds, which layout that is, and what happens to each.

Askar has no "list categories" call: the known categories are counted one by one and,
only when their sum falls short of the store's total, one discovery scan finds the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from storage_core.kinds import KINDS, KindSpec

CONVERTED = ("logEntries", "witnessFile", "whois", "resource", "policy", "registry", "task")
SKIPPED = {
    "didRecord": "derived explorer cache, rebuilt from logEntries/witnessFile/whois",
    "resourceRecord": "derived explorer cache, rebuilt from resource",
}
KNOWN_ARCHIVED = (
    "tailsFile",
    "didDocument",
    "registrationKey",
    "authorizedKey",
    "didLogs",
    "didRegistration",
    "updateKey",
)
NATIVE: dict[str, KindSpec] = {spec.category: spec for spec in KINDS.values()}
KNOWN = (*CONVERTED, *SKIPPED, *KNOWN_ARCHIVED, *NATIVE)


class Action(Enum):
    CONVERT = "convert"  # legacy category -> records
    NATIVE = "native"  # this project's layout: records as stored
    ARCHIVE = "archive"  # kept verbatim in askar_archive
    SKIP = "skip"  # derived cache: counted, not copied


@dataclass(frozen=True, slots=True)
class CategoryPlan:
    category: str
    action: Action
    total: int
    reason: str = ""

    @property
    def spec(self) -> KindSpec | None:
        return NATIVE.get(self.category)


def action_for(category: str) -> tuple[Action, str]:
    if category in CONVERTED:
        return Action.CONVERT, ""
    if category in NATIVE:
        return Action.NATIVE, ""
    if category in SKIPPED:
        return Action.SKIP, SKIPPED[category]
    if category in KNOWN_ARCHIVED:
        return Action.ARCHIVE, "category of the legacy layout with no record kind"
    return Action.ARCHIVE, "unknown category"


def _order(category: str) -> tuple[int, int, str]:
    """This project's layout first (newer: it wins when a legacy entry converts to the
    same key), then the legacy categories with logEntries first (the client_id index is
    built from it), then archives and skipped caches."""
    if category in NATIVE:
        return (0, 0, category)
    if category in CONVERTED:
        return (1, CONVERTED.index(category), category)
    if category in SKIPPED:
        return (3, 0, category)
    return (2, 0, category)


def plan_categories(counts: dict[str, int], only: list[str] | None = None) -> list[CategoryPlan]:
    """A plan per category present (count > 0), in processing order."""
    chosen = counts if only is None else {c: counts.get(c, 0) for c in only}
    plans = []
    for category in sorted(chosen, key=_order):
        if chosen[category] <= 0 and only is None:
            continue
        action, reason = action_for(category)
        plans.append(CategoryPlan(category, action, chosen[category], reason))
    return plans


def detect_layout(counts: dict[str, int]) -> str:
    """ "legacy", "webvh" (this project's), "mixed", or "empty"."""
    present = [c for c, n in counts.items() if n > 0]
    native = any(c in NATIVE for c in present)
    legacy = any(c not in NATIVE for c in present)
    if native and legacy:
        return "mixed"
    return "webvh" if native else "legacy" if legacy else "empty"
