"""`storage-core`: provision a store, show what it holds, list backends.

Plugins add subcommands through the `register_commands` hook (the SQL backend adds `db`,
the migration `migrate-askar`).

Exit status: 0 done; 1 the operator declined (`init-db --recreate` not confirmed);
2 the command could not proceed (bad configuration, store unreachable, missing driver,
no such database), with one masked line on stderr and never a traceback; 130 interrupted;
141 stdout was closed early (`storage-core info | head`), quietly, as a piped tool does.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from storage_core.config import Settings, mask_text
from storage_core.diagnostics import report
from storage_core.errors import StorageError
from storage_core.install_hints import missing_command_hint, missing_module_hint
from storage_core.manager import StorageManager
from storage_core.options import settings_report
from storage_core.plugins import get_registry

log = logging.getLogger(__name__)
EXIT_OK, EXIT_DECLINED, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_PIPE_CLOSED = 0, 1, 2, 130, 141


class CommandError(Exception):
    """An operator mistake the command reports as one line (exit status 2)."""


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(backend=args.backend, url=args.url)


def absent_database(settings: Settings) -> str | None:
    """The database file the settings name when it does not exist, else None.

    Asked before opening, because opening a SQLite store creates its file. A backend
    class answers through an optional `absent_database(settings)` static method;
    backends without files (servers, memory) need not define it.
    """
    registry = get_registry(settings.plugins_allow, settings.plugins_block)
    settings = registry.resolve(settings)  # a bad option is reported before anything else
    factory = registry.get(settings.backend).load_factory()
    check: Callable[[Settings], str | None] | None = getattr(factory, "absent_database", None)
    return check(settings) if check is not None else None


def _confirm_recreate(args: argparse.Namespace, settings: Settings) -> bool:
    """`--recreate` deletes every record: `--yes`, or a "yes" typed on a terminal."""
    if args.yes:
        return True
    if not sys.stdin.isatty():
        raise CommandError(
            "init-db --recreate deletes every record; pass --yes to confirm "
            "(stdin is not a terminal, so it cannot ask)"
        )
    where = f"at {mask_text(settings.url, settings.secrets)}" if settings.url else "configured"
    print(
        f"init-db --recreate deletes every record of the {settings.backend} store {where}.",
        file=sys.stderr,
    )
    try:
        answer = input("Type 'yes' to continue: ")
    except EOFError:
        answer = ""
    return answer.strip().lower() == "yes"


def cmd_init_db(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.recreate and not _confirm_recreate(args, settings):
        print("storage-core: not confirmed; nothing was changed", file=sys.stderr)
        return EXIT_DECLINED
    with StorageManager(settings) as manager:
        manager.init_db(recreate=args.recreate)
        action = "recreated" if args.recreate else "provisioned"
        print(f"{action} {manager.backend_name} store at {manager.masked_url}")
        if args.info:
            _print_info(manager.info(), as_json=False)
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    """Read-only: a database file that does not exist is reported, never created."""
    settings = _settings(args)
    missing = absent_database(settings)
    if missing is not None:
        raise CommandError(
            f"no database at {missing}; nothing was created "
            "(`storage-core init-db` creates and provisions it)"
        )
    with StorageManager(settings) as manager:
        if _unprovisioned(manager):
            raise CommandError(
                f"{manager.masked_url} has no storage schema yet "
                "(`storage-core init-db` provisions it)"
            )
        _print_info(
            {**manager.info(), "settings": settings_report(manager.settings)}, as_json=args.json
        )
    return EXIT_OK


def _unprovisioned(manager: StorageManager) -> bool:
    """A reachable database without a schema revision (a backend that reports one)."""
    facts = manager.backend.describe()
    return (
        "schema_revision" in facts and facts["schema_revision"] is None and (manager.health_check())
    )


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


def _version() -> str:
    try:
        return version("webvh-storage")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="storage-core", description=(__doc__ or "").partition("\n")[0]
    )
    parser.add_argument(
        "--version", action="version", version=f"storage-core (webvh-storage) {_version()}"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def store_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--backend", help="backend name (default: STORAGE_BACKEND or sqlalchemy)")
        p.add_argument("--url", help="database URL/URI (default: from the environment)")

    p = sub.add_parser("init-db", help="create or upgrade the schema (Alembic head)")
    store_options(p)
    p.add_argument("--recreate", action="store_true", help="drop all data first (asks)")
    p.add_argument("--yes", action="store_true", help="confirm --recreate without asking")
    p.add_argument("--info", action="store_true", help="print `info` afterwards")
    p.set_defaults(func=cmd_init_db)

    p = sub.add_parser(
        "info", help="backend, masked URL, schema revision, rows per table (read-only)"
    )
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

    _register_plugin_commands(sub)
    return parser


def _register_plugin_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Each plugin's `register_commands`, one at a time: a plugin that fails (a missing
    optional module, a bug) loses its commands, not the whole CLI."""
    settings = Settings.from_env()
    registry = get_registry(settings.plugins_allow, settings.plugins_block)
    if registry.plugin_manager is None:
        return
    for impl in registry.plugin_manager.hook.register_commands.get_hookimpls():
        try:
            impl.function(subparsers=sub)
        except Exception as exc:
            log.warning("plugin %s could not add its commands: %s", impl.plugin_name, exc)


def _requested_command(argv: Sequence[str]) -> str | None:
    return next((arg for arg in argv if not arg.startswith("-")), None)


def _command_names(parser: argparse.ArgumentParser) -> set[str]:
    return {
        name
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for name in action.choices
    }


def _run(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    command = _requested_command(argv)
    if command is not None and command not in _command_names(parser):
        hint = missing_command_hint(command)
        if hint is not None:
            raise CommandError(hint)
    args = parser.parse_args(argv)
    status = int(args.func(args) or 0)
    sys.stdout.flush()  # a closed pipe shows here, inside the handlers below
    return status


def _known_secrets() -> list[str]:
    try:
        return Settings.from_env().secrets
    except StorageError:  # the environment itself is what is wrong
        return [os.environ[n] for n in ("POSTGRES_PASSWORD",) if os.environ.get(n)]


def _fail(message: str) -> int:
    print(f"storage-core: error: {mask_text(message, _known_secrets())}", file=sys.stderr)
    return EXIT_FAILED


def _silence_stdout() -> None:
    """After the reader went away: point stdout at /dev/null so the interpreter's last
    flush does not fail again with a second BrokenPipeError."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass  # stdout is not a file descriptor (an in-process caller's capture)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every failure becomes one masked line on stderr (see the module
    docstring for the exit status)."""
    try:
        return _run(argv)
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_PIPE_CLOSED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except (StorageError, CommandError) as exc:
        return _fail(str(exc))
    except ModuleNotFoundError as exc:
        return _fail(missing_module_hint(exc.name) or f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # a bug: still one line, never a traceback with secrets
        return _fail(f"unexpected {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    sys.exit(main())
