"""order_by on lists and streams, read from indexes in the order it promises:

- (created_at, seq) and (updated_at, seq) on the kinds with timestamps, as the
  (field, seq) indexes of 0005 serve the filterable fields;
- PostgreSQL: keys and indexed strings in the "C" collation, so they sort by code point
  (as on SQLite and Askar) whatever the database's collation (en_US sorts "a" < "B"),
  and ORDER BY field reads the (field, seq) index instead of sorting. Equality is
  unchanged (every deterministic collation compares bytes); indexes on the columns are
  rebuilt with them. SQLite compares code points already.

Revision ID: 0007_order_by_indexes
Revises: 0006_archive_code_point_order
Create Date: 2026-11-30 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007_order_by_indexes"
down_revision: str | None = "0006_archive_code_point_order"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: tables with created_at / updated_at, as of this revision
TIMESTAMPED = ("log_entries", "resources", "tasks")
#: table -> its key and indexed string columns, as of this revision
STRINGS = {
    "log_entries": ("scid", "did", "domain", "namespace", "identifier"),
    "resources": ("resource_id", "scid", "did", "resource_type"),
    "witness_files": ("scid",),
    "whois_presentations": ("scid",),
    "tasks": ("task_id", "task_type", "status"),
    "policies": ("policy_id",),
    "registries": ("registry_id", "registry_type"),
    "test_log_entries": ("scid",),
    "test_resources": ("resource_id", "scid"),
}


def _collate(collation: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in STRINGS.items():
        for column in columns:
            op.execute(
                f'ALTER TABLE {table} ALTER COLUMN {column} TYPE VARCHAR(1024) COLLATE "{collation}"'
            )


def upgrade() -> None:
    for table in TIMESTAMPED:
        for column in ("created_at", "updated_at"):
            op.create_index(f"ix_{table}_{column}_seq", table, [column, "seq"])
    _collate("C")


def downgrade() -> None:
    _collate("default")
    for table in TIMESTAMPED:
        for column in ("created_at", "updated_at"):
            op.drop_index(f"ix_{table}_{column}_seq", table_name=table)
