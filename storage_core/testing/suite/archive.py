"""The archive (`Capability.ARCHIVE`): entries kept verbatim by (category, name), beside
the records and never mixed with them. The migration keeps what no kind describes here
and writes it back on a reverse run, so every byte and tag must come back unchanged.

Order is by (category, name) as Python compares strings (code point order), the same
on every backend, so a reverse run writes entries in the same order whatever the store.
"""

from __future__ import annotations

from contextlib import aclosing, closing
from typing import Any

import pytest

from storage_core.async_manager import AsyncStorageManager
from storage_core.errors import UnsupportedOperationError, ValidationError
from storage_core.interface import ArchivedEntry, Capability
from storage_core.kinds import KINDS
from storage_core.manager import StorageManager, open_storage
from storage_core.testing.capabilities import requires_capability, skip_if_capability
from storage_core.testing.samples import data_of, sample_record

#: Values that a careless encoding would change: unicode, JSON-looking text whose key
#: order and spacing must stay, control characters, surrounding space, the empty string.
AWKWARD_VALUES = [
    "",
    "plain",
    '{"z": 1, "a": [1.0, 1e400, -0.0],  "é": null}',
    "caf\u00e9 \u00fcber \u4e2d\u6587 \U0001f980 \u2028 end",
    "  leading and trailing  \r\n\ttabs\n",
    '["not", "json"',
    "x" * 100_000,
]
#: Tag names and values a layout could confuse with its own (Askar's "~" plaintext
#: prefix, WQL operators, names this project's layouts use).
AWKWARD_TAGS: list[dict[str, str]] = [
    {},
    {"scid": "s1"},
    {"~plain": "yes", "$in": "[1]", "category": "other", "name": "other"},
    {"\u00e9t\u00e9": "\U0001f980", "empty": ""},
]


def entry(category: str, name: str, value: str = "v", **tags: str) -> ArchivedEntry:
    return ArchivedEntry(category, name, value, tags)


def everything(manager: StorageManager, **kwargs: Any) -> list[ArchivedEntry]:
    return list(manager.archive_stream(**kwargs))


def assert_same(got: ArchivedEntry, want: ArchivedEntry) -> None:
    """Equal, and the value equal byte for byte (not merely equal after decoding)."""
    assert got == want
    assert got.value.encode("utf-8") == want.value.encode("utf-8")
    assert dict(got.tags) == dict(want.tags)


