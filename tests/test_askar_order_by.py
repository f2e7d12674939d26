"""Askar's limit on `order_by`: its scans cannot sort by a tag, so it sorts at most
`max_sorted` matching records in memory and refuses a call matching more, on both
faces, rather than answer part of it (the conformance suite checks the order itself)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("aries_askar")

from storage_core import open_async_storage, open_storage
from storage_core.errors import UnsupportedOperationError
from storage_core.manager import StorageManager
from storage_core.testing.samples import sample_record


@pytest.fixture
def askar(tmp_path: Path) -> Iterator[StorageManager]:
    sm = open_storage("askar", f"sqlite://{tmp_path}/askar.db")
    sm.init_db()
    try:
        yield sm
    finally:
        sm.close()


def test_more_matches_than_it_sorts_are_refused(askar: StorageManager) -> None:
    askar.backend.max_sorted = 3  # type: ignore[attr-defined]
    for key in "dcba":
        askar.create_record(sample_record("log_entry", key, namespace="n1" if key < "c" else "n2"))
    with pytest.raises(UnsupportedOperationError, match="at most 3 matching log_entry"):
        askar.get_log_entries(order_by="scid")
    with pytest.raises(UnsupportedOperationError, match="add a filter"):
        list(askar.stream_records("log_entry", order_by="-scid"))
    # within the limit: a filter narrows it; without order_by nothing is sorted
    assert [r.scid for r in askar.get_log_entries({"namespace": "n1"}, order_by="scid")] == [
        "a",
        "b",
    ]
    assert [r.scid for r in askar.get_log_entries()] == ["d", "c", "b", "a"]


async def test_the_async_face_has_the_same_limit(tmp_path: Path) -> None:
    async with open_async_storage("askar", f"sqlite://{tmp_path}/askar.db") as sm:
        await sm.provision()
        sm.backend.max_sorted = 1  # type: ignore[attr-defined]
        for key in "ba":
            await sm.create_record(sample_record("log_entry", key))
        with pytest.raises(UnsupportedOperationError, match="at most 1 matching"):
            await sm.list_records("log_entry", order_by="scid")
        assert [
            r.scid for r in await sm.list_records("log_entry", {"scid": "a"}, order_by="scid")
        ] == ["a"]
