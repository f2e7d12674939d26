"""`storage-core db upgrade|downgrade|current|history|check|stamp|revision`: Alembic from
the installed package.

Plain `alembic` needs an alembic.ini and a script location on disk; an installed wheel has
neither. These commands use the revisions shipped inside this package
(`migrations.script_location()`) and open the database exactly as the library does
(`--url`, else DATABASE_URL / POSTGRES_*, else sqlite:///app.db, with the library's own
engine settings). Developers keep the repo's alembic.ini for `alembic revision`. With
`--app-versions DIR` every action works on an application's own history for the kinds it
declared instead (`revision --autogenerate` writes to DIR; docs/kinds.md).

Exit status: 0 done; 1 `check` found the schema differs from the models; 2 the action could
not proceed (one masked line on stderr). This module only defines the arguments, so every
`storage-core` start stays light; Alembic is imported when a `db` action runs
(`db_actions`).
"""

from __future__ import annotations

import argparse


def add_subcommand(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = subparsers.add_parser(
        "db",
        help="schema migrations with the packaged Alembic revisions",
        description=(__doc__ or "").partition("\n\n")[0],
    )
    db.add_argument("--url", help="database URL (default: DATABASE_URL / POSTGRES_* / sqlite)")
    db.add_argument(
        "--app-versions",
        metavar="DIR",
        help="act on an application's own revisions for the kinds it declared, kept in DIR "
        "(docs/kinds.md), instead of this package's",
    )
    db.add_argument(
        "--app-kinds",
        metavar="MODULE",
        action="append",
        default=[],
        help="with --app-versions: a module to import that declares the kinds (repeatable)",
    )
    db.add_argument(
        "--app-version-table",
        metavar="NAME",
        default="app_alembic_version",
        help="with --app-versions: the table of that history (default: app_alembic_version)",
    )
    actions = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    p = actions.add_parser("upgrade", help="upgrade to REV (default: head)")
    p.add_argument("revision", nargs="?", default="head", metavar="REV")
    p = actions.add_parser("downgrade", help="downgrade to REV (e.g. -1, base)")
    p.add_argument("revision", metavar="REV")
    actions.add_parser("current", help="the database's revision")
    actions.add_parser("history", help="every revision, newest first")
    actions.add_parser(
        "check", help="exit 1 if the database's schema differs from the models, else 0"
    )
    p = actions.add_parser("stamp", help="record REV as the revision without migrating")
    p.add_argument("revision", metavar="REV")
    p = actions.add_parser(
        "revision", help="with --app-versions: write a new revision of the application's kinds"
    )
    p.add_argument("-m", "--message", default="", help="what the revision does")
    p.add_argument(
        "--autogenerate",
        action="store_true",
        help="fill it with what differs between the declared kinds and the database",
    )
    db.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from webvh_storage_sqlalchemy.db_actions import run_action

    return run_action(args)
