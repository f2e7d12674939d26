"""Add record_version (optimistic concurrency) to every record table.

Existing rows get 1, the version every record starts at (project issue #7).

Revision ID: 0002_record_version
Revises: 0001_initial
Create Date: 2025-01-02 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_record_version"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = (
    "log_entries",
    "resources",
    "witness_files",
    "whois_presentations",
    "tasks",
    "policies",
    "registries",
    "test_log_entries",
    "test_resources",
)


def upgrade() -> None:
    # NOT NULL with a server default: the default fills every existing row with 1.
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("record_version", sa.BigInteger(), nullable=False, server_default="1")
            )


def downgrade() -> None:
    for table in reversed(TABLES):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("record_version")
