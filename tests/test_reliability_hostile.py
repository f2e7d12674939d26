"""Hostile input against every backend at once: the same call, the same outcome.

Each generated call goes to all six backend variants. It must either round-trip exactly
(equal on read-back, and byte-equal through orjson, because a DID log is hashed) or be
refused with a ValidationError naming the field, with nothing written. A raw driver
error, a partial write, or two backends disagreeing is a failure: a did:webvh server
must behave the same whichever store it was configured with.

Reproduce: `uv run pytest tests/test_reliability_hostile.py -q`
(`--hypothesis-show-statistics` shows the inputs generated).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage_core import (
    LogEntry,
    StorageManager,
    Task,
    ValidationError,
    open_storage,
)
from storage_core.codec import record_to_dict
from storage_core.config import Settings
from storage_core.kinds import SPEC_BY_RECORD
from storage_core.validation import MAX_INDEXED_BYTES, MAX_KEY_BYTES, check_text
from tests.conftest import VARIANTS
from tests.pg import IN_CI

#: A small limit so generated documents cross it; the 16 MiB default is tested apart.
PAYLOAD_LIMIT = 64 * 1024
EXAMPLES = 40
HYPOTHESIS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)

INJECTION = [
    "' OR 1=1 --",
    "'; DROP TABLE log_entries; --",
    '" OR ""="',
    "%",
    "_",
    "*",
    "\\",
    "$in",
    "$or",
    "$not",
    "$like",
    '{"$or": [{"did": {"$neq": ""}}]}',
    '{"$in": ["a", "b"]}',
    "~did",
    "null",
    "true",
    "",
    " ",
    "\u2028",
    "\ufeff",
    "\x1b[31m",
    "a\x00b",
    "\ud800",
    "é" * 700,
]

any_char = st.characters(exclude_categories=())  # every code point, surrogates included
any_text = st.one_of(
    st.text(any_char, max_size=40),
    st.sampled_from(INJECTION),
    st.builds(lambda s, n: s * n, st.text(any_char, min_size=1, max_size=3), st.integers(1, 700)),
)
key_text = st.one_of(st.text(any_char, min_size=0, max_size=30), st.sampled_from(INJECTION))
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**65), max_value=2**65),
    st.floats(allow_nan=True, allow_infinity=True),
    any_text,
)
json_docs = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.text(any_char, max_size=10), inner, max_size=5),
    ),
    max_leaves=25,
)


def nested(depth: int) -> Any:
    doc: Any = "bottom"
    for level in range(depth):
        doc = [doc] if level % 2 else {"d": doc}
    return doc


#: Variants left out of the comparison because their server is not here (never under CI).
MISSING_VARIANTS: dict[str, str] = {}


def open_all(request: pytest.FixtureRequest, tmp: Path) -> dict[str, StorageManager]:
    """Every variant that can run here, provisioned empty, with PAYLOAD_LIMIT."""
    stores: dict[str, StorageManager] = {}
    for variant in VARIANTS:
        if variant in ("postgres", "askar-postgres"):
            pg = request.getfixturevalue("pg_server")
            reason = pg.reason_unavailable()
            if reason:
                if IN_CI:
                    pytest.fail(f"CI=true and PostgreSQL is required: {reason}")
                MISSING_VARIANTS[variant] = reason
                continue
            db = pg.create_database("webvh_rel_hostile")
            if variant == "postgres":
                backend, url = "sqlalchemy", pg.sqlalchemy_url(db)
            else:
                backend, url = "askar", pg.askar_uri(db, max_connections="4")
        else:
            from tests.conftest import variant_config

            config = variant_config(variant, request, tmp)
            backend, url = config["backend"], config["url"]
        manager = StorageManager(
            Settings.from_env(backend=backend, url=url, max_payload_bytes=PAYLOAD_LIMIT)
        )
        manager.init_db(recreate=True)
        stores[variant] = manager
    return stores


@pytest.fixture(scope="module")
def stores(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[dict[str, StorageManager]]:
    opened = open_all(request, tmp_path_factory.mktemp("hostile"))
    try:
        yield opened
    finally:
        for manager in opened.values():
            manager.close()


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    """("ok", value) or ("invalid", field). Anything else propagates and fails the test."""
    try:
        return "ok", call()
    except ValidationError as exc:
        return "invalid", exc.field


def comparable(record: Any) -> bytes | None:
    """A record as bytes, without timestamps (they differ between stores by design)."""
    if record is None:
        return None
    spec = SPEC_BY_RECORD[type(record)]
    data = record_to_dict(spec, record)
    data.pop("created_at", None)
    data.pop("updated_at", None)
    return orjson.dumps(data)


def snapshot(manager: StorageManager, kind: str) -> list[bytes | None]:
    """Everything of one kind, for "nothing was written" checks."""
    return [comparable(r) for r in manager.list_records(kind)]


def same_everywhere(results: dict[str, Any], *, must_store: bool) -> Any:
    """Every backend gave the same outcome; and where the input is plainly storable
    (`must_store`, judged by the model below, not by the library), that outcome is
    success: refusing a valid input everywhere is a failure too."""
    distinct = {repr(v) for v in results.values()}
    assert len(distinct) == 1, f"backends disagree: {results}"
    outcome_ = next(iter(results.values()))
    if must_store:
        assert all(r[0] == "ok" for r in _outcomes(outcome_)), f"valid input refused: {results}"
    return outcome_


def _outcomes(result: Any) -> list[tuple[str, Any]]:
    """The (status, value) pairs inside one backend's result (a pair, or a tuple of them)."""
    if isinstance(result, tuple) and result and isinstance(result[0], str):
        return [result]
    return [r for r in result if isinstance(r, tuple)]


