"""Alembic environment of an application's own revisions for the kinds it declared
(`storage-core db --app-versions DIR --app-kinds MODULE ...`, docs/kinds.md).

It compares only the tables of declared kinds beyond the nine (installed plugins'
`register_kinds` included), keeps its history in its own version table, and migrates on
the connection `db_actions` passes in `config.attributes["connection"]`.
"""

from __future__ import annotations

from alembic import context

from storage_core.kinds import KINDS, registered_kinds
from storage_core.plugins import get_registry
from webvh_storage_sqlalchemy.migrations import comparison_filters
from webvh_storage_sqlalchemy.models import DECLARED_METADATA, table_for

config = context.config
get_registry()  # plugins' register_kinds hooks declare their kinds
mine = {table_for(s).name for name, s in registered_kinds().items() if name not in KINDS}
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=DECLARED_METADATA,
    version_table=config.attributes["version_table"],
    compare_type=True,
    render_as_batch=connection.dialect.name == "sqlite",
    **comparison_filters(connection.dialect.name, mine),
)
with context.begin_transaction():
    context.run_migrations()
