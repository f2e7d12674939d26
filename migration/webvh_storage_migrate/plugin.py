"""Adds `storage-core migrate-askar`, exactly as a third-party plugin adds a command."""

from storage_core.hookspecs import hookimpl


@hookimpl
def register_commands(subparsers):
    """The CLI module is light: aries_askar is imported only once the command runs."""
    from webvh_storage_migrate.cli import add_subcommand

    add_subcommand(subparsers)
