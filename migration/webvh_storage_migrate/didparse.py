"""Split a server DID `did:webvh:{SCID}:{host}:{namespace}:{identifier}` into its parts.

The legacy store's tags may be missing or stale, so every DID field of a migrated log
entry comes from the DID itself, parsed here.
"""

from __future__ import annotations

from dataclasses import dataclass

from webvh_storage_migrate.items import Rejected

_PREFIX = "did:webvh:"


@dataclass(frozen=True, slots=True)
class ServerDid:
    did: str
    scid: str
    domain: str  # the host, with a `%3A`-encoded port decoded to ":"
    namespace: str
    identifier: str


def parse_server_did(did: object) -> ServerDid:
    """Parse a did:webvh DID with exactly two path segments, or raise Rejected."""
    if not isinstance(did, str) or not did.startswith(_PREFIX):
        raise Rejected(f"not a did:webvh DID: {did!r:.120}")
    parts = did[len(_PREFIX) :].split(":")
    if len(parts) != 4 or not all(parts):
        raise Rejected(
            f"DID {did!r:.160} does not parse as a server DID "
            "did:webvh:{SCID}:{domain}:{namespace}:{identifier}"
        )
    scid, host, namespace, identifier = parts
    return ServerDid(did, scid, host.replace("%3A", ":").replace("%3a", ":"), namespace, identifier)