# --- an independent model of "plainly storable", deliberately stricter than validation ----
def plain_text(value: Any, *, max_bytes: int, allow_empty: bool = True) -> bool:
    """A str with no NUL and no lone surrogate, within max_bytes of UTF-8."""
    if not isinstance(value, str) or "\x00" in value or (not value and not allow_empty):
        return False
    if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        return False
    return len(value.encode("utf-8")) <= max_bytes


def plain_json(value: Any) -> bool:
    """JSON made of str-keyed dicts, lists, plain text, bools, None, finite floats and
    integers well inside 64 bits, small enough for PAYLOAD_LIMIT."""

    def ok(item: Any) -> bool:
        if item is None or isinstance(item, bool):
            return True
        if isinstance(item, int):
            return -(2**53) <= item <= 2**53
        if isinstance(item, float):
            return item == item and item not in (float("inf"), float("-inf"))
        if isinstance(item, str):
            return plain_text(item, max_bytes=PAYLOAD_LIMIT)
        if isinstance(item, list):
            return all(ok(i) for i in item)
        if isinstance(item, dict):
            return all(plain_text(k, max_bytes=PAYLOAD_LIMIT) and ok(v) for k, v in item.items())
        return False

    return ok(value) and len(orjson.dumps(value)) <= PAYLOAD_LIMIT


def valid_indexed_text(value: Any) -> bool:
    try:
        check_text("value", value, max_bytes=MAX_INDEXED_BYTES)
        return True
    except ValidationError:
        return False


@HYPOTHESIS
@given(
    scid=key_text,
    did=any_text,
    namespace=any_text,
    logs=st.lists(json_docs, max_size=4),
    deactivated=st.booleans(),
)
def test_log_entries_round_trip_or_are_refused_the_same_everywhere(
    stores, scid, did, namespace, logs, deactivated
):
    """Create, read back, filter on every indexed field, count, delete."""
    results = {}
    for variant, manager in stores.items():
        before = snapshot(manager, "log_entry")
        result = outcome(
            lambda m=manager: m.create_log_entry(
                scid, did, "example.com", namespace, "id", logs, deactivated
            )
        )
        if result[0] == "invalid":
            assert snapshot(manager, "log_entry") == before, f"{variant}: partial write"
            results[variant] = result
            continue
        got = manager.get_log_entry(scid)
        assert got == result[1], variant
        assert got.logs == logs
        assert orjson.dumps(got.logs) == orjson.dumps(logs), f"{variant}: bytes differ"
        wanted = {"did": did, "namespace": namespace, "deactivated": deactivated}
        found = manager.get_log_entries(wanted)
        assert scid in [e.scid for e in found], variant
        assert all(
            (e.did, e.namespace, e.deactivated) == (did, namespace, deactivated) for e in found
        )
        assert manager.count_log_entries({"scid": scid}) == 1
        assert manager.delete_log_entry(scid) is True
        assert manager.get_log_entry(scid) is None
        results[variant] = ("ok", comparable(got))
    same_everywhere(
        results,
        must_store=plain_text(scid, max_bytes=MAX_KEY_BYTES, allow_empty=False)
        and plain_text(did, max_bytes=MAX_INDEXED_BYTES)
        and plain_text(namespace, max_bytes=MAX_INDEXED_BYTES)
        and plain_json(logs),
    )


