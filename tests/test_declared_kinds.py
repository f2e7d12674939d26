"""Application-defined kinds (issue 19): the declaration API and its errors, the plugin
hook, provisioning a new kind's table on an existing database (SQLite and PostgreSQL,
Alembic still clean), the per-kind payload limit and unique tuples with None values on
every backend. The generic CRUD/list/stream/bulk/error tests over a kind of every field
type are the conformance suite's `TestDeclaredKind` (tests/test_conformance.py, all
seven variants, sync and async)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import uuid
from argparse import Namespace
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect

import storage_core
from storage_core import open_storage
from storage_core.declare import JSON, Text, build_spec, declare_kind, kind_spec, record_kind
from storage_core.errors import DuplicateRecordError, ValidationError
from storage_core.kinds import (
    KINDS,
    LOG_ENTRY,
    TEST_LOG_ENTRY,
    FieldType,
    registered_kinds,
    spec_for,
)
from storage_core.plugins import clear_registry_cache, get_registry
from storage_core.records import LogEntry, TestLogEntry
from storage_core.testing.plugin import provisioned_storage
from storage_core.validation import MAX_KEY_BYTES
from tests.conftest import VARIANTS, variant_config
from tests.pg import require_pg

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024


@record_kind(
    "test_credential",
    key="credential_id",
    indexed=["issuer_did", "revoked"],
    unique=[("issuer_did", "serial")],
)
@dataclass(frozen=True, slots=True, kw_only=True)
class Credential:
    credential_id: str
    issuer_did: str
    serial: int | None = None
    revoked: bool = False
    valid_from: datetime | None = None
    credential: dict[str, Any] = field(default_factory=dict)
    notes: Text | None = None
    extra: JSON = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    record_version: int = 1


@record_kind("test_tails_file", key="tails_hash", max_payload_bytes=10 * MIB)
@dataclass(frozen=True, slots=True, kw_only=True)
class TailsFile:
    tails_hash: str
    content: Text
    record_version: int = 1


CREDENTIAL = kind_spec(Credential)
TAILS = kind_spec(TailsFile)


# --- the declaration API ----------------------------------------------------------------
def test_field_types_indexes_and_names_come_from_the_declaration() -> None:
    assert storage_core.record_kind is record_kind
    assert CREDENTIAL.field_types == {
        "credential_id": FieldType.KEY,
        "issuer_did": FieldType.INDEXED_STR,
        "serial": FieldType.INT,
        "revoked": FieldType.BOOL,
        "valid_from": FieldType.DATETIME,
        "credential": FieldType.DICT,
        "notes": FieldType.OPT_STR,
        "extra": FieldType.JSON,
    }
    assert CREDENTIAL.optional == {"serial", "valid_from"}
    assert CREDENTIAL.filterable == ("credential_id", "issuer_did", "revoked", "serial")
    assert CREDENTIAL.unique == (("issuer_did", "serial"),)
    assert CREDENTIAL.timestamps and not TAILS.timestamps
    assert (CREDENTIAL.table, CREDENTIAL.category) == ("test_credential", "tests:test_credential")
    assert spec_for("test_credential") is CREDENTIAL
    assert registered_kinds()["test_tails_file"] is TAILS
    assert "test_credential" not in KINDS  # KINDS stays the nine did:webvh kinds
    assert LOG_ENTRY.category == "webvh:log_entry"


def test_declaring_the_same_shape_again_is_a_no_op() -> None:
    assert (
        record_kind(
            "test_credential",
            key="credential_id",
            indexed=["issuer_did", "revoked"],
            unique=[("issuer_did", "serial")],
        )(Credential)
        is Credential
    )
    assert kind_spec(Credential) is CREDENTIAL
    assert (
        declare_kind(
            LogEntry,
            "log_entry",
            key="scid",
            indexed=LOG_ENTRY.filterable[1:],
            table="log_entries",
            category="webvh:log_entry",
        )
        is LOG_ENTRY
    )


def test_declaring_another_shape_names_every_difference() -> None:
    @dataclass(frozen=True, kw_only=True)
    class Other:
        credential_id: str
        issuer_did: str
        revoked: int = 0
        record_version: int = 1

    with pytest.raises(ValidationError) as err:
        declare_kind(Other, "test_credential", key="credential_id", indexed=["issuer_did"])
    problem = err.value.problem
    assert "'test_credential' is already declared with another shape" in problem
    assert "record tests.test_declared_kinds.Credential vs another class" in problem
    assert "field 'revoked': bool vs integer" in problem
    assert "field 'serial': integer vs absent" in problem
    assert "filterable ('credential_id', 'issuer_did', 'revoked', 'serial') vs" in problem
    assert "timestamps True vs False" in problem
    assert spec_for("test_credential") is CREDENTIAL


@dataclass(frozen=True, kw_only=True)
class _Plain:
    key: str
    name: str = ""
    ratio: float = 0.0
    body: Text = ""
    data: dict[str, Any] = field(default_factory=dict)
    record_version: int = 1


@dataclass(kw_only=True)
class _Mutable:
    key: str
    record_version: int = 1


@dataclass(frozen=True, kw_only=True)
class _NoVersion:
    key: str


@dataclass(frozen=True, kw_only=True)
class _BadType:
    key: str
    tags: set[str] = field(default_factory=set)
    record_version: int = 1


@dataclass(frozen=True, kw_only=True)
class _OneStamp:
    key: str
    created_at: datetime | None = None
    record_version: int = 1


@pytest.mark.parametrize(
    ("record", "options", "field_name", "words"),
    [
        (_Plain, {"key": "missing"}, "key", "'missing' is not a field"),
        (_Plain, {"key": "ratio"}, "key", "must be declared `str`"),
        (_Plain, {"key": "key", "indexed": ["body"]}, "indexed", "string field, which cannot"),
        (_Plain, {"key": "key", "indexed": ["ratio"]}, "indexed", "float field, which cannot"),
        (_Plain, {"key": "key", "indexed": ["data"]}, "indexed", "JSON object field"),
        (_Plain, {"key": "key", "indexed": ["nope"]}, "indexed", "'nope' is not a field"),
        (_Plain, {"key": "key", "unique": [("name", "name")]}, "unique", "distinct fields"),
        (_Plain, {"key": "key", "table": "Bad-Name"}, "table", "lower-case letters"),
        (_Plain, {"key": "key", "table": "log_entries"}, "kind", "uses table 'log_entries'"),
        (_Plain, {"key": "key", "category": "webvh:task"}, "kind", "uses category"),
        (_Plain, {"key": "key", "max_payload_bytes": 0}, "max_payload_bytes", ">= 1"),
        (_Mutable, {"key": "key"}, "record", "must be a frozen dataclass"),
        (_NoVersion, {"key": "key"}, "record", "record_version: int = 1"),
        (_BadType, {"key": "key"}, "tags", "is not a storable type"),
        (_OneStamp, {"key": "key"}, "record", "both created_at and updated_at"),
        (LogEntry, {"key": "scid"}, "kind", "already the record of kind 'log_entry'"),
    ],
)
def test_bad_declarations_are_refused(
    record: type[Any], options: dict[str, Any], field_name: str, words: str
) -> None:
    name = f"test_bad_{uuid.uuid4().hex[:8]}"
    with pytest.raises(ValidationError) as err:
        declare_kind(record, name, **options)
    assert err.value.field == field_name
    assert words in err.value.problem
    assert name not in registered_kinds()


def test_kind_names_must_be_sql_identifiers() -> None:
    with pytest.raises(ValidationError) as err:
        build_spec(_Plain, "Credentials!", key="key")
    assert err.value.field == "name"
    with pytest.raises(ValidationError):
        kind_spec(_Plain)  # never declared


# --- the plugin hook ----------------------------------------------------------------------
@pytest.fixture
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path for an installed-looking plugin distribution."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    clear_registry_cache()
    yield site
    for name in list(sys.modules):
        if name.startswith("kinds_plugin"):
            del sys.modules[name]
    clear_registry_cache()


def _install_plugin(site: Path, package: str, source: str) -> None:
    (site / package).mkdir()
    (site / package / "__init__.py").touch()
    (site / package / "plugin.py").write_text(textwrap.dedent(source))
    info = site / f"{package}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[storage_core.backends]\n{package} = {package}.plugin\n"
    )


def test_a_plugin_declares_its_kinds_through_register_kinds(plugin_site: Path) -> None:
    name = f"test_hooked_{uuid.uuid4().hex[:8]}"
    _install_plugin(
        plugin_site,
        "kinds_plugin_ok",
        f"""
        from dataclasses import dataclass
        from storage_core.hookspecs import hookimpl

        @dataclass(frozen=True, kw_only=True)
        class Witnessed:
            invitation_id: str
            label: str
            record_version: int = 1

        @hookimpl
        def register_kinds(register):
            register(Witnessed, "{name}", key="invitation_id", indexed=["label"])
        """,
    )
    assert name not in registered_kinds()
    registry = get_registry()
    assert "kinds_plugin_ok" not in registry.failed
    spec = spec_for(name)
    assert (spec.category, spec.filterable) == (
        f"kinds_plugin_ok:{name}",
        ("invitation_id", "label"),
    )
    with open_storage("memory") as store:
        store.init_db()
        store.create_record(spec.record(invitation_id="i", label="l"))
        assert store.count_records(name, filters={"label": "l"}) == 1


def test_a_plugin_declaring_a_clashing_kind_fails_to_load(plugin_site: Path) -> None:
    _install_plugin(
        plugin_site,
        "kinds_plugin_bad",
        """
        from dataclasses import dataclass
        from storage_core.hookspecs import hookimpl

        @dataclass(frozen=True, kw_only=True)
        class Clash:
            scid: str
            record_version: int = 1

        @hookimpl
        def register_kinds(register):
            register(Clash, "log_entry", key="scid")
        """,
    )
    failed = get_registry().failed["kinds_plugin_bad"]
    assert "register_kinds raised ValidationError" in failed.problem
    assert "'log_entry' is already declared with another shape" in failed.problem
    assert spec_for("log_entry") is LOG_ENTRY


# --- provisioning a new kind on an existing database -------------------------------------
@pytest.fixture(params=["sqlite-file", "postgres"])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite-file":
        return f"sqlite:///{tmp_path}/existing.db"
    server = request.getfixturevalue("pg_server")
    require_pg(server)
    return server.sqlalchemy_url(server.create_database("webvh_test_kinds"))


def _alembic(url: str, *x: str) -> Config:
    return Config(str(ROOT / "alembic.ini"), cmd_opts=Namespace(x=[f"url={url}", *x]))


def test_a_kind_declared_later_is_added_to_an_existing_database(sql_url: str) -> None:
    with open_storage("sqlalchemy", sql_url) as store:
        store.init_db()
        store.create_log_entry("scid-1", "did:webvh:scid-1:x", "x", "n", "i", [{"v": 1}])
        store.create_record(Credential(credential_id="c0", issuer_did="did:x"))

    @dataclass(frozen=True, kw_only=True)
    class Invitation:
        invitation_id: str
        witness: str
        uses: int = 0
        record_version: int = 1

    name = f"test_late_{uuid.uuid4().hex[:8]}"
    spec = declare_kind(
        Invitation, name, key="invitation_id", indexed=["witness"], unique=[("witness", "uses")]
    )
    with open_storage("sqlalchemy", sql_url) as store:
        store.init_db()  # not recreate: the existing rows stay
        assert store.get_log_entry("scid-1").logs == [{"v": 1}]
        assert store.get_record(CREDENTIAL, "c0") is not None
        store.create_record(Invitation(invitation_id="a", witness="w"))
        store.create_record(Invitation(invitation_id="b", witness="w", uses=1))
        with pytest.raises(DuplicateRecordError) as err:
            store.create_record(Invitation(invitation_id="c", witness="w", uses=1))
        assert err.value.fields == ("witness", "uses")
        assert [r.invitation_id for r in store.list_records(spec, filters={"witness": "w"})] == [
            "a",
            "b",
        ]
        store.init_db()  # again: nothing to do
        assert store.count_records(spec) == 2

    engine = create_engine(sql_url)
    try:
        with engine.connect() as conn:
            inspector = inspect(conn)
            assert name in inspector.get_table_names()
            indexes = {ix["name"]: ix for ix in inspector.get_indexes(name)}
    finally:
        engine.dispose()
    assert indexes[f"uq_{name}_0"]["unique"]
    assert indexes[f"ix_{name}_witness_seq"]["column_names"] == ["witness", "seq"]
    command.check(_alembic(sql_url))  # our revisions: the new table is not theirs
    command.check(_alembic(sql_url, "declared=true"))  # with declared kinds: all there


# --- per-kind payload limit and unique tuples with None, on every backend ---------------
@pytest.fixture(params=[*VARIANTS, "memory"])
def small_limit_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """Each variant with the settings' max_payload_bytes at 1 MiB."""
    if request.param == "memory":
        config: dict[str, Any] = {"backend": "memory", "url": None}
    else:
        config = variant_config(request.param, request, tmp_path)
    config["options"] = {**config.get("options", {}), "max_payload_bytes": MIB}
    with provisioned_storage(config) as manager:
        yield manager


