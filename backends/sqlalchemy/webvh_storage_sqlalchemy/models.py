"""The SQL schema: one table per kind (built from its `KindSpec`) plus the Askar archive.

The nine did:webvh kinds' tables and the archive are on ONE declarative Base whose
MetaData has a naming convention, so constraint and index names are the same in
create_all, this project's Alembic revisions and Alembic's diffs. Tables of the kinds
an application declares (`table_for`) are built the same way on `DECLARED_METADATA`,
which our revisions never see: provision() creates the missing ones, and an
application's own Alembic revisions may manage them (docs/kinds.md).

Every kind table has the record fields, `record_version` (optimistic concurrency) and
`seq`: the insertion-order number list/stream sort by. `seq` is assigned on INSERT
(`NextSeq`) and never updated, so updates keep a record's place and delete + re-create
moves it to the end. On PostgreSQL it is also the column's server default
(`nextval('<table>_seq_seq')`, the sequence owned by the column) so plain SQL inserts work.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Double,
    FetchedValue,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    column,
    event,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, column_property

from storage_core.kinds import KINDS, FieldType, KindSpec
from storage_core.kindspec import KIND_REGISTRY
from webvh_storage_sqlalchemy.columns import JSONDocument, NextSeq, UTCDateTime, sequence_name

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
# Keys and indexed strings are limited to 1024 UTF-8 bytes by validation (<= 1024 chars).
INDEXED_LENGTH = 1024
ARCHIVE_TABLE = "askar_archive"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


#: Keys, indexed strings and the archive's (category, name) sort in code-point order on
#: every backend (order_by, archive streams): on PostgreSQL the database's own collation
#: (e.g. en_US) would sort otherwise (Alembic 0006, 0007).
_CODE_POINT_ORDERED = String(INDEXED_LENGTH).with_variant(
    String(INDEXED_LENGTH, collation="C"), "postgresql"
)

_SCALAR_COLUMNS: dict[FieldType, Any] = {
    FieldType.INDEXED_STR: _CODE_POINT_ORDERED,
    FieldType.STR: Text,
    FieldType.OPT_STR: Text,
    FieldType.BOOL: Boolean,
    FieldType.INT: BigInteger,
    FieldType.FLOAT: Double,
    FieldType.DATETIME: UTCDateTime,
}


#: Keys hold up to 64 KiB (validation.MAX_KEY_BYTES). SQLite neither limits VARCHAR nor
#: the size of an index entry, so the key stays the primary key there; PostgreSQL's
#: B-tree cannot hold an entry over ~2.7 kB, so there the key is TEXT (code-point
#: ordered), unique through a B-tree on md5(key) (which ON CONFLICT names:
#: `key_conflict_target`) and found through a hash index on the key itself (any length;
#: plain `key = $1` uses it). Alembic 0008.
_KEY_TYPE = String(INDEXED_LENGTH).with_variant(Text(collation="C"), "postgresql")


def _column_for(spec: KindSpec[Any], name: str, ftype: FieldType) -> Column[Any]:
    if ftype is FieldType.KEY:
        return Column(name, _KEY_TYPE, nullable=False)
    # JSON: only a "JSON value" (or an optional field) may be null; it reads back as None.
    return Column(name, _SCALAR_COLUMNS.get(ftype, JSONDocument), nullable=spec.nullable(name))


def unique_index_name(spec: KindSpec[Any], number: int) -> str:
    """The name of the UNIQUE index of `spec.unique[number]`: short whatever the fields
    (PostgreSQL cuts names at 63 bytes), and how a violation is traced to its fields."""
    return f"uq_{spec.table}_{number}"


def _kind_table(spec: KindSpec[Any], metadata: MetaData) -> Table:
    columns = [_column_for(spec, n, t) for n, t in spec.field_types.items()]
    if spec.timestamps:
        columns += [
            Column("created_at", UTCDateTime, nullable=False),
            Column("updated_at", UTCDateTime, nullable=False),
        ]
    columns += [
        Column("record_version", BigInteger, nullable=False, server_default="1"),
        Column(
            "seq",
            BigInteger,
            nullable=False,
            default=NextSeq(spec.table),
            server_default=FetchedValue(),
        ),
    ]
    # (field, seq): a filtered page reads its rows in list order straight from the index
    indexes = [Index(None, f, "seq") for f in spec.filterable if f != spec.key]
    if spec.timestamps:  # order_by created_at / updated_at (Alembic 0007)
        indexes += [Index(None, "created_at", "seq"), Index(None, "updated_at", "seq")]
    indexes.append(Index(None, "seq", unique=True))
    indexes += [
        Index(unique_index_name(spec, n), *fields, unique=True)
        for n, fields in enumerate(spec.unique)
    ]
    table = Table(spec.table, metadata, *columns, *indexes, *_key_constraints(spec))
    _attach_postgresql_sequence(table)
    return table


def key_digest(column: Any) -> Any:
    """The expression PostgreSQL's unique index on a key is built on."""
    return func.md5(column)