@requires_capability(Capability.ARCHIVE)
class TestArchive:
    def test_entries_round_trip_exactly(self, storage_manager: StorageManager) -> None:
        entries = [
            ArchivedEntry(f"cat{i % 3}", f"name-{i}", value, tags)
            for i, (value, tags) in enumerate((v, t) for v in AWKWARD_VALUES for t in AWKWARD_TAGS)
        ]
        assert storage_manager.archive_upsert(entries) == len(entries)
        by_key = {(e.category, e.name): e for e in entries}
        streamed = everything(storage_manager)
        assert len(streamed) == len(entries)
        for got in streamed:
            assert_same(got, by_key[(got.category, got.name)])
        for category in ("cat0", "cat1", "cat2"):
            names = [e.name for e in entries if e.category == category]
            found = storage_manager.archive_get(category, names)
            assert sorted(found) == sorted(names)
            for name, got in found.items():
                assert got.name == name and got.category == category
                assert_same(got, by_key[(category, name)])

    def test_unicode_and_look_alike_keys_stay_distinct(
        self, storage_manager: StorageManager
    ) -> None:
        entries = [
            entry("c", "caf\u00e9"),  # NFC
            entry("c", "cafe\u0301"),  # NFD: a different name
            entry("c", "Case"),
            entry("c", "case"),
            entry("c", "case "),
            entry("c", '["c","case"]'),  # looks like an encoded key
            entry('["c"', 'case"]'),
            entry("webvh:archive", '["c","case"]'),
            entry("c:case", ""),
            entry("c", "\U0001f980"),
        ]
        storage_manager.archive_upsert(entries)
        assert storage_manager.archive_count() == len(entries)
        assert everything(storage_manager) == sorted(entries, key=lambda e: (e.category, e.name))
        assert storage_manager.archive_get("c", ["case"]) == {"case": entries[3]}
        assert storage_manager.archive_get("c", ["caf\u00e9"]) == {"caf\u00e9": entries[0]}

    def test_upsert_replaces_by_category_and_name(self, storage_manager: StorageManager) -> None:
        storage_manager.archive_upsert(
            [entry("a", "k", "old", t1="x", t2="y"), entry("b", "k", "other", t="z")]
        )
        replaced = entry("a", "k", "new", t1="changed")
        assert storage_manager.archive_upsert([replaced]) == 1
        assert storage_manager.archive_count() == 2
        assert storage_manager.archive_get("a", ["k"]) == {"k": replaced}  # t2 is gone
        assert storage_manager.archive_get("b", ["k"]) == {"k": entry("b", "k", "other", t="z")}
        # Within one call the last entry for a key wins.
        storage_manager.archive_upsert([entry("a", "k", "first"), entry("a", "k", "last")])
        assert storage_manager.archive_get("a", ["k"])["k"].value == "last"
        assert storage_manager.archive_count("a") == 1

    def test_stream_is_ordered_by_category_then_name(self, storage_manager: StorageManager) -> None:
        keys = [
            ("b", "1"),
            ("a", "z"),
            ("a:b", "a"),  # ("a", "z") < ("a:b", "a"): categories compare first
            ("a", "B"),  # uppercase sorts before lowercase
            ("a", "\u00e9"),  # after "z"
            ("a", "a"),
            ("a", "ab"),
            ("a", "a b"),
            ("", "empty category"),
            ("b", "10"),
            ("b", "2"),
        ]
        storage_manager.archive_upsert([entry(c, n, f"{c}/{n}") for c, n in keys])
        assert [(e.category, e.name) for e in everything(storage_manager)] == sorted(keys)
        storage_manager.archive_upsert([entry("a", "z", "replaced")])  # keeps its place
        assert [(e.category, e.name) for e in everything(storage_manager)] == sorted(keys)

    @pytest.mark.parametrize("batch_size", [1, 7, 500])
    def test_stream_pages_agree_at_any_batch_size(
        self, storage_manager: StorageManager, batch_size: int
    ) -> None:
        entries = [entry(f"c{i % 3}", f"n{(i * 37) % 150:03d}", str(i)) for i in range(150)]
        storage_manager.archive_upsert(entries)
        expected = sorted(entries, key=lambda e: (e.category, e.name))
        assert everything(storage_manager, batch_size=batch_size) == expected
        in_c1 = [e for e in expected if e.category == "c1"]
        assert everything(storage_manager, category="c1", batch_size=batch_size) == in_c1

    def test_stream_closed_early_releases_the_store(self, storage_manager: StorageManager) -> None:
        entries = [entry("c", f"n{i:02d}") for i in range(20)]
        storage_manager.archive_upsert(entries)
        for _ in range(30):
            stream: Any = storage_manager.archive_stream(batch_size=1)  # a generator
            with closing(stream):
                assert next(stream) == entries[0]
        for _ in range(30):  # dropped without close()
            assert next(iter(storage_manager.archive_stream(batch_size=2))) == entries[0]
        storage_manager.archive_upsert([entry("c", "late")])
        assert storage_manager.archive_count() == 21
        assert storage_manager.create_record(sample_record("task", "after")).task_id == "after"

    def test_category_filter_and_counts(self, storage_manager: StorageManager) -> None:
        entries = [entry("webvh:a", "1"), entry("webvh:ab", "1"), entry("webvh:a", "2")]
        storage_manager.archive_upsert(entries)
        assert everything(storage_manager, category="webvh:a") == [entries[0], entries[2]]
        assert everything(storage_manager, category="webvh:ab") == [entries[1]]
        assert everything(storage_manager, category="webvh:") == []
        assert everything(storage_manager, category="missing") == []
        assert storage_manager.archive_count() == 3
        assert storage_manager.archive_count("webvh:a") == 2
        assert storage_manager.archive_count("webvh:ab") == 1
        assert storage_manager.archive_count("missing") == 0

    def test_get_returns_present_names_only(self, storage_manager: StorageManager) -> None:
        storage_manager.archive_upsert([entry("c", "x", "1"), entry("c", "y", "2")])
        storage_manager.archive_upsert([entry("other", "z", "3")])
        found = storage_manager.archive_get("c", ["y", "missing", "z", "x", "y"])
        assert found == {"x": entry("c", "x", "1"), "y": entry("c", "y", "2")}
        assert storage_manager.archive_get("c", ["missing"]) == {}
        assert storage_manager.archive_get("missing", ["x"]) == {}
        many = [f"n{i}" for i in range(600)]
        assert storage_manager.archive_get("c", [*many, "x"]) == {"x": entry("c", "x", "1")}

    def test_empty_inputs(self, storage_manager: StorageManager) -> None:
        assert storage_manager.archive_count() == 0
        assert everything(storage_manager) == []
        assert everything(storage_manager, category="c") == []
        assert storage_manager.archive_upsert([]) == 0
        assert storage_manager.archive_get("c", []) == {}
        backend: Any = storage_manager.backend  # backends get empty input too
        assert backend.archive_upsert([]) == 0
        assert backend.archive_get("c", []) == {}
        assert list(backend.archive_stream(None, 10)) == []
        assert backend.archive_count(None) == 0
        assert storage_manager.archive_count() == 0

    def test_archive_and_records_never_mix(self, storage_manager: StorageManager) -> None:
        records = {kind: sample_record(kind, "shared-key") for kind in KINDS}
        for record in records.values():
            storage_manager.create_record(record)
        # Categories a layout might use for records: kind names, tables, Askar categories.
        archived = [
            entry(category, "shared-key", "archived")
            for spec in KINDS.values()
            for category in {spec.name, spec.table, spec.category}
        ]
        storage_manager.archive_upsert(archived)

        for kind, record in records.items():
            assert [data_of(r) for r in storage_manager.list_records(kind)] == [data_of(record)]
            assert storage_manager.count_records(kind) == 1
            assert data_of(storage_manager.get_record(kind, "shared-key")) == data_of(record)
        assert storage_manager.archive_count() == len(archived)

        for kind in KINDS:  # records gone, archive intact
            assert storage_manager.delete_record(kind, "shared-key") is True
            assert storage_manager.list_records(kind) == []
        assert sorted(everything(storage_manager), key=lambda e: e.category) == sorted(
            archived, key=lambda e: e.category
        )
        # ...and the other way round: records written afterwards see no archived entry.
        storage_manager.bulk_upsert("task", [sample_record("task", "shared-key")])
        assert storage_manager.count_records("task") == 1
        assert storage_manager.archive_count() == len(archived)

    def test_digest_of_a_stored_entry_equals_the_original(
        self, storage_manager: StorageManager
    ) -> None:
        original = entry("c", "n", "caf\u00e9 \U0001f980", b="2", a="1")
        storage_manager.archive_upsert([original])
        (stored,) = everything(storage_manager)
        assert stored.digest == original.digest
        assert storage_manager.archive_get("c", ["n"])["n"].digest == original.digest

    @requires_capability(Capability.PERSISTENT)
    def test_archive_survives_close_and_reopen(
        self, storage_manager: StorageManager, storage_backend_config: dict[str, Any]
    ) -> None:
        entries = [entry("c", "n", "kept \u00e9", t="v"), entry("d", "m", "")]
        storage_manager.archive_upsert(entries)
        storage_manager.close()
        config = storage_backend_config
        reopened = open_storage(config["backend"], config.get("url"), **config.get("options", {}))
        try:
            reopened.init_db(recreate=False)
            assert everything(reopened) == entries
            reopened.init_db(recreate=True)
            assert reopened.archive_count() == 0
        finally:
            reopened.close()