@HYPOTHESIS
@given(content=json_docs, metadata=json_docs, name=any_text)
def test_any_json_document_round_trips_byte_exact_or_is_refused(stores, content, metadata, name):
    """Resource content is any JSON value: NaN/Infinity, >64-bit ints and lone
    surrogates must be refused; everything else must read back byte-identical."""
    results = {}
    for variant, manager in stores.items():
        before = snapshot(manager, "resource")
        result = outcome(
            lambda m=manager: m.create_resource(
                "r1", "scid", "did:x", "type", name, content, metadata
            )
        )
        if result[0] == "ok":
            got = manager.get_resource("r1")
            assert orjson.dumps(got.content) == orjson.dumps(content), variant
            assert orjson.dumps(got.metadata) == orjson.dumps(metadata), variant
            assert got.resource_name == name
            results[variant] = ("ok", comparable(got))
            manager.delete_resource("r1")
        else:
            assert snapshot(manager, "resource") == before, f"{variant}: partial write"
            results[variant] = result
    same_everywhere(
        results,
        must_store=plain_json(content)
        and plain_json(metadata)
        and plain_text(name, max_bytes=PAYLOAD_LIMIT),
    )


@HYPOTHESIS
@given(
    value=any_text,
    field=st.sampled_from(["did", "domain", "namespace", "identifier"]),
    extra=st.lists(any_text, max_size=3),
)
def test_filters_that_look_like_sql_or_wql_match_only_equal_values(stores, value, field, extra):
    """Injection-shaped filter values are plain data: they match exactly the records
    holding that value, on every backend, and never raise a driver error."""
    results = {}
    for variant, manager in stores.items():
        _seed_filter_records(manager)
        everything = manager.get_log_entries()
        single = outcome(lambda m=manager: [e.scid for e in m.get_log_entries({field: value})])
        many = outcome(
            lambda m=manager: [e.scid for e in m.get_log_entries({field: [value, *extra]})]
        )
        counted = outcome(lambda m=manager: m.count_log_entries({field: value}))
        if single[0] == "ok":
            assert single[1] == [e.scid for e in everything if getattr(e, field) == value]
            assert counted == ("ok", len(single[1]))
        if many[0] == "ok":
            wanted = {value, *extra}
            assert many[1] == [e.scid for e in everything if getattr(e, field) in wanted]
        assert len(manager.get_log_entries()) == len(everything)
        results[variant] = (single, many, counted)
    same_everywhere(
        results,
        must_store=all(plain_text(v, max_bytes=MAX_INDEXED_BYTES) for v in [value, *extra]),
    )


def _seed_filter_records(manager: StorageManager) -> None:
    """Records whose indexed fields hold injection strings, so filters have targets."""
    if manager.count_log_entries() > 0:
        return
    values = [v for v in INJECTION if valid_indexed_text(v)]
    for n, value in enumerate(values):
        manager.create_log_entry(f"seed-{n}", value, value, value, value, [{"n": n}])