def _key_constraints(spec: KindSpec[Any]) -> list[Any]:
    """The key's uniqueness and lookup, per dialect (see `_KEY_TYPE`)."""
    key: Any = column(spec.key)
    primary = PrimaryKeyConstraint(spec.key)
    primary.ddl_if(dialect="sqlite")
    unique = Index(f"uq_{spec.table}_key", key_digest(key), unique=True)
    unique.ddl_if(dialect="postgresql")
    lookup = Index(f"ix_{spec.table}_key_hash", spec.key, postgresql_using="hash")
    lookup.ddl_if(dialect="postgresql")
    return [primary, unique, lookup]


def key_conflict_target(table: Table, dialect_name: str) -> list[Any]:
    """What `INSERT ... ON CONFLICT (...)` names for a kind's key on this dialect."""
    key = table.primary_key.columns[0]
    return [key_digest(key)] if dialect_name == "postgresql" else [key]


def _attach_postgresql_sequence(table: Table) -> None:
    """PostgreSQL: the sequence behind `seq`, owned by the column (dropped with it)."""
    seq = sequence_name(table.name)
    statements = (
        f"CREATE SEQUENCE IF NOT EXISTS {seq} OWNED BY {table.name}.seq",
        f"ALTER TABLE {table.name} ALTER COLUMN seq SET DEFAULT nextval('{seq}')",
    )

    def create_sequence(_table: Table, connection: Connection, **_kw: Any) -> None:
        if connection.dialect.name == "postgresql":
            for statement in statements:
                connection.exec_driver_sql(statement)

    event.listen(table, "after_create", create_sequence)


#: The nine did:webvh kinds' tables (this project's Alembic revisions manage them).
KIND_TABLES: dict[str, Table] = {
    name: _kind_table(spec, Base.metadata) for name, spec in KINDS.items()
}
#: The tables of kinds an application declared, built on first use.
DECLARED_METADATA = MetaData(naming_convention=NAMING_CONVENTION)
_declared_lock = threading.Lock()


def table_for(spec: KindSpec[Any]) -> Table:
    """The table of any declared kind."""
    table = KIND_TABLES.get(spec.name)
    if table is not None and KINDS[spec.name] is spec:
        return table
    with _declared_lock:
        table = DECLARED_METADATA.tables.get(spec.table)
        if table is None:
            table = _kind_table(spec, DECLARED_METADATA)
        return table


def declared_tables() -> list[Table]:
    """The tables of every kind declared so far beyond the nine, in declaration order."""
    return [table_for(s) for n, s in KIND_REGISTRY.by_name.items() if n not in KIND_TABLES]


def unique_violation(spec: KindSpec[Any], message: str) -> tuple[str, ...] | None:
    """The fields of the unique constraint a driver's message says was violated:
    PostgreSQL names the index, SQLite lists `table.field` of each of its columns."""
    for number, fields in enumerate(spec.unique):
        columns = ", ".join(f"{spec.table}.{f}" for f in fields)
        if f'"{unique_index_name(spec, number)}"' in message or message.endswith(columns):
            return fields
    return None


