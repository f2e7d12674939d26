"""`storage-core`: provision a store, show what it holds, list backends.

Plugins add subcommands through the `register_commands` hook (the Askar plugin adds
`migrate-askar`). Errors print one masked line and exit non-zero, never a traceback
with a password in it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from storage_core.config import Settings, mask_text
from storage_core.diagnostics import report
from storage_core.errors import StorageError
from storage_core.manager import StorageManager
from storage_core.options import settings_report
from storage_core.plugins import get_registry


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(backend=args.backend, url=args.url)


def _open(args: argparse.Namespace) -> StorageManager:
    return StorageManager(_settings(args))


def cmd_init_db(args: argparse.Namespace) -> int:
    with _open(args) as manager:
        manager.init_db(recreate=args.recreate)
        action = "recreated" if args.recreate else "provisioned"
        print(f"{action} {manager.backend_name} store at {manager.masked_url}")
        if args.info:
            _print_info(manager.info(), as_json=False)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    with _open(args) as manager:
        _print_info(
            {**manager.info(), "settings": settings_report(manager.settings)}, as_json=args.json
        )
    return 0


def _print_info(info: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(info, indent=2, default=str))
        return
    rows = info.pop("rows", {})
    for key, value in info.items():
        print(f"{key:16} {value}")
    print("rows:")
    for kind, count in rows.items():
        print(f"  {kind:16} {count}")


def cmd_backends(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    registry = get_registry(settings.plugins_allow, settings.plugins_block)
    text, status = report(registry, check=args.check, as_json=args.json, env=dict(settings.env))
    print(text)
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="storage-core", description=(__doc__ or "").partition("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def store_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--backend", help="backend name (default: STORAGE_BACKEND or sqlalchemy)")
        p.add_argument("--url", help="database URL/URI (default: from the environment)")

    p = sub.add_parser("init-db", help="create or upgrade the schema (Alembic head)")
    store_options(p)
    p.add_argument("--recreate", action="store_true", help="drop all data first")
    p.add_argument("--info", action="store_true", help="print `info` afterwards")
    p.set_defaults(func=cmd_init_db)

    p = sub.add_parser("info", help="backend, masked URL, schema revision, rows per table")
    store_options(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("backends", help="registered backends and who provides them")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--check",
        action="store_true",
        help="import and instantiate each backend (exit 1 if any fails)",
    )
    p.set_defaults(func=cmd_backends)

    settings = Settings.from_env()
    registry = get_registry(settings.plugins_allow, settings.plugins_block)
    if registry.plugin_manager is not None:
        registry.plugin_manager.hook.register_commands(subparsers=sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except StorageError as exc:
        secrets = Settings.from_env().secrets
        print(f"storage-core: error: {mask_text(str(exc), secrets)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
