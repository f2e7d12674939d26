"""Adds `storage-core migrate-askar`, exactly as a third-party plugin adds a command."""

from __future__ import annotations

import argparse

from storage_core.hookspecs import hookimpl


@hookimpl
def register_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # Imported here, not at the top: every process that opens a store loads this plugin
    # (entry point discovery), and only the `storage-core` CLI needs the migration code.
    from webvh_storage_migrate.cli import add_subcommand

    add_subcommand(subparsers)
