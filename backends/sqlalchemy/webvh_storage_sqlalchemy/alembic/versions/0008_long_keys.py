"""PostgreSQL: keys up to 64 KiB. A B-tree entry cannot exceed ~2.7 kB, so the key is no
longer the primary key: it becomes TEXT, unique through a B-tree on md5(key) (what
INSERT ... ON CONFLICT names) and found through a hash index on the key (`key = $1`
uses it, whatever the key's length). SQLite limits neither VARCHAR nor index entries:
nothing to do there. Keys keep the code-point order of 0007.

Revision ID: 0008_long_keys
Revises: 0007_order_by_indexes
Create Date: 2026-11-30 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008_long_keys"
down_revision: str | None = "0007_order_by_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: table -> its key column, as of this revision
KEYS = {
    "log_entries": "scid",
    "resources": "resource_id",
    "witness_files": "scid",
    "whois_presentations": "scid",
    "tasks": "task_id",
    "policies": "policy_id",
    "registries": "registry_id",
    "test_log_entries": "scid",
    "test_resources": "resource_id",
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, key in KEYS.items():
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT pk_{table}")
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {key} TYPE TEXT COLLATE \"C\"")
        op.execute(f"CREATE UNIQUE INDEX uq_{table}_key ON {table} (md5({key}))")
        op.execute(f"CREATE INDEX ix_{table}_key_hash ON {table} USING hash ({key})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, key in KEYS.items():
        op.execute(f"DROP INDEX ix_{table}_key_hash")
        op.execute(f"DROP INDEX uq_{table}_key")
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {key} TYPE VARCHAR(1024) COLLATE \"C\"")
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT pk_{table} PRIMARY KEY ({key})")
