"""resources: `links` and `envelope`, so a record rebuilds its whole attested resource.

Existing rows get no links (null) and an empty envelope ({}), which rebuilds the
document's usual shape (content, metadata, proof).

Revision ID: 0004_resource_document
Revises: 0003_askar_archive
Create Date: 2026-11-30 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_resource_document"
down_revision: str | None = "0003_askar_archive"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(sa.Text(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("resources") as batch:
        batch.add_column(sa.Column("links", _JSON, nullable=True))
        # NOT NULL: the server default fills existing rows, then goes (the model has none).
        batch.add_column(sa.Column("envelope", _JSON, nullable=False, server_default="{}"))
    with op.batch_alter_table("resources") as batch:
        batch.alter_column("envelope", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("resources") as batch:
        batch.drop_column("envelope")
        batch.drop_column("links")
