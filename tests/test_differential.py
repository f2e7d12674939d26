"""Differential test: every backend variant gets the same hostile calls and must agree.

One hypothesis test generates ids, field values, JSON documents (deep, wide, Unicode
edge cases, big and negative-zero numbers, strings near the payload limit, Python values
that are not JSON), timestamps, filters, limits, offsets and batch sizes, and runs each
call on all seven variants at once: SQLAlchemy on a SQLite file, SQLite in memory and
PostgreSQL; Askar on a SQLite file, in memory and on PostgreSQL; the memory plugin
(examples/memory_backend). Every call must either succeed everywhere with the same
result (same record, same JSON text with the same key order, same page, same stream) or
be refused everywhere with the same ValidationError. Any other StorageError, or two
variants disagreeing, fails the test and hypothesis shrinks the input.

CI runs the `ci` profile (tests/conftest.py); a longer local run:
`uv run pytest tests/test_differential.py --hypothesis-profile=long -p no:cacheprovider --no-cov`
"""

from __future__ import annotations

import dataclasses
import enum
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from storage_core import Resource, StorageManager
from storage_core.config import Settings
from storage_core.errors import (
    ConflictError,
    DuplicateRecordError,
    StorageError,
    ValidationError,
)
from storage_core.kinds import RESOURCE
from storage_core.validation import MAX_BATCH_SIZE, MAX_FILTER_VALUES, MAX_JSON_DEPTH
from tests.conftest import VARIANTS, variant_config
from tests.pg import IN_CI

#: Small, so generated strings reach it; the 16 MiB default is tested in the hostile suite.
PAYLOAD_LIMIT = 32 * 1024
ALL_VARIANTS = [*VARIANTS, "memory"]
JSON_FIELDS = ("content", "metadata", "proof")
TIMESTAMPS = ("created_at", "updated_at")


def open_variants(
    request: pytest.FixtureRequest, tmp: Path, **overrides: Any
) -> dict[str, StorageManager]:
    """Every variant, provisioned empty (PostgreSQL ones in databases of their own). A
    missing PostgreSQL server skips, and fails under CI=true."""
    stores: dict[str, StorageManager] = {}
    for variant in ALL_VARIANTS:
        if variant in ("postgres", "askar-postgres"):
            pg = request.getfixturevalue("pg_server")
            reason = pg.reason_unavailable()
            if reason:
                for store in stores.values():
                    store.close()
                if IN_CI:
                    pytest.fail(f"CI=true and PostgreSQL is required: {reason}")
                pytest.skip(reason)
            db = pg.create_database("webvh_diff")
            backend, url = (
                ("sqlalchemy", pg.sqlalchemy_url(db))
                if variant == "postgres"
                else ("askar", pg.askar_uri(db, max_connections="4"))
            )
        elif variant == "memory":
            backend, url = "memory", None
        else:
            config = variant_config(variant, request, tmp)
            backend, url = config["backend"], config["url"]
        manager = StorageManager(Settings.from_env(backend=backend, url=url, **overrides))
        manager.init_db(recreate=True)
        stores[variant] = manager
    return stores


@pytest.fixture(scope="module")
def stores(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[dict[str, StorageManager]]:
    opened = open_variants(
        request, tmp_path_factory.mktemp("differential"), max_payload_bytes=PAYLOAD_LIMIT
    )
    yield opened
    for store in opened.values():
        store.close()


# --- what is generated ------------------------------------------------------------------

EDGE_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "\udfff",
    "\ud83d\ude00",  # a surrogate pair as two code points
    "😀",
    "\ufeff",
    "\u2028\u2029",
    "\uffff",
    "\U0010ffff",
    "é",
    "e\u0301",
    "\x1b[31m",
    "' OR 1=1 --",
    '{"$in": ["a"]}',
    "%_*\\",
    "null",
]
any_char = st.characters(exclude_categories=())  # every code point, surrogates included
#: Storable text, drawn more often so that most calls get as far as the backends.
clean_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"))
text = st.one_of(
    clean_text,
    clean_text,
    st.text(any_char, max_size=12),
    st.sampled_from(EDGE_TEXT),
    st.builds(lambda s, n: s * n, st.sampled_from(["x", "é", "😀"]), st.integers(1000, 1100)),
)
numbers = st.one_of(
    st.integers(-(2**64), 2**64 + 1),
    st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 0, -0]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([-0.0, 0.1, 1e308, 5e-324, -1e-320, 2.0**53 + 1]),
)


class Colour(enum.Enum):
    RED = "red"


class Size(enum.IntEnum):
    ONE = 1


class Name(str):
    """A str subclass: not exactly a str."""


