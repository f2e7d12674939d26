"""storage_core.testing: the pytest plugin and markers a third-party backend's own test
suite uses, run the way that suite runs them (a pytest session of its own, in-process
through `pytester`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis.database import DirectoryBasedExampleDatabase

from storage_core.interface import Capability
from storage_core.testing.capabilities import KNOWN_CAPABILITIES, requires_capability
from storage_core.testing.plugin import VECTORS_ENV
from storage_core.testing.suite.stateful import STATEFUL_SETTINGS

pytest_plugins = ["pytester"]

INI = """
[pytest]
asyncio_default_fixture_loop_scope = function
"""

USES_THE_PLUGIN = """
pytest_plugins = ["storage_core.testing.plugin"]
"""

STORE_TESTS = """
from storage_core.testing.capabilities import requires_capability
from storage_core.testing.samples import sample_record

def test_the_store_is_provisioned_and_empty(storage_manager, storage_backend_config):
    assert storage_backend_config == {"backend": "memory", "url": None, "options": {}}
    assert storage_manager.backend_name == "memory"
    assert storage_manager.count_records("log_entry") == 0
    storage_manager.create_record(sample_record("log_entry", "abc"))
    assert storage_manager.get_record("log_entry", "abc").scid == "abc"

@requires_capability("archive")
def test_runs_where_the_capability_exists(storage_manager):
    assert storage_manager.archive_count() == 0

@requires_capability("persistent")
def test_skips_where_it_is_missing(storage_manager):
    raise AssertionError("ran on a backend without the capability")
"""

VECTORS_TEST = """
def test_vectors(storage_vectors_dir):
    assert (storage_vectors_dir / "marker.txt").read_text() == "vectors"
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A backend's test folder whose conftest enables the plugin."""
    monkeypatch.delenv(VECTORS_ENV, raising=False)
    pytester.makeini(INI)
    pytester.makeconftest(USES_THE_PLUGIN)
    return pytester


def run(suite: pytest.Pytester, *args: str) -> pytest.RunResult:
    return suite.runpytest_inprocess("-p", "no:cacheprovider", "-rs", *args)


DEFAULT_AND_DUAL_TESTS = """
from storage_core.testing.samples import sample_record

def test_default_store(storage_manager, storage_backend_config):
    assert storage_backend_config["backend"] == "sqlalchemy"
    assert storage_backend_config["url"].startswith("sqlite:///")
    storage_manager.create_record(sample_record("task", "t1"))
    assert storage_manager.count_records("task") == 1

def test_dual(dual_storage):
    assert {m.backend_name for m in dual_storage.values()} == {"sqlalchemy", "askar"}
    for manager in dual_storage.values():
        manager.create_record(sample_record("policy", "p1"))
        assert manager.get_record("policy", "p1").policy_id == "p1"
"""


def test_without_a_configured_backend_tests_run_on_sqlite_and_dual_storage_is_shipped(
    suite: pytest.Pytester,
) -> None:
    """No fixture and no option: a working store (the built-in SQL backend on SQLite), and
    the plugin's own `dual_storage` (no conftest of this repository involved)."""
    suite.makepyfile(DEFAULT_AND_DUAL_TESTS)

    result = run(suite)

    result.assert_outcomes(passed=2)


def test_storage_backend_option_opens_a_fresh_store_and_gates_capabilities(
    suite: pytest.Pytester,
) -> None:
    suite.makepyfile(STORE_TESTS)

    result = run(suite, "--storage-backend", "memory")

    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(["*backend 'memory' lacks capability 'persistent'*"])


def test_a_missing_vectors_folder_skips_with_the_reason(suite: pytest.Pytester) -> None:
    missing = suite.path / "no-vectors-here"
    suite.makepyfile(VECTORS_TEST)

    result = run(suite, f"--storage-vectors={missing}")

    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        [f"*did:webvh test vectors not found ({missing}); set {VECTORS_ENV}*"]
    )


