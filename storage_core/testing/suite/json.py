"""JSON documents read back byte-identical: values, unicode and key order.

A DID log is signed over its exact JSON, so "equal as Python dicts" is not enough:
comparisons use the orjson bytes, where key order shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from storage_core.kinds import LOG_ENTRY
from storage_core.manager import StorageManager
from storage_core.testing.samples import json_bytes, present

UNICODE_TEXT = [
    "emoji \U0001f600\U0001f469\u200d\U0001f4bb\U0001f1e8\U0001f1e6",
    "\u05e9\u05dc\u05d5\u05dd RTL \u0645\u0631\u062d\u0628\u0627",
    "\u4e2d\u6587 \u65e5\u672c\u8a9e \ud55c\uad6d\uc5b4",
    "combining e\u0301 vs \u00e9, zero-width\u200b, BOM \ufeff",
    "quotes \" ' backslash \\ newline \n tab \t ctrl \u0001 \u001f",
]


def _nested(depth: int) -> Any:
    value: Any = {"leaf": [1, -2, 0.5, None, True, False, "", {}, []]}
    for level in range(depth):
        value = {f"level{level}": value, "list": [value, level]}
    return value


class TestJsonRoundTrip:
    def test_nested_values_and_numbers(self, storage_manager: StorageManager) -> None:
        content = {
            "nested": _nested(6),
            "ints": [0, -1, 2**53 + 1, 2**63 - 1, -(2**63)],
            "floats": [0.1, 1e-300, 1.7976931348623157e308, -0.0, 3.141592653589793],
            "empty": {"list": [], "dict": {}, "string": ""},
            "null": None,
        }
        for value in (content, "just a string", 42, None, [1, "two", {"3": 3}], True):
            storage_manager.create_test_resource("r", "s", value)
            stored = present(storage_manager.get_test_resource("r")).content
            assert json_bytes(stored) == json_bytes(value)
            assert storage_manager.delete_test_resource("r") is True

    def test_unicode_in_documents_ids_and_filters(self, storage_manager: StorageManager) -> None:
        sm = storage_manager
        document = {text: [text, {text: text}] for text in UNICODE_TEXT}
        for i, text in enumerate(UNICODE_TEXT):
            key = f"{i}-{text}"
            sm.create_resource(key, f"scid-{text}", "did", text, text, document)
            fetched = present(sm.get_resource(key))
            assert (fetched.resource_id, fetched.resource_type, fetched.resource_name) == (
                key,
                text,
                text,
            )
            assert json_bytes(fetched.content) == json_bytes(document)
            assert [r.resource_id for r in sm.get_resources({"resource_type": text})] == [key]
            assert sm.count_resources({"scid": f"scid-{text}"}) == 1
        sm.create_test_log_entry("tagged", [], tags={UNICODE_TEXT[0]: UNICODE_TEXT[1]})
        assert present(sm.get_test_log_entry("tagged")).tags == {UNICODE_TEXT[0]: UNICODE_TEXT[1]}

    def test_key_order_is_preserved_exactly(self, storage_manager: StorageManager) -> None:
        document = {"z": 1, "a": {"y": [{"b": 1, "a": 2}], "b": None}, "m": "x", "A": 0, "1": 1}
        logs = [document, {"versionId": "2", "proof": {"type": "x", "cryptosuite": "y"}}]
        storage_manager.create_log_entry("ordered", "did", "d", "n", "i", logs)
        assert json_bytes(present(storage_manager.get_log_entry("ordered")).logs) == json_bytes(
            logs
        )
        reordered = [{"m": "x", "z": 1}]
        updated = present(storage_manager.update_log_entry("ordered", logs=reordered))
        assert json_bytes(updated.logs) == json_bytes(reordered)
        listed = storage_manager.get_log_entries()[0]
        assert json_bytes(listed.logs) == json_bytes(reordered)

    def test_large_list(self, storage_manager: StorageManager) -> None:
        logs = [{"versionId": f"{i}-Qm{i:040d}", "n": i, "tags": ["a"] * 3} for i in range(3000)]
        storage_manager.create_log_entry("large", "did", "d", "n", "i", logs)
        assert json_bytes(present(storage_manager.get_log_entry("large")).logs) == json_bytes(logs)
        streamed = next(iter(storage_manager.stream_records(LOG_ENTRY, batch_size=1)))
        assert len(streamed.logs) == 3000

    def test_real_did_logs_and_witness_files(
        self, storage_manager: StorageManager, storage_vectors_dir: Path
    ) -> None:
        """Vectors from the did:webvh test suite: every line of each did.jsonl is one
        log entry; did-witness.json is a witness file."""
        sm = storage_manager
        logs_files = sorted(storage_vectors_dir.glob("*/did.jsonl"))
        assert logs_files, f"no */did.jsonl under {storage_vectors_dir}"
        for path in logs_files:
            lines = [ln for ln in path.read_bytes().splitlines() if ln.strip()]
            logs = [orjson.loads(ln) for ln in lines]
            scid = path.parent.name
            did = logs[-1]["state"]["id"]
            sm.create_log_entry(scid, did, "example.com", "vectors", scid, logs)
            stored = present(sm.get_log_entry(scid)).logs
            # Each line reads back as the same JSON document, key order included.
            assert [orjson.dumps(entry) for entry in stored] == [
                orjson.dumps(orjson.loads(ln)) for ln in lines
            ], path
            assert scid in [e.scid for e in sm.get_log_entries({"did": did})]
            witness_path = path.with_name("did-witness.json")
            if witness_path.exists():
                proofs = orjson.loads(witness_path.read_bytes())
                sm.create_or_update_witness_file(scid, proofs)
                assert json_bytes(present(sm.get_witness_file(scid)).witness_proofs) == json_bytes(
                    proofs
                ), witness_path
        assert sm.count_log_entries() == len(logs_files)
