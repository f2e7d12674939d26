"""The hooks a storage plugin may implement."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pluggy

hookspec = pluggy.HookspecMarker("storage_core")
hookimpl = pluggy.HookimplMarker("storage_core")


@hookspec
def register_storage_backends(register: Callable[..., None]) -> None:
    """Register backends:
    `register(name, factory, *, requires=(), install_hint=None, options=BackendOptions())`.

    `factory` is a callable or a dotted path "package.module:Class" taking a
    `storage_core.config.Settings`; a path keeps optional dependencies unimported until
    the backend is chosen. `requires` names importable modules the backend needs, and
    `install_hint` says how to install them. `options` (`storage_core.options`)
    declares the backend's URL variable and options, which the framework parses,
    validates, masks and lists (docs/writing-a-backend.md, "Configuration").
    """


@hookspec
def register_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `storage-core` subcommands: `subparsers` is an argparse sub-parser action.
    Set `func=callable(args) -> int` as the parser default to run it."""


@hookspec
def register_kinds(register: Callable[..., object]) -> None:
    """Declare the plugin's record kinds: `register(record_class, name, *, key,
    indexed=(), unique=(), max_payload_bytes=None, table=None, category=None)`, the
    call form of `storage_core.record_kind` (docs/kinds.md). Called when plugins load,
    before any backend is built, so provisioning creates the kinds' tables."""
