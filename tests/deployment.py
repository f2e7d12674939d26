"""What the deployment tests (test_deployment_*.py) share: the record they write."""

from __future__ import annotations

from storage_core.records import LogEntry


def entry(scid: str) -> LogEntry:
    return LogEntry(
        scid=scid,
        did=f"did:webvh:{scid}:example.com",
        domain="example.com",
        namespace="people",
        identifier=scid,
        logs=[{"v": scid}],
    )