class TestArchiveAbsent:
    def test_archive_without_the_capability_is_unsupported(
        self, storage_manager: StorageManager
    ) -> None:
        skip_if_capability(storage_manager, Capability.ARCHIVE)
        for call in (
            lambda: storage_manager.archive_upsert([entry("c", "n")]),
            lambda: storage_manager.archive_get("c", ["n"]),
            lambda: list(storage_manager.archive_stream()),
            lambda: storage_manager.archive_count(),
        ):
            with pytest.raises(UnsupportedOperationError, match=Capability.ARCHIVE):
                call()


async def everything_async(manager: AsyncStorageManager, **kwargs: Any) -> list[ArchivedEntry]:
    return [e async for e in manager.archive_stream(**kwargs)]


def _needs_archive(manager: AsyncStorageManager) -> None:
    if Capability.ARCHIVE not in manager.capabilities:
        pytest.skip(f"backend {manager.backend_name!r} lacks capability {Capability.ARCHIVE!r}")


@pytest.mark.asyncio
class TestAsyncArchive:
    """The archive on the async face (`AsyncStorageManager`): the same contract, awaited.
    (The sync tests above also run through each async face, on the `+async` variants.)"""

    async def test_entries_round_trip_exactly(
        self, async_storage_manager: AsyncStorageManager
    ) -> None:
        sm = async_storage_manager
        _needs_archive(sm)
        entries = [
            ArchivedEntry(f"cat{i % 2}", f"name-{i}", value, tags)
            for i, (value, tags) in enumerate(zip(AWKWARD_VALUES, AWKWARD_TAGS * 2, strict=False))
        ]
        assert await sm.archive_upsert(iter(entries)) == len(entries)  # any iterable
        by_key = {(e.category, e.name): e for e in entries}
        streamed = await everything_async(sm)
        assert [(e.category, e.name) for e in streamed] == sorted(by_key)
        for got in streamed:
            assert_same(got, by_key[(got.category, got.name)])
        names = [e.name for e in entries if e.category == "cat1"]
        found = await sm.archive_get("cat1", iter(names))
        assert sorted(found) == sorted(names)
        for name, got in found.items():
            assert_same(got, by_key[("cat1", name)])
        assert await sm.archive_count() == len(entries)
        assert await sm.archive_count("cat1") == len(names)

    async def test_upsert_replaces_and_get_returns_present_names_only(
        self, async_storage_manager: AsyncStorageManager
    ) -> None:
        sm = async_storage_manager
        _needs_archive(sm)
        await sm.archive_upsert([entry("a", "k", "old", t1="x", t2="y"), entry("b", "k")])
        replaced = entry("a", "k", "new", t1="changed")
        assert await sm.archive_upsert([replaced]) == 1
        assert await sm.archive_get("a", ["k", "missing", "k"]) == {"k": replaced}
        assert await sm.archive_get("missing", ["k"]) == {}
        many = [f"n{i}" for i in range(600)]
        assert await sm.archive_get("b", [*many, "k"]) == {"k": entry("b", "k")}
        assert await sm.archive_count() == 2

    @pytest.mark.parametrize("batch_size", [1, 7, 500])
    async def test_stream_pages_agree_at_any_batch_size(
        self, async_storage_manager: AsyncStorageManager, batch_size: int
    ) -> None:
        sm = async_storage_manager
        _needs_archive(sm)
        entries = [entry(f"c{i % 3}", f"n{(i * 37) % 150:03d}", str(i)) for i in range(150)]
        await sm.archive_upsert(entries)
        expected = sorted(entries, key=lambda e: (e.category, e.name))
        assert await everything_async(sm, batch_size=batch_size) == expected
        in_c1 = [e for e in expected if e.category == "c1"]
        assert await everything_async(sm, category="c1", batch_size=batch_size) == in_c1
        assert await everything_async(sm, category="c", batch_size=batch_size) == []

    async def test_stream_left_early_releases_the_store(
        self, async_storage_manager: AsyncStorageManager
    ) -> None:
        sm = async_storage_manager
        _needs_archive(sm)
        entries = [entry("c", f"n{i:02d}") for i in range(20)]
        await sm.archive_upsert(entries)
        for _ in range(30):  # more than any pool has connections
            async with aclosing(sm.archive_stream(batch_size=1)) as stream:
                assert await anext(stream) == entries[0]
        for _ in range(30):  # broken out of
            async for got in sm.archive_stream(batch_size=2):
                assert got == entries[0]
                break
        await sm.archive_upsert([entry("c", "late")])
        assert await sm.archive_count() == 21
        assert (await sm.create_record(sample_record("task", "after"))).task_id == "after"

    async def test_faces_agree(
        self, async_storage_manager: AsyncStorageManager, storage_backend_config: dict[str, Any]
    ) -> None:
        """What one face archives the other reads back, entry for entry."""
        sm = async_storage_manager
        _needs_archive(sm)
        if Capability.PERSISTENT not in sm.capabilities:
            pytest.skip("each face of an in-memory store has its own data")
        written = [entry("c", "from-async", "\u00e9", t="1")]
        await sm.archive_upsert(written)
        config = storage_backend_config
        sync = open_storage(config["backend"], config.get("url"), **config.get("options", {}))
        try:
            assert everything(sync) == written
            sync.archive_upsert([entry("c", "from-sync", "x")])
        finally:
            sync.close()
        assert [e.name for e in await everything_async(sm)] == ["from-async", "from-sync"]

    async def test_bad_arguments_are_refused_at_the_call(
        self, async_storage_manager: AsyncStorageManager
    ) -> None:
        sm = async_storage_manager
        _needs_archive(sm)
        for bad in (0, -1, "10", None, 10**9):
            with pytest.raises(ValidationError, match=r"^batch_size:"):
                sm.archive_stream(batch_size=bad)  # type: ignore[arg-type]  # not on iteration
        assert await sm.archive_upsert([]) == 0
        assert await sm.archive_get("c", []) == {}
        assert await everything_async(sm) == []
        assert await sm.archive_count() == 0