@HYPOTHESIS
@given(message=st.one_of(st.none(), any_text), progress=json_docs, status=any_text)
def test_refused_updates_leave_the_record_untouched(stores, message, progress, status):
    """An update is all or nothing: a bad field anywhere means no field changes."""
    results = {}
    for variant, manager in stores.items():
        if manager.get_task("hostile-task") is None:
            manager.create_task("hostile-task", "hostile", "started", {"n": 0}, "original")
        before = manager.get_task("hostile-task")
        result = outcome(
            lambda m=manager: m.update_task(
                "hostile-task", message=message, progress=progress, status=status
            )
        )
        after = manager.get_task("hostile-task")
        if result[0] == "invalid":
            assert after == before, f"{variant}: refused update changed the record"
            results[variant] = result
        else:
            assert (after.message, after.status) == (message, status)
            assert orjson.dumps(after.progress) == orjson.dumps(progress)
            assert after.record_version == before.record_version + 1
            results[variant] = ("ok", comparable(after))
    same_everywhere(
        results,
        must_store=(message is None or plain_text(message, max_bytes=PAYLOAD_LIMIT))
        and isinstance(progress, dict)
        and plain_json(progress)
        and plain_text(status, max_bytes=MAX_INDEXED_BYTES),
    )


def test_every_variant_takes_part(stores):
    """The comparison is only as wide as the variants present: say which are missing."""
    if MISSING_VARIANTS:
        pytest.skip(
            "compared without " + ", ".join(f"{v} ({r})" for v, r in MISSING_VARIANTS.items())
        )
    assert set(stores) == set(VARIANTS)


# --- fixed edge cases: cheap, exact, on every variant -------------------------------------


def test_keys_differing_only_by_case_or_normalisation_stay_distinct(stores):
    """No backend may fold case, Unicode normalisation or trailing spaces into one key."""
    nfc = unicodedata.normalize("NFC", "é")
    nfd = unicodedata.normalize("NFD", "é")
    keys = ["a", "A", nfc, nfd, "ss", "ß", "x", "x ", " x", "\uff41", "i", "İ"]
    for variant, manager in stores.items():
        for key in keys:
            manager.create_test_log_entry(f"case-{key}", [key], {"k": key})
        for key in keys:
            got = manager.get_test_log_entry(f"case-{key}")
            assert got is not None and got.logs == [key], (variant, key)
        for key in keys:
            manager.create_log_entry(f"did-{key}", key, "d", "n", "i", [])
        for key in keys:
            assert [e.scid for e in manager.get_log_entries({"did": key})] == [f"did-{key}"], (
                variant,
                key,
            )
        for key in keys:
            manager.delete_test_log_entry(f"case-{key}")
            manager.delete_log_entry(f"did-{key}")


def test_payload_limit_boundary_is_exact_on_every_backend(stores):
    """A document of exactly the limit is stored; one byte more is refused, unwritten."""
    overhead = len(orjson.dumps([""]))
    fits = ["x" * (PAYLOAD_LIMIT - overhead)]
    too_big = ["x" * (PAYLOAD_LIMIT - overhead + 1)]
    assert len(orjson.dumps(fits)) == PAYLOAD_LIMIT
    for variant, manager in stores.items():
        manager.create_log_entry("limit-ok", "did:l", "d", "n", "i", fits)
        assert manager.get_log_entry("limit-ok").logs == fits, variant
        with pytest.raises(ValidationError) as refused:
            manager.create_log_entry("limit-no", "did:l", "d", "n", "i", too_big)
        assert refused.value.field == "logs"
        assert manager.get_log_entry("limit-no") is None
        with pytest.raises(ValidationError):
            manager.update_log_entry("limit-ok", logs=too_big)
        assert manager.get_log_entry("limit-ok").logs == fits
        manager.delete_log_entry("limit-ok")


def test_index_limits_and_wrong_types_are_validation_errors(stores):
    """Keys are limited to 65,536 UTF-8 bytes; non-strings are refused, never coerced."""
    for variant, manager in stores.items():
        manager.create_task("k" * 1024, "t", "s")
        assert manager.get_task("k" * 1024) is not None, variant
        manager.delete_task("k" * 1024)
        for bad_key, field in [
            ("k" * 65537, "task_id"),
            ("é" * 32769, "task_id"),
            (7, "task_id"),
            (None, "task_id"),
            (b"k", "task_id"),
            ("", "task_id"),
        ]:
            with pytest.raises(ValidationError) as refused:
                manager.create_task(bad_key, "t", "s")
            assert refused.value.field == field, (variant, bad_key)
        with pytest.raises(ValidationError) as refused:
            manager.get_tasks({"status": {"$ne": "x"}})
        assert refused.value.field == "filters.status"
        with pytest.raises(ValidationError) as refused:
            manager.get_tasks({"status = 'x' OR 1=1 --": "x"})
        assert refused.value.field.startswith("filters.")
        assert manager.get_tasks({"task_type": "t"}) == [], variant


