"""Benchmark data: N distinct log entries built from the real did:webvh logs.

Every entry is one of the logs in tests/data/vectors (two to three versions with proofs,
witness parameters and pre-rotation hashes), with its SCID and DID rewritten so the N
entries are distinct. The DID gets the did:webvh server layout
`did:webvh:{SCID}:{domain}:{namespace}:{alias}`; entry i is in namespace i % 100, so a
namespace filter selects 1% of the rows, as a server with 100 tenants would see.

Entries are built lazily (`iter_entries`) so a 100k run never holds more than the caller
asks for; `entry(i)` rebuilds the same entry anywhere (the subprocess memory probes).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from storage_core.records import LogEntry

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "tests" / "data" / "vectors"
NAMESPACES = 100
DOMAINS = ("example.com", "did.example.org", "identity.example.net", "webvh.example")
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)


class _Template:
    """One real log as text, with the places to rewrite."""

    def __init__(self, path: Path) -> None:
        self.name = path.parent.name
        self.text = path.read_text()
        lines = [orjson.loads(line) for line in self.text.splitlines() if line.strip()]
        self.scid: str = lines[0]["parameters"]["scid"]
        did: str = lines[-1]["state"]["id"]
        self.domain = did.split(":")[3]
        self.deactivated = any(line["parameters"].get("deactivated") for line in lines)
        self.size = len(self.text)


@functools.cache
def templates() -> tuple[_Template, ...]:
    if not VECTORS.is_dir():
        raise SystemExit(
            f"test vectors not found at {VECTORS}: the benchmark builds its payloads "
            "from them (see tests/data/vectors/README.md)"
        )
    found = tuple(_Template(p) for p in sorted(VECTORS.glob("*/did.jsonl")))
    if not found:
        raise SystemExit(f"no */did.jsonl under {VECTORS}")
    return found


def scid_for(i: int, salt: str = "") -> str:
    """A distinct, SCID-shaped (46 chars, base58, "Qm" prefix) key for entry i."""
    digits = []
    n = i
    while True:
        n, r = divmod(n, 58)
        digits.append(_B58[r])
        if n == 0:
            break
    body = "".join(reversed(digits))
    head = "Qm" + (salt + "bench")[:10] + "z"
    return head + "1" * (46 - len(head) - len(body)) + body  # "1" is base58 zero


def namespace_of(i: int) -> str:
    return f"ns-{i % NAMESPACES:03d}"


def entry(i: int, salt: str = "") -> LogEntry:
    """Entry i: the same for the same (i, salt) in any process."""
    tpl = templates()[i % len(templates())]
    scid = scid_for(i, salt)
    domain = DOMAINS[i % len(DOMAINS)]
    namespace = namespace_of(i)
    identifier = f"alias-{i}"
    # did:webvh:{SCID}:{domain} -> did:webvh:{SCID}:{domain}:{namespace}:{alias}
    text = tpl.text.replace(
        f"{tpl.scid}:{tpl.domain}", f"{scid}:{domain}:{namespace}:{identifier}"
    ).replace(tpl.scid, scid)
    logs = [orjson.loads(line) for line in text.splitlines() if line.strip()]
    created = _EPOCH + timedelta(seconds=i)
    return LogEntry(
        scid=scid,
        did=f"did:webvh:{scid}:{domain}:{namespace}:{identifier}",
        domain=domain,
        namespace=namespace,
        identifier=identifier,
        logs=logs,
        deactivated=tpl.deactivated,
        created_at=created,
        updated_at=created,
    )


def iter_entries(start: int, stop: int, salt: str = "") -> Iterator[LogEntry]:
    for i in range(start, stop):
        yield entry(i, salt)


def chunks(n: int, size: int, salt: str = "") -> Iterator[list[LogEntry]]:
    """Entries 0..n-1 as lists of at most `size` (what one bulk_upsert call receives)."""
    for start in range(0, n, size):
        yield list(iter_entries(start, min(n, start + size), salt))


def describe() -> str:
    parts = [f"{t.name} ({t.size} B)" for t in templates()]
    return f"{len(parts)} real did:webvh logs: " + ", ".join(parts)
