"""Alembic wiring: where the revision scripts are, which revision is head, and
`provision()`, which brings a database to head as fast as the case allows.

The contract suite provisions a fresh store for every test, so the common cases are
short-cut: an empty database gets `create_all` + the head revision written straight into
alembic_version (equivalent to `upgrade head`, which the tests check with `alembic check`);
`recreate=True` on a database already at head only empties the tables. A database at an
older revision goes through the real `alembic upgrade head`. Then the tables of the kinds
an application declared (models.DECLARED_METADATA) that the database lacks are created,
with their indexes; the tables it has are left as they are, rows included.

Any number of processes, on any number of hosts, may provision the same database at once
(every worker of a server does it at start-up). Looking at the schema and then creating it
is a race (PostgreSQL: `duplicate key value violates unique constraint
"pg_type_typname_nsp_index"`), so provisioning is serialised: on PostgreSQL by a
transaction-level advisory lock taken before anything is read (released by the commit, so
it also works through PgBouncer in transaction pooling mode), on a SQLite file by a flock
on `<file>.lock`. Whoever waited then finds the schema at head and has nothing to do.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    text,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import URL

from storage_core.errors import BackendUnavailableError, StorageError
from storage_core.filelock import FileLock
from webvh_storage_sqlalchemy.columns import sequence_name
from webvh_storage_sqlalchemy.dialects.sqlite import is_memory
from webvh_storage_sqlalchemy.models import Base, declared_tables

VERSION_TABLE = "alembic_version"
#: pg_advisory_xact_lock key held while provisioning (advisory locks are per database).
PROVISION_LOCK_KEY = 0x7765_6276_6800_0001  # "webvh" + 1
_PACKAGE_DIR = Path(__file__).resolve().parent
# Same layout Alembic creates, so a stamped database is indistinguishable from an upgraded one.
_version_table = Table(
    VERSION_TABLE,
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


def script_location() -> Path:
    """The revision scripts, shipped inside this package (the repo's alembic.ini points here)."""
    return _PACKAGE_DIR / "alembic"


def alembic_config(connection: Connection | None = None) -> Config:
    """A Config for the command API; with a connection, env.py migrates on it."""
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def app_alembic_config(
    versions: str | Path, version_table: str, connection: Connection | None = None
) -> Config:
    """A Config for an application's own revisions of its declared kinds: the packaged
    environment `alembic/app` (only declared kinds' tables, its own version table), the
    revisions in the application's `versions` directory."""
    config = Config()
    config.set_main_option("script_location", str(script_location() / "app"))
    config.set_main_option("version_locations", str(Path(versions).resolve()))
    config.attributes["version_table"] = version_table
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise StorageError(f"no Alembic revisions found in {script_location()}")
    return head


def comparison_filters(dialect_name: str, tables: Iterable[str]) -> dict[str, Any]:
    """`include_name` and `include_object` for Alembic's `context.configure`: compare
    only `tables` (a database may hold other kinds' tables, docs/kinds.md), and leave out
    the schema items made for another dialect only (`ddl_if`: PostgreSQL's key indexes,
    models._key_constraints)."""
    known = frozenset(tables)
    if dialect_name != "postgresql":  # Alembic warns of those indexes it cannot compare
        warnings.filterwarnings(
            "ignore", "autogenerate skipping metadata-specified expression-based index 'uq_"
        )

    def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
        return type_ != "table" or name in known

    def include_object(obj: Any, name: Any, type_: str, reflected: bool, compare_to: Any) -> bool:
        wanted = getattr(getattr(obj, "_ddl_if", None), "dialect", None)
        if not wanted or reflected:
            return True
        return dialect_name in ((wanted,) if isinstance(wanted, str) else tuple(wanted))

    return {"include_name": include_name, "include_object": include_object}


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


#: The tables of an aries-askar store (SQLite and PostgreSQL alike).
ASKAR_TABLES = frozenset({"config", "profiles", "items", "items_tags"})


class ForeignStoreError(StorageError):
    """The database holds another program's store (an Askar store): provisioning it as a
    SQL store would mix both, so nothing is written."""


def refuse_askar_store(existing: set[str]) -> None:
    """Raise ForeignStoreError when `existing` (table names) is an Askar store."""
    if existing >= ASKAR_TABLES:
        raise ForeignStoreError(
            "the database holds an Askar store (tables config, profiles, items, items_tags); "
            "refusing to add SQL tables to it. Use the askar backend for it, or migrate it "
            "with `storage-core migrate-askar --askar <it> --to <a new database>`"
        )


def provision(engine: Engine, recreate: bool = False) -> None:
    """Bring the database to head in one transaction (`engine` should be the write one)."""
    with provisioning_lock(engine), engine.begin() as conn:
        provision_on(conn, recreate)


def provision_on(conn: Connection, recreate: bool = False) -> None:
    """provision()'s work inside the caller's transaction, under provisioning_lock (the
    async face runs it with AsyncConnection.run_sync)."""
    head = head_revision()
    ours = set(Base.metadata.tables)
    declared = declared_tables()
    if conn.dialect.name == "postgresql":  # before the schema is looked at
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PROVISION_LOCK_KEY})
    existing = set(sa_inspect(conn).get_table_names())
    refuse_askar_store(existing)
    current = current_revision(conn) if VERSION_TABLE in existing else None
    if recreate and current == head and ours <= existing:
        _empty_tables(conn, [t for t in declared if t.name in existing])
    else:
        if recreate:
            _drop_everything(conn, declared)
            existing, current = set(), None
        if current is None:
            if existing & ours:
                raise StorageError(
                    "the database has storage tables but no Alembic revision; stamp it "
                    "with `alembic stamp <revision>` matching its schema, or provision "
                    "with recreate=True to start empty"
                )
            Base.metadata.create_all(conn)
            _stamp(conn, head)
        elif current != head:
            _upgrade(conn)
    for table in declared:  # an application's kinds: added, never altered
        if table.name not in existing:
            table.create(conn)