def test_deep_nesting_at_the_encoder_limit_is_the_same_everywhere(stores):
    """Depth 200 stores exactly; depth 300 is refused by validation, not by a driver."""
    for variant, manager in stores.items():
        manager.create_resource("deep", "s", "d", "t", "n", nested(200))
        assert orjson.dumps(manager.get_resource("deep").content) == orjson.dumps(nested(200))
        manager.delete_resource("deep")
        with pytest.raises(ValidationError) as refused:
            manager.create_resource("deeper", "s", "d", "t", "n", nested(300))
        assert refused.value.field == "content", variant
        assert manager.get_resource("deeper") is None


def test_bulk_upsert_with_one_bad_record_writes_nothing(stores):
    """Import is all or nothing: one bad record among good ones leaves the store as is."""
    for variant, manager in stores.items():
        before = snapshot(manager, "task")
        batch = [Task(task_id=f"bulk-{n}", task_type="t", status="s") for n in range(5)]
        batch.append(
            Task(task_id="bulk-bad", task_type="t", status="s", progress={"x": float("nan")})
        )
        with pytest.raises(ValidationError):
            manager.bulk_upsert("task", batch)
        assert snapshot(manager, "task") == before, variant


def test_default_payload_limit_is_16_mib_and_a_near_limit_log_round_trips(tmp_path):
    """The shipped default: a ~16 MiB DID log is stored exactly; past it is refused."""
    limit = 16 * 1024 * 1024
    line = {"versionId": "1-x", "state": {"pad": "x" * 4000}}
    per_line = len(orjson.dumps(line)) + 1
    logs = [line] * ((limit - 2) // per_line)
    assert len(orjson.dumps(logs)) <= limit
    for backend, url in [
        ("sqlalchemy", f"sqlite:///{tmp_path}/big.db"),
        ("askar", f"sqlite://{tmp_path}/big-askar.db"),
    ]:
        with open_storage(backend, url) as manager:
            manager.init_db(recreate=True)
            manager.create_log_entry("big", "did:big", "d", "n", "i", logs)
            assert orjson.dumps(manager.get_log_entry("big").logs) == orjson.dumps(logs)
            with pytest.raises(ValidationError):
                manager.create_log_entry(
                    "bigger", "did:big", "d", "n", "i", [*logs, "x" * per_line * 2]
                )
            assert manager.count_log_entries() == 1


def test_open_storage_honours_max_payload_bytes(tmp_path):
    """`open_storage(..., max_payload_bytes=N)` must set the limit, not be ignored."""
    with open_storage("sqlalchemy", f"sqlite:///{tmp_path}/p.db", max_payload_bytes=100) as m:
        m.init_db()
        with pytest.raises(ValidationError):
            m.create_log_entry("p", "did:p", "d", "n", "i", ["x" * 200])
        assert m.count_log_entries() == 0


def test_non_storage_errors_never_escape(stores):
    """Wrong argument types surface as ValidationError naming the argument, not TypeError."""
    for variant, manager in stores.items():
        for call in [
            lambda m=manager: m.get_log_entries(filters=["did"]),
            lambda m=manager: m.get_log_entries(limit=-1),
            lambda m=manager: m.get_log_entries(offset="1"),
            lambda m=manager: m.update_task("nope", expected_version=0, status="x"),
            lambda m=manager: m.update_task("nope", record_version=5),
            lambda m=manager: m.create_or_update_policy("p", ["not", "a", "dict"]),
            lambda m=manager: m.create_record(
                LogEntry(scid="s", did=1, domain="d", namespace="n", identifier="i", logs=[])
            ),
        ]:
            with pytest.raises(ValidationError) as refused:
                call()
            assert refused.value.field, variant
        assert manager.count_log_entries({"scid": "s"}) == 0, variant