@pytest.mark.asyncio
class TestAsyncArchiveAbsent:
    async def test_archive_without_the_capability_is_unsupported(
        self, async_storage_manager: AsyncStorageManager
    ) -> None:
        sm = async_storage_manager
        if Capability.ARCHIVE in sm.capabilities:
            pytest.skip(f"backend {sm.backend_name!r} has capability {Capability.ARCHIVE!r}")
        for call in (
            lambda: sm.archive_upsert([entry("c", "n")]),
            lambda: sm.archive_get("c", ["n"]),
            lambda: everything_async(sm),
            lambda: sm.archive_count(),
        ):
            with pytest.raises(UnsupportedOperationError, match=Capability.ARCHIVE):
                await call()


class TestArchivedEntryDigest:
    """The digest re-runs and verify compare: equal content, equal digest."""

    def test_equal_content_gives_equal_digests(self) -> None:
        one = ArchivedEntry("c", "n", "value \u00e9", {"a": "1", "b": "2"})
        assert one.digest == ArchivedEntry("c", "n", "value \u00e9", {"b": "2", "a": "1"}).digest
        assert one.digest == ArchivedEntry("c", "n", "value \u00e9", dict(one.tags)).digest
        assert len(one.digest) == 64 and set(one.digest) <= set("0123456789abcdef")

    @pytest.mark.parametrize(
        "changed",
        [
            ArchivedEntry("c", "n", "value \u00e8", {"a": "1", "b": "2"}),  # value
            ArchivedEntry("c", "n", "value \u00e9 ", {"a": "1", "b": "2"}),  # one more space
            ArchivedEntry("c", "n", "value \u00e9", {"a": "1", "b": "3"}),  # a tag's value
            ArchivedEntry("c", "n", "value \u00e9", {"a": "1", "c": "2"}),  # a tag's name
            ArchivedEntry("c", "n", "value \u00e9", {"a": "1"}),  # a tag removed
            ArchivedEntry("c", "n", "value \u00e9", {"a": "1", "b": "2", "c": ""}),  # added
            ArchivedEntry("c", "n", '["value \u00e9", [["a", "1"], ["b", "2"]]]'),  # no tags
        ],
    )
    def test_a_changed_value_or_tag_changes_the_digest(self, changed: ArchivedEntry) -> None:
        one = ArchivedEntry("c", "n", "value \u00e9", {"a": "1", "b": "2"})
        assert changed.digest != one.digest