def test_vectors_from_the_option_or_the_environment(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.makepyfile(VECTORS_TEST)
    given = suite.mkdir("given")
    (given / "marker.txt").write_text("vectors")

    run(suite, f"--storage-vectors={given}").assert_outcomes(passed=1)
    monkeypatch.setenv(VECTORS_ENV, str(given))
    run(suite).assert_outcomes(passed=1)


def test_vectors_from_the_nearest_shared_vectors_above_the_rootdir(suite: pytest.Pytester) -> None:
    """As in a checkout: the project folder next to shared/vectors. (Folders further up
    may hold another shared/vectors, without the marker: the nearest one must win.)"""
    project = suite.mkdir("backend-project")
    (project / "pytest.ini").write_text(INI)
    (project / "conftest.py").write_text(USES_THE_PLUGIN)
    (project / "test_vectors.py").write_text(VECTORS_TEST)
    shared = suite.path / "shared" / "vectors"
    shared.mkdir(parents=True)
    (shared / "marker.txt").write_text("vectors")

    run(suite, str(project)).assert_outcomes(passed=1)


def test_an_unknown_capability_name_is_refused_listing_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown capabilities \['nope'\]") as caught:
        requires_capability(Capability.ARCHIVE, "nope")
    for name in KNOWN_CAPABILITIES:
        assert name in str(caught.value)
    assert {Capability.ARCHIVE, Capability.PERSISTENT} <= KNOWN_CAPABILITIES


def test_an_unknown_capability_fails_the_suite_at_collection(suite: pytest.Pytester) -> None:
    """A typo in a marker must not silently skip (or run) the test."""
    suite.makepyfile(
        """
        from storage_core.testing.capabilities import requires_capability

        @requires_capability("persistant")
        def test_typo(storage_manager):
            pass
        """
    )

    result = run(suite, "--storage-backend", "memory")

    result.assert_outcomes(errors=1)
    assert "ValueError: unknown capabilities ['persistant']; known: archive" in result.stdout.str()


# --- issue 20: the two suite gaps, proved on deliberately flawed backends ----------------

FLAWED_BACKENDS = """
import copy
import pytest
from storage_core.config import Settings
from storage_core.interface import Capability
from storage_core.manager import StorageManager
from webvh_storage_memory.backend import MemoryBackend


class StaleIndex(MemoryBackend):
    '''Filters on the values a record had when created: an index never updated.'''

    def __init__(self, settings=None):
        super().__init__(settings)
        self.indexed = {}

    def create(self, spec, record):
        stored = super().create(spec, record)
        self.indexed[(spec.name, spec.key_of(stored))] = stored
        return stored

    def list(self, spec, filters, limit, offset):
        def as_indexed(r):
            return self.indexed.get((spec.name, spec.key_of(r)), r)
        rows = [r for r in super().list(spec, {}, None, 0)
                if all(getattr(as_indexed(r), n) in a for n, a in filters.items())]
        return rows[offset:None if limit is None else offset + limit]

    def count(self, spec, filters):
        return len(self.list(spec, filters, None, 0))

    def stream(self, spec, filters, batch_size):
        yield from self.list(spec, filters, None, 0)


class WritesAsItGoes(MemoryBackend):
    '''bulk_upsert writes each record straight into the table: no rollback.'''

    def bulk_upsert(self, spec, records):
        with self._lock:
            table = self._table(spec)
            for record in copy.deepcopy(list(records)):
                if (spec.name, spec.key_of(record)) in self._refused:
                    from storage_core.errors import StorageIOError
                    raise StorageIOError("refused")
                table[spec.key_of(record)] = record
        return len(records)


class HonestNoRollback(WritesAsItGoes):
    capabilities = WritesAsItGoes.capabilities | {Capability.NO_ROLLBACK}


class WithoutTheHook(MemoryBackend):
    def refuse_writes_for_testing(self, spec, key):
        return False


@pytest.fixture
def storage_manager(request):
    backend = globals()[request.config.getoption("--flawed")]()
    manager = StorageManager(Settings(), backend=backend)
    manager.init_db(recreate=True)
    yield manager
    manager.close()


def pytest_addoption(parser):
    parser.addoption("--flawed")
"""

SUITE_GAPS = """
from storage_core.testing.suite import TestAtomicity, TestIndexedFieldChanges
"""


@pytest.fixture
def flawed(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(INI)
    pytester.makeconftest(USES_THE_PLUGIN + FLAWED_BACKENDS)
    pytester.makepyfile(SUITE_GAPS)
    return pytester


def test_a_stale_index_fails_the_fixed_test_every_run(flawed: pytest.Pytester) -> None:
    """Issue 20: before, only the random state machine caught a stale index (5 of 12 runs)."""
    result = run(flawed, "--flawed", "StaleIndex", "-k", "TestIndexedFieldChanges")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(
        ["*stale index:*", "*log_entry.namespace after update: got *, want *'moved-namespace'*"]
    )


def test_a_backend_that_does_not_roll_back_fails_the_atomicity_test(
    flawed: pytest.Pytester,
) -> None:
    result = run(flawed, "--flawed", "WritesAsItGoes", "-k", "TestAtomicity")
    result.assert_outcomes(failed=1)


def test_a_declared_no_rollback_is_reported_not_skipped(flawed: pytest.Pytester) -> None:
    result = run(flawed, "--flawed", "HonestNoRollback", "-k", "TestAtomicity", "-rx")
    result.assert_outcomes(xfailed=1)
    result.stdout.fnmatch_lines(["*XFAIL*declares 'no_rollback'*"])


def test_a_backend_without_the_hook_is_told_what_to_do(flawed: pytest.Pytester) -> None:
    result = run(flawed, "--flawed", "WithoutTheHook", "-k", "TestAtomicity")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*refuse_writes_for_testing*Capability.NO_ROLLBACK*"])


def test_the_memory_backend_passes_both(flawed: pytest.Pytester) -> None:
    run(flawed, "--flawed", "MemoryBackend").assert_outcomes(passed=4)


SHOUTS = """

class Shouts(MemoryBackend):
    '''Stores every created log entry's identifier upper-cased.'''

    def create(self, spec, record):
        from dataclasses import replace
        if spec.name == "log_entry":
            super().create(spec, replace(record, identifier=record.identifier.upper()))
            return record
        return super().create(spec, record)
"""


def test_a_state_machine_failure_is_readable_and_replays(pytester: pytest.Pytester) -> None:
    """Issue 20: the random machine's failures did not replay (no example database) and
    said only `assert [...] == [...]`."""
    pytester.makeini(INI)
    pytester.makeconftest(USES_THE_PLUGIN + FLAWED_BACKENDS + SHOUTS)
    pytester.makepyfile("from storage_core.testing.suite import TestStateful\n")

    first = run(pytester, "--flawed", "Shouts")
    first.assert_outcomes(failed=1)
    first.stdout.fnmatch_lines(
        [
            "*list: the store disagrees with the model*",
            "*'a': store ({*'identifier': 'A'*}, 1), model ({*'identifier': 'a'*}, 1)*",
            "*@reproduce_failure*",
        ]
    )
    database = STATEFUL_SETTINGS.database  # the active profile's (was None: no replay)
    assert isinstance(database, DirectoryBasedExampleDatabase), database
    saved = list(Path(database.path).rglob("*"))
    assert any(p.is_file() for p in saved), "the failing example was not saved"

    second = run(pytester, "--flawed", "Shouts")
    second.assert_outcomes(failed=1)
    first_case = first.stdout.str().partition("Failing test case")[2].partition("teardown")[0]
    assert first_case and first_case in second.stdout.str()  # the same case, replayed
