"""askar_archive: Askar entries kept verbatim by tools/migrate_askar.py.

Revision ID: 0003_askar_archive
Revises: 0002_record_version
Create Date: 2025-01-03 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_askar_archive"
down_revision: str | None = "0002_record_version"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "askar_archive",
        sa.Column("category", sa.String(length=1024), nullable=False),
        sa.Column("name", sa.String(length=1024), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("tags", sa.JSON().with_variant(sa.Text(), "sqlite"), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("category", "name", name="pk_askar_archive"),
    )


def downgrade() -> None:
    op.drop_table("askar_archive")