@dataclasses.dataclass
class Point:
    x: int


NOT_JSON = st.sampled_from(
    [
        (1, 2),
        datetime(2026, 1, 1, tzinfo=UTC),
        uuid.UUID(int=7),
        Colour.RED,
        Size.ONE,
        Name("n"),
        Point(1),
        {1, 2},
        b"bytes",
        {1: "int key"},
        {Name("k"): 1},
    ]
)


def nested(depth: int, leaf: Any = "bottom") -> Any:
    """`depth` levels of alternating dicts and lists around `leaf`."""
    doc = leaf
    for level in range(depth):
        doc = [doc] if level % 2 else {"d": doc}
    return doc


json_scalars = st.one_of(st.none(), st.booleans(), numbers, text)
json_docs = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(text, inner, max_size=4),  # dict order is generated order
    ),
    max_leaves=12,
)
documents = st.one_of(
    json_docs,
    json_docs.map(lambda doc: {"wrapped": doc}),
    st.builds(nested, st.sampled_from([MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1])),
    st.builds(lambda n: {f"k{i}": i for i in range(n)}, st.integers(200, 600)),  # wide
    st.builds(lambda n: ["y" * n], st.integers(PAYLOAD_LIMIT - 40, PAYLOAD_LIMIT)),  # near limit
    st.builds(lambda bad, doc: {"ok": doc, "bad": [bad]}, NOT_JSON, json_docs),
    NOT_JSON,
)
timestamps = st.one_of(
    st.none(),
    st.datetimes(
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-14))]
        )
    ),
    st.sampled_from(
        [
            datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),
            datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-14))),
            datetime(1, 1, 1, tzinfo=UTC),
            datetime(2026, 1, 1),  # naive
        ]
    ),
)
big = st.sampled_from([2**31, 2**32, 2**62, 2**63 - 1, 2**63, 2**64 + 1])
hostile_counts = st.one_of(st.integers(-2, 0), big, st.just(True), st.just(1.0))
limits = st.integers(0, 4).flatmap(
    lambda n: st.one_of(st.none(), hostile_counts) if n == 0 else st.none() | st.integers(0, 5)
)
offsets = st.integers(0, 4).flatmap(lambda n: hostile_counts if n == 0 else st.integers(0, 5))
batch_sizes = st.integers(0, 4).flatmap(
    lambda n: (
        st.one_of(hostile_counts, st.sampled_from([MAX_BATCH_SIZE, MAX_BATCH_SIZE + 1]))
        if n == 0
        else st.integers(1, 4)
    )
)
filter_values = st.one_of(
    text,
    st.lists(text, max_size=3),
    st.booleans(),
    st.just([f"v{i}" for i in range(MAX_FILTER_VALUES + 1)]),
)
filter_fields = st.sampled_from(["scid", "did", "resource_type", "resource_id"])
plain_values = st.sampled_from(["s1", "s2", "r1", "r2", "schema", "did:webvh:s1:example.com"])
hostile_filters = st.dictionaries(
    filter_fields | st.just("content"), filter_values, min_size=1, max_size=2
)
valid_filters = st.none() | st.dictionaries(
    filter_fields, plain_values | st.lists(plain_values, max_size=3), max_size=2
)
filters = st.integers(0, 3).flatmap(lambda n: hostile_filters if n == 0 else valid_filters)


def mostly(valid: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]) -> Any:
    """`valid` 7 times in 8: with several fields per call, most calls still get as far as
    the backends, while every field is hostile now and then."""
    return st.integers(0, 7).flatmap(lambda n: hostile if n == 0 else valid)


key_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1)


@st.composite
def resources(draw: st.DrawFn) -> Resource:
    return Resource(
        resource_id=draw(mostly(st.sampled_from(["r1", "r2", "r3"]) | key_text, text)),
        scid=draw(mostly(st.sampled_from(["s1", "s2"]) | key_text, text)),
        did=draw(mostly(st.just("did:webvh:s1:example.com") | key_text, text)),
        resource_type=draw(mostly(st.sampled_from(["schema", "cred_def"]) | key_text, text)),
        resource_name=draw(mostly(clean_text, text)),
        content=draw(mostly(json_docs, documents)),
        metadata=draw(st.one_of(st.none(), mostly(json_docs, documents))),
        proof=draw(st.one_of(st.none(), json_docs)),
        created_at=draw(timestamps),
        updated_at=draw(timestamps),
    )


# --- comparing outcomes -----------------------------------------------------------------


