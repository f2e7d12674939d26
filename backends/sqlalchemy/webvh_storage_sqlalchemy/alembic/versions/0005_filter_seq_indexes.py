"""Filter indexes become (field, seq): a filtered page (`WHERE namespace = ? ORDER BY seq
LIMIT 50 OFFSET n`) then reads rows in order from the index instead of sorting every row
of the namespace for each page. The composite index still serves the equality lookups
and counts the single-column one served, so that one goes.

Revision ID: 0005_filter_seq_indexes
Revises: 0004_resource_document
Create Date: 2026-11-30 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005_filter_seq_indexes"
down_revision: str | None = "0004_resource_document"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: table -> its filterable fields other than the key, as of this revision
FILTERED = {
    "log_entries": ("did", "domain", "namespace", "identifier", "deactivated"),
    "resources": ("scid", "did", "resource_type"),
    "tasks": ("task_type", "status"),
    "registries": ("registry_type",),
    "test_resources": ("scid",),
}


def upgrade() -> None:
    for table, fields in FILTERED.items():
        for field in fields:
            op.drop_index(f"ix_{table}_{field}", table_name=table)
            op.create_index(f"ix_{table}_{field}_seq", table, [field, "seq"])


def downgrade() -> None:
    for table, fields in FILTERED.items():
        for field in fields:
            op.drop_index(f"ix_{table}_{field}_seq", table_name=table)
            op.create_index(f"ix_{table}_{field}", table, [field])
