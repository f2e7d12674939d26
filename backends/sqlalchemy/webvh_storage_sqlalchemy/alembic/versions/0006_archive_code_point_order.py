"""PostgreSQL: the archive's (category, name) in the "C" collation, so it streams in
code-point order, as on SQLite and Askar, whatever collation the database was created
with (en_US sorts "a" < "B" < "b"; code points sort "B" < "a" < "b"). The primary key
index is rebuilt with the columns. SQLite compares code points already: nothing to do.

Revision ID: 0006_archive_code_point_order
Revises: 0005_filter_seq_indexes
Create Date: 2026-11-30 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006_archive_code_point_order"
down_revision: str | None = "0005_filter_seq_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _collate(collation: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for column in ("category", "name"):
        op.execute(
            f'ALTER TABLE askar_archive ALTER COLUMN {column} TYPE VARCHAR(1024) COLLATE "{collation}"'
        )


def upgrade() -> None:
    _collate("C")


def downgrade() -> None:
    _collate("default")
