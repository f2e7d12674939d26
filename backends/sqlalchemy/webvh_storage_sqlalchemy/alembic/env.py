"""Alembic environment: the same database settings as the library.

URL: `-x url=...` wins, then DATABASE_URL (or POSTGRES_*), then sqlite:///app.db.
The library's provision() passes its own connection in `config.attributes["connection"]`
and migrates on it, inside its transaction.

Our revisions describe the nine did:webvh kinds' tables and the archive only: the tables
of kinds an application declared are invisible here (`include_name`), so `alembic check`
stays clean on a database that holds them. `-x declared=true` makes them visible (the
kinds of installed plugins, `register_kinds`, are loaded first), for an application that
keeps its own revisions for its kinds (docs/kinds.md).
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context

from storage_core.config import Settings, database_url_from_env
from webvh_storage_sqlalchemy.dialects import dialect_for
from webvh_storage_sqlalchemy.migrations import comparison_filters
from webvh_storage_sqlalchemy.models import DECLARED_METADATA, Base, declared_tables

config = context.config


def _declared_too() -> bool:
    flag = context.get_x_argument(as_dictionary=True).get("declared", "")
    return flag.lower() in ("1", "true", "yes") or bool(config.attributes.get("declared"))


if _declared_too():
    from storage_core.plugins import get_registry

    get_registry()  # plugins' register_kinds hooks declare their kinds
    declared_tables()  # every declared kind's table on DECLARED_METADATA
    target_metadata = [Base.metadata, DECLARED_METADATA]
else:
    target_metadata = [Base.metadata]
_known_tables = {name for metadata in target_metadata for name in metadata.tables}


def _url() -> str:
    x_args = context.get_x_argument(as_dictionary=True)
    return x_args.get("url") or database_url_from_env(os.environ)


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
        **comparison_filters(connection.dialect.name, _known_tables),
    )


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        compare_type=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    given = config.attributes.get("connection")
    if given is not None:
        _configure(given)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = dialect_for(Settings.from_env(url=_url())).create_engine()
    try:
        with engine.connect() as connection:
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if config.config_file_name and config.attributes.get("connection") is None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
