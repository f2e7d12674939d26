"""The original manager's named methods, one test per kind, so each is exercised once."""

from __future__ import annotations

from storage_core.manager import StorageManager
from storage_core.records import (
    LogEntry,
    Policy,
    Registry,
    Resource,
    Task,
    TestLogEntry,
    TestResource,
    WhoisPresentation,
    WitnessFile,
)
from storage_core.testing.samples import present


class TestNamedApi:
    def test_log_entry_methods(self, storage_manager: StorageManager) -> None:
        sm = storage_manager
        logs = [{"versionId": "1-abc", "state": {"id": "did:webvh:abc:example.com"}}]
        created = sm.create_log_entry(
            "abc", "did:webvh:abc:example.com", "example.com", "people", "alice", logs
        )
        assert isinstance(created, LogEntry)
        assert (created.scid, created.did, created.domain) == (
            "abc",
            "did:webvh:abc:example.com",
            "example.com",
        )
        assert (created.namespace, created.identifier, created.logs) == ("people", "alice", logs)
        assert created.deactivated is False
        sm.create_log_entry("def", "did:webvh:def:x.org", "x.org", "orgs", "acme", [], True)
        assert sm.get_log_entry("abc") == created
        assert [e.scid for e in sm.get_log_entries()] == ["abc", "def"]
        assert [e.scid for e in sm.get_log_entries({"domain": "x.org"})] == ["def"]
        assert [e.scid for e in sm.get_log_entries(limit=1, offset=1)] == ["def"]
        assert sm.count_log_entries() == 2
        assert sm.count_log_entries({"deactivated": True}) == 1
        updated = present(
            sm.update_log_entry("abc", deactivated=True, logs=[*logs, {"versionId": "2"}])
        )
        assert isinstance(updated, LogEntry)
        assert updated.deactivated is True
        assert len(updated.logs) == 2
        assert (
            present(sm.update_log_entry("abc", expected_version=2, identifier="bob")).identifier
            == "bob"
        )
        assert sm.delete_log_entry("abc") is True
        assert sm.get_log_entry("abc") is None

    def test_resource_methods(self, storage_manager: StorageManager) -> None:
        sm = storage_manager
        created = sm.create_resource(
            "r1",
            "abc",
            "did:webvh:abc:example.com",
            "anonCredsSchema",
            "schema",
            {"attrNames": ["a"]},
            metadata={"m": 1},
            proof={"type": "DataIntegrityProof"},
        )
        assert isinstance(created, Resource)
        assert (created.content, created.metadata, created.proof) == (
            {"attrNames": ["a"]},
            {"m": 1},
            {"type": "DataIntegrityProof"},
        )
        bare = sm.create_resource("r2", "abc", "did:webvh:abc:example.com", "x", "n", "text")
        assert (bare.metadata, bare.proof, bare.content) == (None, None, "text")
        assert sm.get_resource("r1") == created
        assert [r.resource_id for r in sm.get_resources({"resource_type": "x"})] == ["r2"]
        assert sm.count_resources({"scid": "abc"}) == 2
        assert present(sm.update_resource("r2", resource_name="renamed")).resource_name == "renamed"
        assert sm.delete_resource("r2") is True
        assert sm.get_resources() == [created]

    def test_task_methods(self, storage_manager: StorageManager) -> None:
        sm = storage_manager
        created = sm.create_task("t1", "sync", "pending")
        assert isinstance(created, Task)
        assert (created.progress, created.message) == ({}, None)
        sm.create_task("t2", "sync", "running", progress={"done": 3}, message="busy")
        assert present(sm.get_task("t2")).progress == {"done": 3}
        assert [t.task_id for t in sm.get_tasks({"status": "running"})] == ["t2"]
        assert sm.count_tasks({"task_type": "sync"}) == 2
        done = present(sm.update_task("t1", status="done", message="finished"))
        assert (done.status, done.message, done.record_version) == ("done", "finished", 2)
        assert present(sm.update_task("t1", message=None)).message is None
        assert sm.delete_task("t1") is True
        assert [t.task_id for t in sm.get_tasks()] == ["t2"]

    def test_create_or_update_policy_maps_data_to_fields(
        self, storage_manager: StorageManager
    ) -> None:
        """Known keys of `data` become Policy fields; the whole dict is `policy_data`."""
        sm = storage_manager
        data = {
            "version": "1.0",
            "witness": True,
            "watcher": "https://watcher.example",
            "portability": True,
            "prerotation": False,
            "endorsement": True,
            "policy_id": "ignored: the argument names the policy",
            "extra": {"kept": ["in", "policy_data"]},
        }
        policy = sm.create_or_update_policy("active", data)
        assert isinstance(policy, Policy)
        assert policy.policy_id == "active"
        assert (policy.version, policy.witness, policy.watcher) == (
            "1.0",
            True,
            "https://watcher.example",
        )
        assert (policy.portability, policy.prerotation, policy.endorsement) == (True, False, True)
        assert policy.policy_data == data
        assert sm.get_policy("active") == policy
        replaced = sm.create_or_update_policy("active", {"witness": False})
        assert (replaced.witness, replaced.version, replaced.watcher) == (False, None, None)
        assert (replaced.portability, replaced.endorsement) == (False, False)
        assert replaced.policy_data == {"witness": False}
        assert replaced.record_version == 2
        assert sm.get_policy("missing") is None

    def test_create_or_update_registry(self, storage_manager: StorageManager) -> None:
        sm = storage_manager
        registry = sm.create_or_update_registry("knownWitnesses", "witnesses", {"a": {"n": 1}})
        assert isinstance(registry, Registry)
        assert (registry.registry_type, registry.registry_data, registry.meta) == (
            "witnesses",
            {"a": {"n": 1}},
            {},
        )
        again = sm.create_or_update_registry(
            "knownWitnesses", "witnesses", {"b": {}}, meta={"updated": "now"}
        )
        assert (again.registry_data, again.meta, again.record_version) == (
            {"b": {}},
            {"updated": "now"},
            2,
        )
        assert sm.get_registry("knownWitnesses") == again
        assert sm.get_registry("other") is None

    def test_create_or_update_witness_file(self, storage_manager: StorageManager) -> None:
        sm = storage_manager
        first = sm.create_or_update_witness_file("abc", [{"versionId": "1-x", "proof": []}])
        assert isinstance(first, WitnessFile)
        second = sm.create_or_update_witness_file("abc", [])
        assert (second.witness_proofs, second.record_version) == ([], 2)
        assert sm.get_witness_file("abc") == second
        assert sm.get_witness_file("other") is None

    def test_create_or_update_whois(self, storage_manager: StorageManager) -> None:
        sm = storage_manager
        first = sm.create_or_update_whois("abc", {"type": ["VerifiablePresentation"]})
        assert isinstance(first, WhoisPresentation)
        second = sm.create_or_update_whois("abc", {"type": [], "holder": "did:x"})
        assert (second.presentation, second.record_version) == ({"type": [], "holder": "did:x"}, 2)
        assert sm.get_whois("abc") == second
        assert sm.get_whois("other") is None

    def test_load_test_tables(self, storage_manager: StorageManager) -> None:
        sm = storage_manager
        entry = sm.create_test_log_entry("s1", [{"n": 1}])
        assert isinstance(entry, TestLogEntry)
        assert entry.tags == {}
        tagged = sm.create_test_log_entry("s2", [], tags={"run": "7"})
        assert sm.get_test_log_entry("s2") == tagged
        resource = sm.create_test_resource("r1", "s1", {"c": [1, 2]}, tags={"run": "7"})
        assert isinstance(resource, TestResource)
        assert sm.get_test_resource("r1") == resource
        assert sm.create_test_resource("r2", "s1", None).content is None
        assert sm.delete_test_log_entry("s1") is True
        assert sm.delete_test_log_entry("s1") is False
        assert sm.delete_test_resource("r1") is True
        assert sm.get_test_log_entry("s1") is None
        assert sm.get_test_resource("r1") is None
