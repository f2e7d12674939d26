"""Registers the built-in Askar backend; aries-askar is imported only when it is chosen."""

from storage_core.hookspecs import hookimpl


@hookimpl
def register_storage_backends(register):
    register(
        "askar",
        "backends.askar.backend:AskarBackend",
        requires=("aries_askar",),
        install_hint="install the extra: pip install 'webvh-storage[askar]'",
    )


@hookimpl
def register_commands(subparsers):
    """`storage-core migrate-askar`. Imported here, not at module load: the migration's CLI
    module is light, and aries_askar is imported only once the command runs."""
    from backends.askar.migration.cli import add_subcommand

    add_subcommand(subparsers)