def test_a_kinds_own_payload_limit_replaces_the_global_one(small_limit_store: Any) -> None:
    sm = small_limit_store
    tails = "t" * (9 * MIB)
    stored = sm.create_record(TailsFile(tails_hash="h", content=tails))
    assert stored.content == tails
    assert sm.get_record(TAILS, "h").content == tails
    with pytest.raises(ValidationError) as err:
        sm.create_record(TailsFile(tails_hash="big", content="t" * (10 * MIB + 1)))
    assert err.value.field == "content"
    with pytest.raises(ValidationError) as err:  # other kinds keep the settings' limit
        sm.create_log_entry("s", "did", "d", "n", "i", ["x" * MIB])
    assert err.value.field == "logs"
    assert sm.count_records(TAILS) == 1 and sm.count_records(LOG_ENTRY) == 0


def test_unique_tuples_with_a_none_never_clash(small_limit_store: Any) -> None:
    sm = small_limit_store
    for key in ("a", "b"):
        sm.create_record(Credential(credential_id=key, issuer_did="did:i"))
    sm.create_record(Credential(credential_id="c", issuer_did="did:i", serial=1))
    with pytest.raises(DuplicateRecordError) as err:
        sm.update_record(CREDENTIAL, "a", serial=1)
    assert (err.value.kind, err.value.fields) == ("test_credential", ("issuer_did", "serial"))
    assert sm.update_record(CREDENTIAL, "a", serial=2).serial == 2
    assert sm.count_records(CREDENTIAL, filters={"issuer_did": "did:i"}) == 3


