"""Parse a stored value as JSON only when the result is exactly what the text says.

A legacy value is `json.dumps` text, but a store can hold anything. A value is taken
only if every backend can hold its parsed form exactly, so a run never aborts on a
hostile entry and never stores a silently changed one (which verify would then compare
with itself and pass). Refused, each with its reason: text that is not UTF-8, not JSON,
NaN/Infinity, an object with a duplicate key (a parser keeps only one), integers beyond
64 bits (a parser may make them floats), lone surrogates, and nesting deeper than
`MAX_DEPTH` (what the library's JSON encoder takes).

Fast path (a few byte counts on top of orjson): after orjson parses the text and
encodes it back, a dropped duplicate member leaves the text with more `:` than the
encoding, and an integer orjson made a float (beyond 64 bits, always written with an
exponent, `e+`) leaves the encoding with more `+`. String contents are the same on both
sides unless the text escapes ASCII characters (`\\u00XX`), which takes the slow path;
nesting beyond the encoder's limit makes the encoding fail. Lone surrogates, invalid
UTF-8 and NaN already fail orjson's parse. Everything else is parsed again strictly.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

#: The deepest nesting the library stores (orjson's encoder refuses deeper documents).
MAX_DEPTH = 254


class NotExactJson(ValueError):
    """The value cannot be stored exactly as JSON, for the reason in the message."""


def loads_exact(raw: bytes) -> Any:
    """The parsed value, or NotExactJson naming why it is refused."""
    try:
        value = orjson.loads(raw)
        encoded = orjson.dumps(value)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, RecursionError):
        return _strict(raw)
    if (
        (b"\\" not in raw or b"\\u00" not in raw)  # one memchr in the common case
        and raw.count(b":") == encoded.count(b":")
        and raw.count(b"+") == encoded.count(b"+")
    ):
        return value
    return _strict(raw)


def _strict(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotExactJson(f"value is not UTF-8 text (byte {exc.start})") from None
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except RecursionError:
        raise NotExactJson(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except NotExactJson:
        raise
    except ValueError as exc:
        raise NotExactJson(f"invalid JSON: {str(exc)[:120]}") from None
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        raise NotExactJson(_encode_problem(str(exc))) from None
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise NotExactJson(f"duplicate key {key!r:.80} in a JSON object")
            seen.add(key)
    return value


def _no_constant(name: str) -> Any:
    raise NotExactJson(f"{name} is not JSON (no finite number)")


def _encode_problem(message: str) -> str:
    if "Recursion" in message:
        return f"JSON nested deeper than {MAX_DEPTH} levels"
    if "64-bit" in message:
        return "integer beyond 64 bits (would not be stored exactly)"
    if "surrogate" in message:
        return "string with a lone surrogate (not storable as UTF-8)"
    return f"not storable as JSON: {message[:120]}"  # pragma: no cover - orjson's other refusals
