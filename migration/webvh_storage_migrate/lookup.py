"""A run-scoped, disk-backed index: client_id -> scid, and the keys already produced.

witnessFile and whois are keyed by client_id ("ns:id") while their records are keyed by
scid, which only the client's log holds. Keeping that map (and the set of keys seen, to
catch two entries converting to one key) in a temporary SQLite file keeps memory flat
however many DIDs the store holds.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Sequence

_CHUNK = 500  # SQLite host parameters per IN (...) query


class RunIndex:
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
