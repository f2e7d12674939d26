"""The shared input checks, directly: what is refused and what each error names."""

from __future__ import annotations

import dataclasses
import decimal
import enum
import marshal
import math
import sys
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from storage_core.codec import dumps_fields
from storage_core.errors import ValidationError
from storage_core.kinds import LOG_ENTRY, TASK
from storage_core.records import LogEntry
from storage_core.validation import (
    MAX_BATCH_SIZE,
    MAX_FILTER_VALUES,
    MAX_INDEXED_BYTES,
    MAX_JSON_DEPTH,
    MAX_KEY_BYTES,
    _marshal_exact,
    check_json,
    check_timestamp,
    normalize_filters,
    validate_batch_size,
    validate_changes,
    validate_paging,
    validate_record,
    validate_records,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
VECTORS = Path(__file__).parent / "data" / "vectors"


def entry(**overrides):
    fields = dict(
        scid="s",
        did="did:webvh:s:example.com:ns:id",
        domain="example.com",
        namespace="ns",
        identifier="id",
        logs=[{"a": 1}],
    )
    return LogEntry(**{**fields, **overrides})


def test_valid_record_gets_timestamps():
    rec = validate_record(LOG_ENTRY, entry(), max_payload=1 << 20, now=NOW)
    assert rec.created_at == rec.updated_at == NOW


@pytest.mark.parametrize(
    ("overrides", "field", "problem"),
    [
        ({"scid": ""}, "scid", "empty"),
        ({"scid": "a\x00b"}, "scid", "NUL"),
        ({"scid": "\ud800"}, "scid", "surrogate"),
        ({"scid": "x" * 65537}, "scid", "limit"),
        ({"did": 5}, "did", "string"),
        ({"logs": {"not": "a list"}}, "logs", "list"),
        ({"logs": [math.nan]}, "logs", "nan"),
        ({"logs": [float("inf")]}, "logs", "inf"),
        ({"logs": [{1: "int key"}]}, "logs", "JSON"),
        ({"logs": [2**70]}, "logs", "JSON"),
        ({"deactivated": "False"}, "deactivated", "bool"),
        ({"created_at": datetime(2026, 1, 1)}, "created_at", "timezone"),
        ({"record_version": 0}, "record_version", ">= 1"),
    ],
)
def test_bad_fields_are_named(overrides, field, problem):
    with pytest.raises(ValidationError) as info:
        validate_record(LOG_ENTRY, entry(**overrides), max_payload=1 << 20, now=NOW)
    assert info.value.field == field
    assert problem.lower() in info.value.problem.lower()


def test_deep_nesting_is_refused():
    doc: list = []
    for _ in range(300):
        doc = [doc]
    with pytest.raises(ValidationError, match="logs"):
        validate_record(LOG_ENTRY, entry(logs=doc), max_payload=1 << 20, now=NOW)


def test_payload_limit():
    with pytest.raises(ValidationError, match="limit is 100"):
        check_json("content", "x" * 200, max_bytes=100)


def test_nul_inside_json_is_storable():
    assert check_json("content", {"a": "x\x00y"}, max_bytes=100) == b'{"a":"x\\u0000y"}'


def test_filters_normalise_and_reject_unknown_keys():
    assert normalize_filters(TASK, {"status": ["a", "b", "a"], "task_type": "t"}) == {
        "status": ("a", "b"),
        "task_type": ("t",),
    }
    with pytest.raises(ValidationError) as info:
        normalize_filters(TASK, {"status; DROP TABLE tasks": "x"})
    assert info.value.field == "filters.status; DROP TABLE tasks"
    with pytest.raises(ValidationError, match=r"filters\.deactivated"):
        normalize_filters(LOG_ENTRY, {"deactivated": "true"})


def test_changes_cannot_touch_key_version_or_timestamps():
    for name in ("scid", "record_version", "created_at", "nope"):
        with pytest.raises(ValidationError) as info:
            validate_changes(LOG_ENTRY, {name: "x"}, max_payload=100)
        assert info.value.field == name
    with pytest.raises(ValidationError, match="at least one"):
        validate_changes(LOG_ENTRY, {}, max_payload=100)


@pytest.mark.parametrize(("limit", "offset"), [(-1, 0), (True, 0), (1, -5), ("3", 0)])
def test_paging_is_checked(limit, offset):
    with pytest.raises(ValidationError):
        validate_paging(limit, offset)


def nested(depth: int, leaf: str = "leaf") -> object:
    doc: object = leaf
    for _ in range(depth):
        doc = [doc]
    return doc


def test_json_depth_limit_is_exact():
    assert check_json("content", nested(MAX_JSON_DEPTH), max_bytes=1 << 20)
    with pytest.raises(
        ValidationError,
        match=f"content: nests JSON deeper than the limit of {MAX_JSON_DEPTH} levels",
    ):
        check_json("content", nested(MAX_JSON_DEPTH + 1), max_bytes=1 << 20)
    loop: list = []
    loop.append(loop)  # a cycle is refused the same way, not a RecursionError
    with pytest.raises(ValidationError, match="deeper"):
        check_json("content", loop, max_bytes=1 << 20)


def test_a_record_nested_to_the_limit_encodes_exactly_in_one_object():
    """The Askar layout wraps every record in one more object (codec.dumps_fields)."""
    fields = {"scid": "s", "logs": nested(MAX_JSON_DEPTH), "n": -0.0, "x": None}
    encoded = dumps_fields(fields)
    assert orjson.loads(encoded) == fields
    small = {"a": [1, {"b": -0.0}], "é": "ü", "c": None}
    assert dumps_fields(small) == orjson.dumps(small)
    assert dumps_fields({}) == b"{}"


@pytest.mark.parametrize(
    ("stamp", "ok"),
    [
        (datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))), False),
        (datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-14))), False),
        (datetime(1, 1, 1, 14, tzinfo=timezone(timedelta(hours=14))), True),
    ],
)
def test_timestamps_must_exist_in_utc(stamp, ok):
    if ok:
        assert check_timestamp("created_at", stamp) == stamp
    else:
        with pytest.raises(ValidationError, match="outside years 1-9999 in UTC") as info:
            check_timestamp("created_at", stamp)
        assert info.value.field == "created_at"


