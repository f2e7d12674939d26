"""Registers the built-in SQLAlchemy backend, exactly as a third-party plugin would."""

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
