"""Initial schema: the nine record tables of the original seed schema, plus `seq`.

`seq` is the insertion-order number list/stream sort by (never updated). On PostgreSQL it
defaults to nextval('<table>_seq_seq'), a sequence owned by the column.
record_version arrives in 0002.

Revision ID: 0001_initial
Revises:
Create Date: 2025-01-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LEN = 1024  # keys and indexed strings: validation caps them at 1024 UTF-8 bytes


def _json():
    return sa.JSON().with_variant(sa.Text(), "sqlite")


def key(name):
    return sa.Column(name, sa.String(length=LEN), nullable=False)


def indexed(name):
    return sa.Column(name, sa.String(length=LEN), nullable=False)


def text(name, nullable=False):
    return sa.Column(name, sa.Text(), nullable=nullable)


def boolean(name):
    return sa.Column(name, sa.Boolean(), nullable=False)


def json(name, nullable=False):
    return sa.Column(name, _json(), nullable=nullable)


def timestamps():
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


# table -> (key column, columns, indexed columns)
TABLES = {
    "log_entries": (
        "scid",
        [key("scid"), indexed("did"), indexed("domain"), indexed("namespace"),
         indexed("identifier"), json("logs"), boolean("deactivated"), *timestamps()],
        ["did", "domain", "namespace", "identifier", "deactivated"],
    ),
    "resources": (
        "resource_id",
        [key("resource_id"), indexed("scid"), indexed("did"), indexed("resource_type"),
         text("resource_name"), json("content", True), json("metadata", True),
         json("proof", True), *timestamps()],
        ["scid", "did", "resource_type"],
    ),
    "witness_files": ("scid", [key("scid"), json("witness_proofs")], []),
    "whois_presentations": ("scid", [key("scid"), json("presentation")], []),
    "tasks": (
        "task_id",
        [key("task_id"), indexed("task_type"), indexed("status"), json("progress"),
         text("message", True), *timestamps()],
        ["task_type", "status"],
    ),
    "policies": (
        "policy_id",
        [key("policy_id"), text("version", True), boolean("witness"), text("watcher", True),
         boolean("portability"), boolean("prerotation"), boolean("endorsement"),
         json("policy_data")],
        [],
    ),
    "registries": (
        "registry_id",
        [key("registry_id"), indexed("registry_type"), json("registry_data"), json("meta")],
        ["registry_type"],
    ),
    "test_log_entries": ("scid", [key("scid"), json("logs"), json("tags")], []),
    "test_resources": (
        "resource_id",
        [key("resource_id"), indexed("scid"), json("content", True), json("tags")],
        ["scid"],
    ),
}


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table, (pk, columns, indexes) in TABLES.items():
        op.create_table(
            table,
            *columns,
            sa.Column("seq", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint(pk, name=f"pk_{table}"),
        )
        for column in indexes:
            op.create_index(f"ix_{table}_{column}", table, [column], unique=False)
        op.create_index(f"ix_{table}_seq", table, ["seq"], unique=True)
        if postgresql:
            op.execute(f"CREATE SEQUENCE {table}_seq_seq OWNED BY {table}.seq")
            op.execute(f"ALTER TABLE {table} ALTER COLUMN seq SET DEFAULT nextval('{table}_seq_seq')")


def downgrade() -> None:
    # Dropping a table drops its indexes and (PostgreSQL) the sequence it owns.
    for table in reversed(TABLES):
        op.drop_table(table)
