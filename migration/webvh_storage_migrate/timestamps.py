"""Parse the timestamp spellings a legacy store holds into aware UTC datetimes."""

from __future__ import annotations

from datetime import UTC, datetime

from webvh_storage_migrate.items import Rejected

_HUMAN_FORMATS = ("%B %d, %Y", "%B %d, %Y %H:%M:%S")


def parse_legacy_time(field: str, value: object) -> datetime:
    """ISO-8601 (with Z), "October 08, 2025", or epoch seconds; anything else rejects."""
    if isinstance(value, bool):
        raise Rejected(f"{field} is not a timestamp: {value!r}")
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            parsed = _parse_human(value.strip())
        if parsed is not None:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise Rejected(f"{field} is not a timestamp: {value!r:.80}")


def _parse_human(text: str) -> datetime | None:
    for fmt in _HUMAN_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None
