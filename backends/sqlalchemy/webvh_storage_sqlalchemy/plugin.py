"""Registers the built-in SQLAlchemy backend and its `storage-core db` command, exactly
as a third-party plugin would."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from storage_core.hookspecs import hookimpl
from webvh_storage_sqlalchemy.options import SQL_OPTIONS


@hookimpl
def register_storage_backends(register: Callable[..., None]) -> None:
    register(
        "sqlalchemy",
        "webvh_storage_sqlalchemy.backend:SQLAlchemyBackend",
        requires=("sqlalchemy", "alembic"),
        install_hint="pip install webvh-storage (and webvh-storage[postgres] for PostgreSQL)",
        options=SQL_OPTIONS,
    )


@hookimpl
def register_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # Imported here: every process that opens a store loads this plugin, and only the
    # `storage-core` CLI needs Alembic's command API.
    from webvh_storage_sqlalchemy.db_commands import add_subcommand

    add_subcommand(subparsers)