# --- keys up to 64 KiB --------------------------------------------------------------------
LONG_KEYS = [
    "k" * MAX_KEY_BYTES,  # ASCII, exactly at the limit
    "é" * (MAX_KEY_BYTES // 2),  # 2-byte characters: bytes count, not characters
    "\x1fsha256:" + "0" * 64,  # spells the Askar backend's digest names (layout.py)
    "x" * 1025,  # just over the old limit
]


def test_keys_up_to_64_kib_are_stored_and_read_back_exactly(small_limit_store: Any) -> None:
    sm = small_limit_store
    assert MAX_KEY_BYTES == 65536
    for i, key in enumerate(LONG_KEYS):
        created = sm.create_record(Credential(credential_id=key, issuer_did=f"did:{i}"))
        assert created.credential_id == key
        assert sm.get_record(CREDENTIAL, key) == created
        found = sm.list_records(CREDENTIAL, filters={"credential_id": key})
        assert [r.credential_id for r in found] == [key]
        updated = sm.update_record(CREDENTIAL, key, expected_version=1, revoked=True)
        assert (updated.credential_id, updated.revoked, updated.record_version) == (key, True, 2)
        replaced = sm.upsert_record(Credential(credential_id=key, issuer_did=f"did:{i}"))
        assert replaced.record_version == 3
        sm.bulk_upsert(TEST_LOG_ENTRY, [TestLogEntry(scid=key, logs=[i])])
        assert sm.get_record(TEST_LOG_ENTRY, key).logs == [i]
        with pytest.raises(DuplicateRecordError) as err:
            sm.create_record(Credential(credential_id=key, issuer_did="did:other"))
        assert err.value.key == key
    streamed = [r.credential_id for r in sm.stream_records(CREDENTIAL, batch_size=2)]
    assert streamed == LONG_KEYS
    assert sm.count_records(CREDENTIAL, filters={"credential_id": LONG_KEYS[:2]}) == 2
    for key in LONG_KEYS:
        assert sm.delete_record(CREDENTIAL, key) is True
        assert sm.get_record(CREDENTIAL, key) is None
    assert sm.count_records(CREDENTIAL) == 0


def test_a_key_one_byte_over_64_kib_is_refused(small_limit_store: Any) -> None:
    sm = small_limit_store
    for key in ("k" * (MAX_KEY_BYTES + 1), "é" * (MAX_KEY_BYTES // 2) + "k"):
        for call in (
            lambda k=key: sm.create_record(Credential(credential_id=k, issuer_did="d")),
            lambda k=key: sm.get_record(CREDENTIAL, k),
            lambda k=key: sm.delete_record(CREDENTIAL, k),
            lambda k=key: sm.list_records(CREDENTIAL, filters={"credential_id": k}),
        ):
            with pytest.raises(ValidationError) as err:
                call()
            assert err.value.field.endswith("credential_id")
            assert f"is {len(key.encode())} bytes, the limit is 65536" in err.value.problem
    assert sm.count_records(CREDENTIAL) == 0


# --- docs/kinds.md ---------------------------------------------------------------------
def test_the_docs_example_runs_as_written(tmp_path: Path) -> None:
    """The declaration and query blocks of docs/kinds.md, in a fresh interpreter on a
    SQLite file (the names the query block leaves to the reader defined first)."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "kinds.md").read_text(), re.S)
    declaring, querying = blocks[0], blocks[2]
    given = textwrap.dedent(
        """
        from datetime import UTC
        cid, issuer, h, a, b = "c" * 1100, "did:webvh:issuer", "tails", "did:a", "did:b"
        tails_b64 = "QUJD" * (9 * 1024 * 1024 // 4)
        when = datetime(2026, 1, 1, tzinfo=UTC)
        many = [Credential(credential_id=f"m{i}", issuer_did=a, valid_from=when) for i in range(3)]
        """
    )
    check = textwrap.dedent(
        """
        assert cred.credential_id == cid and [c.credential_id for c in active] == [cid]
        assert n == 0 and storage.get_record(CREDENTIAL, cid).revoked
        assert storage.count_records(CREDENTIAL, filters={"valid_from": when}) == 3
        assert storage.get_record("tails_file", h).revocation_registry_id == "r1"
        assert [c.credential_id for c in newest_first] == ["m0", "m1", "m2"]
        print("ok", CREDENTIAL.category)
        """
    )
    script = declaring + given + querying.rstrip("\n") + "\n" + textwrap.indent(check, "    ")
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": f"sqlite:///{tmp_path}/docs.db"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok", "__main__:credential"]


RECIPE_KIND = """
from dataclasses import dataclass

import storage_core


@storage_core.record_kind("recipe_invite", key="invitation_id", indexed=["witness"])
@dataclass(frozen=True, slots=True, kw_only=True)
class Invite:
    invitation_id: str
    witness: str
    {extra}
    record_version: int = 1
"""


def test_the_docs_alembic_recipe_versions_an_applications_kinds(tmp_path: Path) -> None:
    """docs/kinds.md's application environment, verbatim: baseline on a provisioned
    database, a field added by an autogenerated revision, both histories clean."""
    docs = (ROOT / "docs" / "kinds.md").read_text()
    env_py = next(b for b in re.findall(r"```python\n(.*?)```", docs, re.S) if "context" in b)
    env_py = textwrap.dedent(env_py).replace("myserver.kinds", "recipe_app.kinds")
    app = tmp_path / "recipe_app"
    (app / "alembic" / "versions").mkdir(parents=True)
    (app / "__init__.py").touch()
    (app / "kinds.py").write_text(RECIPE_KIND.format(extra=""))
    (app / "alembic" / "env.py").write_text(env_py)
    mako = ROOT / "backends/sqlalchemy/webvh_storage_sqlalchemy/alembic/script.py.mako"
    (app / "alembic" / "script.py.mako").write_text(mako.read_text())
    (tmp_path / "alembic.ini").write_text(
        "[alembic]\nscript_location = recipe_app/alembic\nprepend_sys_path = .\n"
    )
    url = f"sqlite:///{tmp_path}/app.db"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path), "DATABASE_URL": url}

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout

    def revisions() -> list[str]:
        return sorted(p.read_text() for p in (app / "alembic" / "versions").glob("*.py"))

    provision = "import recipe_app.kinds, storage_core as s; m = s.open_storage(); m.init_db()"
    run("-c", provision)
    run("-m", "alembic", "revision", "--autogenerate", "-m", "baseline")
    [baseline] = revisions()
    assert "op." not in baseline  # the provisioned table is the baseline
    run("-m", "alembic", "stamp", "head")

    (app / "kinds.py").write_text(RECIPE_KIND.format(extra="uses: int = 0"))
    run("-m", "alembic", "revision", "--autogenerate", "-m", "uses")
    added = next(r for r in revisions() if r != baseline)
    assert "op.add_column" in added and "'uses'" in added
    run("-m", "alembic", "upgrade", "head")
    run("-m", "alembic", "check")
    run("-m", "alembic", "-c", str(ROOT / "alembic.ini"), "-x", f"url={url}", "check")
    stored = run(
        "-c",
        provision + "; from recipe_app.kinds import Invite; "
        "m.create_record(Invite(invitation_id='i', witness='w', uses=5)); "
        "print(m.get_record('recipe_invite', 'i').uses)",
    )
    assert stored.split() == ["5"]


def test_a_native_askar_store_with_long_keys_migrates_to_sql(tmp_path: Path) -> None:
    """Entries named by a key's digest (layout.entry_name) are recognised as that key by
    `storage-core migrate-askar`, not rejected as differing from their entry name."""
    from webvh_storage_migrate.cli import main as migrate

    keys = ["t" * 2000, "short", "\x1fsha256:" + "f" * 64]
    askar, sql = f"sqlite://{tmp_path}/native.db", f"sqlite:///{tmp_path}/sql.db"
    with open_storage("askar", askar) as store:
        store.init_db()
        for key in keys:
            store.create_task(key, "sync", "pending")
    assert migrate(["--quiet", "--askar", askar, "--to", sql, "--verify"]) == 0
    with open_storage("sqlalchemy", sql) as store:
        assert [t.task_id for t in store.list_records("task")] == keys


def test_db_revision_keeps_an_applications_own_history(tmp_path: Path) -> None:
    """`storage-core db --app-versions DIR --app-kinds MODULE revision --autogenerate`:
    the application's revisions in its own directory and version table, ours untouched."""
    app = tmp_path / "cli_app"
    app.mkdir()
    (app / "__init__.py").touch()
    kinds = app / "kinds.py"
    kinds.write_text(RECIPE_KIND.format(extra="").replace("recipe_invite", "cli_invite"))
    versions = tmp_path / "migrations"
    url = f"sqlite:///{tmp_path}/cli.db"
    env = {  # the caller's environment (coverage measures the children), no STORAGE_*
        **{k: v for k, v in os.environ.items() if not k.startswith(("STORAGE_", "DATABASE_"))},
        "PYTHONPATH": str(tmp_path),
        "DATABASE_URL": url,
    }
    cli = "import sys; from storage_core.cli import main; sys.exit(main(sys.argv[1:]))"
    app_args = ["db", "--app-versions", str(versions), "--app-kinds", "cli_app.kinds"]

    def run(*args: str, code: int = 0) -> str:
        done = subprocess.run(
            [sys.executable, "-c", cli, *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == code, (args, done.stdout, done.stderr)
        return done.stdout + done.stderr

    refused = run("db", "revision", "-m", "x", code=2)
    assert "pass --app-versions DIR" in refused
    assert "ModuleNotFoundError" in run(*app_args[:3], "--app-kinds", "nope", "current", code=2)
    provision = "import cli_app.kinds, storage_core as s; m = s.open_storage(); m.init_db()"
    subprocess.run([sys.executable, "-c", provision], cwd=tmp_path, env=env, check=True)
    run(*app_args, "revision", "--autogenerate", "-m", "baseline")
    [baseline] = list(versions.glob("*.py"))
    assert "op." not in baseline.read_text()
    run(*app_args, "stamp", "head")
    kinds.write_text(
        RECIPE_KIND.format(extra="uses: int = 0").replace("recipe_invite", "cli_invite")
    )
    assert "'add_column', None, 'cli_invite', Column('uses'" in run(*app_args, "check", code=1)
    run(*app_args, "revision", "--autogenerate", "-m", "uses")
    [added] = [p for p in versions.glob("*.py") if p != baseline]
    assert "op.add_column" in added.read_text()
    run(*app_args, "upgrade")
    run(*app_args, "check")
    assert "(head)" in run(*app_args, "current")
    assert run("db", "current").strip() == "0008_long_keys (head)"  # ours, untouched
    run("db", "check")