def canonical(record: Any, *, with_timestamps: bool) -> Any:
    """A record as comparable data: JSON fields as their exact JSON text (key order,
    -0.0 vs 0.0, 1 vs 1.0 all count), timestamps only when the caller set them."""
    if record is None:
        return None
    out: dict[str, Any] = {}
    for field in dataclasses.fields(record):
        value = getattr(record, field.name)
        if field.name in TIMESTAMPS and not with_timestamps:
            continue
        out[field.name] = orjson.dumps(value) if field.name in JSON_FIELDS else value
    return out


def outcome(call: Callable[[], Any], shape: Callable[[Any], Any]) -> tuple[Any, ...]:
    try:
        return ("ok", shape(call()))
    except ValidationError as exc:
        return ("refused", exc.field, str(exc))
    except (DuplicateRecordError, ConflictError) as exc:  # a key drawn twice: fine, if alike
        return ("rejected", type(exc).__name__, str(exc))
    except StorageError as exc:  # not expected from any input: reported as a divergence
        return ("failed", type(exc).__name__, str(exc))


def agree(
    stores: dict[str, StorageManager],
    what: str,
    call: Callable[[StorageManager], Any],
    shape: Callable[[Any], Any] = lambda value: value,
) -> tuple[Any, ...]:
    """Run `call` on every variant; all must give the same outcome, never "failed"."""
    results = {name: outcome(lambda m=m: call(m), shape) for name, m in stores.items()}
    first = next(iter(results.values()))
    differing = {name: r for name, r in results.items() if r != first}
    assert not differing, f"{what}: {next(iter(results))} gave {first!r}, but {differing!r}"
    assert first[0] != "failed", f"{what}: every variant failed the same way: {first!r}"
    event(f"{what}: {first[0]} {first[1] if first[0] == 'refused' else ''}")
    return first


def keys_of(records: Any) -> list[str]:
    return [r.resource_id for r in records]


HYPOTHESIS = settings(
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
        HealthCheck.large_base_example,
    ],
    database=None,
)


@HYPOTHESIS
@given(
    record=resources(),
    changes=st.dictionaries(
        st.sampled_from(["content", "metadata", "content", "resource_name", "scid"])
        | st.sampled_from(["record_version", "resource_id", "created_at"]),
        st.one_of(documents, text),
        min_size=1,
        max_size=2,
    ),
    bulk=st.lists(resources(), max_size=2),
    where=filters,
    limit=limits,
    offset=offsets,
    batch_size=batch_sizes,
)
def test_every_backend_agrees_on_every_input(
    stores, record, changes, bulk, where, limit, offset, batch_size
):
    key = record.resource_id
    exact = lambda r: canonical(r, with_timestamps=False)  # noqa: E731
    exact_list = lambda rs: [exact(r) for r in rs]  # noqa: E731

    created = agree(stores, "create", lambda m: m.create_record(record), exact)
    if created[0] == "ok":
        stored = created[1]
        given_fields = canonical(record, with_timestamps=False)
        assert stored == {**given_fields, "record_version": 1}, "create changed the record"
    read = agree(stores, "get", lambda m: m.get_record(RESOURCE, key), exact)
    if created[0] == "ok":
        assert read == created, "read back differs from what create returned"
    # keys repeat across examples: a replace writes this example's document regardless
    replaced = agree(stores, "upsert", lambda m: m.upsert_record(record), exact)
    if replaced[0] == "ok":
        version = replaced[1]["record_version"]
        assert replaced[1] == {
            **canonical(record, with_timestamps=False),
            "record_version": version,
        }
        assert agree(stores, "get after upsert", lambda m: m.get_record(RESOURCE, key), exact) == (
            replaced
        )
    agree(
        stores,
        "update",
        lambda m: m.update_record(RESOURCE, key, **changes),
        exact,
    )
    agree(stores, "get after update", lambda m: m.get_record(RESOURCE, key), exact)
    written = agree(stores, "bulk_upsert", lambda m: m.bulk_upsert(RESOURCE, bulk))
    for item in bulk:
        agree(
            stores,
            "get after bulk",
            lambda m, k=item.resource_id: m.get_record(RESOURCE, k),
            # timestamps the caller gave are stored as given; missing ones are "now"
            lambda r, given=written[0] == "ok" and item.created_at is not None: canonical(
                r, with_timestamps=given
            ),
        )
    agree(
        stores,
        "list",
        lambda m: m.list_records(RESOURCE, where, limit, offset),
        exact_list,
    )
    agree(stores, "count", lambda m: m.count_records(RESOURCE, where))
    agree(
        stores,
        "stream",
        lambda m: list(m.stream_records(RESOURCE, where, batch_size)),
        exact_list,
    )


def test_every_variant_takes_part(stores):
    """The comparison above is only as wide as the variants it ran on."""
    assert sorted(stores) == sorted(ALL_VARIANTS)