@contextmanager
def provisioning_lock(engine: Engine) -> Iterator[None]:
    """The lock held outside the provisioning transaction: a flock beside a SQLite file
    (PostgreSQL's advisory lock is taken inside the transaction; :memory: is private)."""
    path = _sqlite_file(engine.url)
    if path is None:
        yield
        return
    lock = FileLock(path)
    try:
        lock.acquire()
    except OSError as exc:
        raise BackendUnavailableError(
            f"cannot lock {str(lock.path)!r} to provision the database: {exc.strerror or exc}"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _sqlite_file(url: URL) -> Path | None:
    """The database file of a SQLite URL (a plain path or a `file:` URI filename)."""
    if url.get_backend_name() != "sqlite" or is_memory(url) or not url.database:
        return None
    database = url.database
    if database.startswith("file:"):
        database = unquote(database[len("file:") :].partition("?")[0])
    return Path(database)


def _stamp(conn: Connection, revision: str) -> None:
    _version_table.create(conn, checkfirst=True)
    conn.execute(_version_table.delete())
    conn.execute(_version_table.insert().values(version_num=revision))


def _upgrade(conn: Connection) -> None:
    command.upgrade(alembic_config(conn), "head")


def _empty_tables(conn: Connection, declared: list[Table]) -> None:
    tables = [*reversed(Base.metadata.sorted_tables), *declared]
    for table in tables:
        conn.execute(table.delete())
    if conn.dialect.name == "postgresql":
        resets = ", ".join(
            f"setval('{sequence_name(name)}', 1, false)"
            for name in sorted(t.name for t in tables if "seq" in t.c)
        )
        conn.execute(text(f"SELECT {resets}"))


def _drop_everything(conn: Connection, declared: list[Table]) -> None:
    for table in declared:
        table.drop(conn, checkfirst=True)
    Base.metadata.drop_all(conn, checkfirst=True)
    _version_table.drop(conn, checkfirst=True)