def test_counts_are_bounded_to_64_bits_and_batch_size_to_its_maximum():
    assert validate_paging(2**63 - 1, 2**63 - 1) == (2**63 - 1, 2**63 - 1)
    for limit, offset, field in ((2**63, 0, "limit"), (None, 2**63, "offset")):
        with pytest.raises(ValidationError) as info:
            validate_paging(limit, offset)
        assert info.value.field == field
    assert validate_batch_size(MAX_BATCH_SIZE) == MAX_BATCH_SIZE
    for bad in (0, True, 1.0, MAX_BATCH_SIZE + 1, 2**63):
        with pytest.raises(ValidationError, match="batch_size"):
            validate_batch_size(bad)


def test_filter_values_are_counted_over_every_field():
    half = [f"v{i}" for i in range(MAX_FILTER_VALUES // 2)]
    assert len(normalize_filters(TASK, {"task_id": half, "status": half})["status"]) == len(half)
    with pytest.raises(ValidationError, match=f"at most {MAX_FILTER_VALUES}") as info:
        normalize_filters(TASK, {"task_id": half, "status": [*half, "one more"]})
    assert info.value.field == "filters.status"


def test_a_single_string_filter_passes_exactly_what_check_text_passes():
    """One plain string on a string field takes a fast path: it must accept and refuse
    exactly what the full check does (length in bytes, NUL, the key's larger limit)."""

    class Text(str):
        pass

    accepted = {
        "namespace": ["", "a", "x" * MAX_INDEXED_BYTES, "é" * (MAX_INDEXED_BYTES // 2), Text("a")],
        "scid": ["k" * MAX_KEY_BYTES],
    }
    for name, values in accepted.items():
        for value in values:
            assert normalize_filters(LOG_ENTRY, {name: value}) == {name: (value,)}
    refused = {
        "namespace": [
            ("x" * (MAX_INDEXED_BYTES + 1), f"is {MAX_INDEXED_BYTES + 1} bytes"),
            ("é" * (MAX_INDEXED_BYTES // 2 + 1), f"is {MAX_INDEXED_BYTES + 2} bytes"),
            ("a\x00b", "must not contain NUL"),
            ("\ud800", "unpaired surrogate"),
        ],
        "scid": [("k" * (MAX_KEY_BYTES + 1), f"is {MAX_KEY_BYTES + 1} bytes")],
    }
    for name, cases in refused.items():
        for value, problem in cases:
            with pytest.raises(ValidationError, match=problem) as info:
                normalize_filters(LOG_ENTRY, {name: value})
            assert info.value.field == f"filters.{name}"


def test_a_single_string_filter_still_counts_toward_the_value_limit():
    full = [f"v{i}" for i in range(MAX_FILTER_VALUES)]
    assert normalize_filters(TASK, {"task_id": full[:-1], "status": "x"})["status"] == ("x",)
    with pytest.raises(ValidationError, match=f"at most {MAX_FILTER_VALUES}") as info:
        normalize_filters(TASK, {"task_id": full, "status": "x"})
    assert info.value.field == "filters.status"


# --- the exact-type check: marshal at C speed first, the walk when marshal cannot tell ---
class _IntEnum(enum.IntEnum):
    A = 1


class _StrEnum(enum.StrEnum):
    A = "a"


class _MixinEnum(str, enum.Enum):  # noqa: UP042 (the mixin, not StrEnum)
    A = "a"


class _PlainEnum(enum.Enum):
    A = 1


class _Str(str):
    pass


@dataclasses.dataclass
class _Point:
    x: int = 1


_NOT_JSON = ", not JSON: JSON fields hold only dict, list, str, int, float, bool and None"
_TOO_DEEP = f"nests JSON deeper than the limit of {MAX_JSON_DEPTH} levels"


def _self_list(extra: object = None) -> list:
    loop: list = [] if extra is None else [extra]
    loop.append(loop)
    return loop


def _self_dict(extra: object = None) -> dict:
    loop: dict = {} if extra is None else {"x": extra}
    loop["self"] = loop
    return loop


#: (name, build(extra), exact problem). `build(None)` is the document itself; `build("(")`
#: the same document with a "(" string beside the bad value, which sends it through the
#: walk first, so both paths must word it the same.
_REFUSED = [
    ("tuple", lambda x: (1, 2) if x is None else (x, 2), f"content is a tuple{_NOT_JSON}"),
    (
        "nested tuple",
        lambda x: {"a": [1, (2, 3)], "z": x},
        f"content['a'][1] is a tuple{_NOT_JSON}",
    ),
    (
        "tuple key",
        lambda x: {(1, 2): "x", "z": x},
        "content[(1, 2)] has a tuple key; JSON keys are str",
    ),
    ("bytes", lambda x: {"a": [b"x"], "z": x}, f"content['a'][0] is a bytes{_NOT_JSON}"),
    (
        "bytearray",
        lambda x: {"a": [bytearray(b"x")], "z": x},
        f"content['a'][0] is a bytearray{_NOT_JSON}",
    ),
    (
        "memoryview",
        lambda x: {"a": [memoryview(b"x")], "z": x},
        f"content['a'][0] is a memoryview{_NOT_JSON}",
    ),
    ("complex", lambda x: {"a": [1j], "z": x}, f"content['a'][0] is a complex{_NOT_JSON}"),
    ("set", lambda x: {"a": [{1}], "z": x}, f"content['a'][0] is a set{_NOT_JSON}"),
    (
        "frozenset",
        lambda x: {"a": [frozenset({1})], "z": x},
        f"content['a'][0] is a frozenset{_NOT_JSON}",
    ),
    ("Ellipsis", lambda x: {"a": [...], "z": x}, f"content['a'][0] is a ellipsis{_NOT_JSON}"),
    (
        "StopIteration",
        lambda x: {"a": [StopIteration], "z": x},
        f"content['a'][0] is a type{_NOT_JSON}",
    ),
    ("int key", lambda x: {1: "v", "z": x}, "content[1] has a int key; JSON keys are str"),
    (
        "None key",
        lambda x: {None: "v", "z": x},
        "content[None] has a NoneType key; JSON keys are str",
    ),
    ("bool key", lambda x: {True: "v", "z": x}, "content[True] has a bool key; JSON keys are str"),
    ("float key", lambda x: {1.5: "v", "z": x}, "content[1.5] has a float key; JSON keys are str"),
    (
        "str subclass key",
        lambda x: {_Str("k"): "v", "z": x},
        "content['k'] has a _Str key; JSON keys are str",
    ),
    ("str subclass", lambda x: {"a": [_Str("v")], "z": x}, f"content['a'][0] is a _Str{_NOT_JSON}"),
    ("IntEnum", lambda x: {"a": [_IntEnum.A], "z": x}, f"content['a'][0] is a _IntEnum{_NOT_JSON}"),
    ("StrEnum", lambda x: {"a": [_StrEnum.A], "z": x}, f"content['a'][0] is a _StrEnum{_NOT_JSON}"),
    (
        "str Enum",
        lambda x: {"a": [_MixinEnum.A], "z": x},
        f"content['a'][0] is a _MixinEnum{_NOT_JSON}",
    ),
    (
        "Enum",
        lambda x: {"a": [_PlainEnum.A], "z": x},
        f"content['a'][0] is a _PlainEnum{_NOT_JSON}",
    ),
    ("UUID", lambda x: {"a": [uuid.UUID(int=5)], "z": x}, f"content['a'][0] is a UUID{_NOT_JSON}"),
    (
        "datetime",
        lambda x: {"a": [datetime(2026, 1, 1)], "z": x},
        f"content['a'][0] is a datetime{_NOT_JSON}",
    ),
    (
        "Decimal",
        lambda x: {"a": [decimal.Decimal("1.5")], "z": x},
        f"content['a'][0] is a Decimal{_NOT_JSON}",
    ),
    ("dataclass", lambda x: {"a": [_Point()], "z": x}, f"content['a'][0] is a _Point{_NOT_JSON}"),
    (
        "2**64",
        lambda x: {"a": [2**64], "z": x},
        "is not storable as JSON: Integer exceeds 64-bit range",
    ),
    (
        "surrogate",
        lambda x: {"a": "\ud800", "z": x},
        "is not storable as JSON: str is not valid UTF-8: surrogates not allowed",
    ),
    ("NaN", lambda x: {"a": [math.nan], "z": x}, "contains nan, which JSON cannot represent"),
    ("inf", lambda x: {"a": [math.inf], "z": x}, "contains inf, which JSON cannot represent"),
    ("depth 255", lambda x: nested(MAX_JSON_DEPTH + 1, x or "leaf"), _TOO_DEEP),
    ("depth 2500, past marshal's limit", lambda x: nested(2500, x or "leaf"), _TOO_DEEP),
    ("list containing itself", _self_list, _TOO_DEEP),
    ("dict containing itself", _self_dict, _TOO_DEEP),
]


@pytest.mark.parametrize("through_walk", [False, True], ids=["marshal first", "walk first"])
@pytest.mark.parametrize(
    ("build", "problem"), [c[1:] for c in _REFUSED], ids=[c[0] for c in _REFUSED]
)
def test_every_non_json_value_gets_the_walks_exact_error(build, problem, through_walk):
    doc = build("(" if through_walk else None)
    if through_walk:
        assert _marshal_exact(doc) is None
    with pytest.raises(ValidationError) as info:
        check_json("content", doc, max_bytes=1 << 20)
    assert (info.value.field, info.value.problem) == ("content", problem)


def _tuple_codes(data: bytes) -> list[int]:
    return [b for b in data if b in b"()\xa8\xa9"]


def _big() -> tuple:
    return tuple([None] * 300)  # over 255 items: marshal writes "(" rather than ")"


@pytest.mark.parametrize(
    ("doc", "code"),
    [
        ({"a": [1, tuple([2, 3])]}, ord(")")),  # refcount 1: no FLAG_REF
        ({"a": [1, _big()]}, ord("(")),
        ({"a": [1, _pair := (2, 3), _pair]}, 0xA9),  # shared: written once, with FLAG_REF
        ({"a": [1, _many := _big(), _many]}, 0xA8),
    ],
    ids=["small", "large", "small shared", "large shared"],
)
def test_a_tuple_is_refused_by_its_marshal_type_code_alone(doc, code):
    """Each code on its own (no other of the four bytes in the output): the fast check
    must send the document to the walk for it, or the tuple is stored as a list."""
    assert _tuple_codes(marshal.dumps(doc, 4)) == [code]
    assert _marshal_exact(doc) is None
    with pytest.raises(ValidationError, match=r"content\['a'\]\[1\] is a tuple, not JSON"):
        check_json("content", doc, max_bytes=1 << 20)


@pytest.mark.parametrize(
    "doc",
    [
        nested(MAX_JSON_DEPTH),
        {"a": "(x)", "b": ["(", ")"], "c": "\xa8\xa9"},
        {"x" * 40: "y" * 41, "n": [40, 41, 168, 169, -(2**63), 2**64 - 1]},
        {"bool": [True, False, None], "f": [0.5, -0.0], "nested": {"k": [{}, []]}},
    ],
    ids=["depth 254", "parentheses in text", "tuple codes as lengths and ints", "scalars"],
)
def test_plain_json_is_accepted_even_when_marshal_cannot_tell(doc):
    assert check_json("content", doc, max_bytes=1 << 20) == orjson.dumps(doc)


def test_the_did_log_vectors_take_the_fast_path():
    """Real logs hold none of the tuple codes, so validation never walks them."""
    for path in sorted(VECTORS.glob("*/did.jsonl")):
        logs = [orjson.loads(line) for line in path.read_text().splitlines() if line.strip()]
        assert _marshal_exact(logs) is not None, path
        assert check_json("logs", logs, max_bytes=1 << 24) == orjson.dumps(logs)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="Python classes get __buffer__ in 3.12")
def test_a_str_subclass_that_marshal_takes_as_bytes_is_still_refused():
    """marshal writes any buffer as bytes, so a str subclass with __buffer__ passes it;
    orjson must then refuse the subclass (OPT_PASSTHROUGH_SUBCLASS), not encode it."""

    class Buffered(str):
        def __buffer__(self, flags: int) -> memoryview:
            return memoryview(b"x")

    doc = {"a": [Buffered("v")]}
    assert _marshal_exact(doc) is not None
    with pytest.raises(ValidationError) as info:
        check_json("content", doc, max_bytes=1 << 20)
    assert info.value.problem == f"content['a'][0] is a Buffered{_NOT_JSON}"


# --- a batch (bulk upsert) validates exactly as record by record ---------------------------
class _Stamp(datetime):
    pass


_ODD_VALUES = [
    ("scid", ""),
    ("scid", "k\x00"),
    ("scid", "é"),
    ("scid", "k" * (MAX_INDEXED_BYTES + 1)),
    ("scid", _Str("k")),
    ("did", ""),
    ("did", 7),
    ("did", None),
    ("did", "é" * 600),
    ("did", "d" * (MAX_INDEXED_BYTES + 1)),
    ("did", "\ud800"),
    ("namespace", _Str("ns")),
    ("deactivated", 1),
    ("deactivated", None),
    ("deactivated", "False"),
    ("logs", [(1, 2)]),
    ("logs", {"not": "a list"}),
    ("logs", [{"x": -math.inf, "y": None}]),
    ("logs", ["x" * (1 << 20)]),  # over the limit once encoded
    ("logs", ["(", ["(x)"]]),  # plain, but marshal cannot tell
    ("created_at", datetime(2026, 1, 1)),
    ("created_at", datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=2)))),
    ("record_version", 0),
    ("created_at", None),
    ("updated_at", datetime(2026, 1, 1, tzinfo=timezone(timedelta(0), "Z"))),  # == UTC, not UTC
    ("updated_at", _Stamp(2026, 1, 1, tzinfo=UTC)),
]


def _outcome(call):
    """("ok", records with their timestamps' zones and types) or ("invalid", the error)."""
    try:
        return "ok", [
            (r, *(repr(t.tzinfo) for t in (r.created_at, r.updated_at)), type(r.updated_at))
            for r in call()
        ]
    except ValidationError as exc:
        return "invalid", (exc.field, exc.problem)


@pytest.mark.parametrize("position", [0, 3])
@pytest.mark.parametrize(
    ("field", "value"), _ODD_VALUES, ids=[f"{f}={v!r}"[:40] for f, v in _ODD_VALUES]
)
def test_a_batch_validates_exactly_as_each_record_alone(field, value, position):
    """One odd value in a batch of five whose other records are plain; a bad document
    in record 1 too, so a batch that checked a column before the records' documents
    would name the wrong error."""
    batch = [entry(scid=f"s{i}", did=f"did:{i}", created_at=NOW, updated_at=NOW) for i in range(5)]
    plain = {"scid": f"s{position}", "did": f"did:{position}", "created_at": NOW, "updated_at": NOW}
    batch[position] = entry(**{**plain, field: value})
    if position > 1:
        batch[1] = entry(scid="s1", did="did:1", logs=[b"bytes"])
    one_by_one = _outcome(
        lambda: [validate_record(LOG_ENTRY, r, max_payload=1 << 20, now=NOW) for r in batch]
    )
    together = _outcome(lambda: validate_records(LOG_ENTRY, batch, max_payload=1 << 20, now=NOW))
    assert together == one_by_one


def test_a_batch_refuses_a_record_of_another_kind_in_place():
    batch = [entry(), "not a record", entry(scid="t")]
    with pytest.raises(ValidationError) as info:
        validate_records(LOG_ENTRY, batch, max_payload=1 << 20, now=NOW)
    assert (info.value.field, info.value.problem) == ("record", "expected LogEntry, got str")


def test_a_plain_batch_is_returned_stamped():
    batch = (entry(scid=f"s{i}") for i in range(3))  # any iterable
    got = validate_records(LOG_ENTRY, batch, max_payload=1 << 20, now=NOW)
    assert [r.scid for r in got] == ["s0", "s1", "s2"]
    assert all(r.created_at == r.updated_at == NOW for r in got)
    assert validate_records(LOG_ENTRY, [], max_payload=1 << 20, now=NOW) == []


@pytest.mark.parametrize(
    ("value", "top"),
    [(math.nan, 0x7F), (-math.nan, 0xFF), (math.inf, 0x7F), (-math.inf, 0xFF)],
    ids=["nan", "-nan", "inf", "-inf"],
)
def test_nan_and_infinity_are_found_by_their_top_byte_in_marshal(value, top):
    """The null in orjson's text is sought only when marshal's bytes hold a 0x7f or 0xff:
    each sign of NaN and Infinity must be caught by one of them alone."""
    doc = {"a": [1.5, value], "b": None}
    dumped = _marshal_exact(doc)
    assert dumped is not None and [b for b in dumped if b in (0x7F, 0xFF)] == [top]
    with pytest.raises(ValidationError) as info:
        check_json("content", doc, max_bytes=1 << 20)
    assert (info.value.field, info.value.problem) == (
        "content",
        f"contains {value!r}, which JSON cannot represent",
    )


def test_a_float_with_a_top_byte_of_0x7f_and_a_null_is_still_stored():
    doc = {"big": 1e308, "none": None, "neg": -1.0}
    assert check_json("content", doc, max_bytes=1 << 20) == orjson.dumps(doc)
