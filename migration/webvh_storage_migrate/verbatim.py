"""An Askar entry as an archive entry, exactly, whatever its value holds.

The archive keeps values as text. A value that text cannot hold (not UTF-8, or with a
NUL, which PostgreSQL text refuses) is kept as its base64, marked by the tag
`ENCODING_TAG`; a reverse run decodes it and drops the tag, so the Askar entry comes
back byte for byte. Rejected entries are archived this way, so nothing read is lost.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping

from storage_core.interface import ArchivedEntry

#: Tag marking an archived value stored as base64 (the original had no such tag).
ENCODING_TAG = "migrate-askar:encoding"
BASE64 = "base64"


def to_archive(
    category: str, name: str, value: bytes, tags: Mapping[str, str] | None
) -> ArchivedEntry:
    """The entry as an ArchivedEntry: its text, or base64 (tagged) when not text."""
    kept = dict(tags or {})
    try:
        text = value.decode("utf-8")
        if "\x00" not in text:
            return ArchivedEntry(category, name, text, kept)
    except UnicodeDecodeError:
        pass
    kept[ENCODING_TAG] = BASE64
    return ArchivedEntry(category, name, base64.b64encode(value).decode("ascii"), kept)


def from_archive(entry: ArchivedEntry) -> tuple[bytes, dict[str, str]]:
    """The original value bytes and tags of an archived entry."""
    tags = dict(entry.tags)
    if tags.pop(ENCODING_TAG, None) == BASE64:
        return base64.b64decode(entry.value), tags
    return entry.value.encode("utf-8"), tags