archive_table = Table(
    ARCHIVE_TABLE,
    Base.metadata,
    Column("category", _CODE_POINT_ORDERED, primary_key=True),
    Column("name", _CODE_POINT_ORDERED, primary_key=True),
    Column("value", Text, nullable=False),
    Column("tags", JSONDocument, nullable=False),
    Column("archived_at", UTCDateTime, nullable=False),
)


# ORM classes over the same tables, for callers who use `SessionLocal` directly; their
# public names are in `webvh_storage_sqlalchemy.orm`. The annotations only give type
# checkers the columns: the mapping itself comes from `__table__`.
class LogEntryRow(Base):
    __table__ = KIND_TABLES["log_entry"]
    scid: Mapped[str]
    did: Mapped[str]
    domain: Mapped[str]
    namespace: Mapped[str]
    identifier: Mapped[str]
    logs: Mapped[list[Any]]
    deactivated: Mapped[bool]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    record_version: Mapped[int]
    seq: Mapped[int]


class ResourceRow(Base):
    __table__ = KIND_TABLES["resource"]
    resource_id: Mapped[str]
    scid: Mapped[str]
    did: Mapped[str]
    resource_type: Mapped[str]
    resource_name: Mapped[str]
    content: Mapped[Any]
    # `metadata` is reserved on declarative classes; the column is `metadata_` here.
    metadata_: Mapped[Any] = column_property(KIND_TABLES["resource"].c.metadata)
    proof: Mapped[Any]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    record_version: Mapped[int]
    seq: Mapped[int]


class WitnessFileRow(Base):
    __table__ = KIND_TABLES["witness_file"]
    scid: Mapped[str]
    witness_proofs: Mapped[list[Any]]
    record_version: Mapped[int]
    seq: Mapped[int]


class WhoisPresentationRow(Base):
    __table__ = KIND_TABLES["whois"]
    scid: Mapped[str]
    presentation: Mapped[dict[str, Any]]
    record_version: Mapped[int]
    seq: Mapped[int]


class TaskRow(Base):
    __table__ = KIND_TABLES["task"]
    task_id: Mapped[str]
    task_type: Mapped[str]
    status: Mapped[str]
    progress: Mapped[dict[str, Any]]
    message: Mapped[str | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    record_version: Mapped[int]
    seq: Mapped[int]


class PolicyRow(Base):
    __table__ = KIND_TABLES["policy"]
    policy_id: Mapped[str]
    version: Mapped[str | None]
    witness: Mapped[bool]
    watcher: Mapped[str | None]
    portability: Mapped[bool]
    prerotation: Mapped[bool]
    endorsement: Mapped[bool]
    policy_data: Mapped[dict[str, Any]]
    record_version: Mapped[int]
    seq: Mapped[int]


class RegistryRow(Base):
    __table__ = KIND_TABLES["registry"]
    registry_id: Mapped[str]
    registry_type: Mapped[str]
    registry_data: Mapped[dict[str, Any]]
    meta: Mapped[dict[str, Any]]
    record_version: Mapped[int]
    seq: Mapped[int]


class TestLogEntryRow(Base):
    __test__ = False
    __table__ = KIND_TABLES["test_log_entry"]
    scid: Mapped[str]
    logs: Mapped[list[Any]]
    tags: Mapped[dict[str, str]]
    record_version: Mapped[int]
    seq: Mapped[int]


class TestResourceRow(Base):
    __test__ = False
    __table__ = KIND_TABLES["test_resource"]
    resource_id: Mapped[str]
    scid: Mapped[str]
    content: Mapped[Any]
    tags: Mapped[dict[str, str]]
    record_version: Mapped[int]
    seq: Mapped[int]


class AskarArchiveRow(Base):
    __table__ = archive_table
    category: Mapped[str]
    name: Mapped[str]
    value: Mapped[str]
    tags: Mapped[Any]
    archived_at: Mapped[datetime]
