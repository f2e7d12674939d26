"""`migrate-askar`: copy a did:webvh server's Askar store into the SQL store (or back).

Usable as `python tools/migrate_askar.py ...` and `storage-core migrate-askar ...`.
Exit status: 0 all copied (and verified); 1 some entries rejected, a verify mismatch, or
--strict stopped; 2 the run could not proceed (store unreachable, bad key, ...).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any
from urllib.parse import urlsplit

from storage_core.config import database_url_from_env, mask_text, mask_url

EXIT_OK, EXIT_INCOMPLETE, EXIT_FAILED = 0, 1, 2
KEY_METHODS = ("none", "raw", "kdf:argon2i", "kdf:argon2i:mod", "kdf:argon2i:int")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--askar",
        required=True,
        metavar="URI",
        help="Askar store URI: sqlite://PATH or postgres://USER:PASS@HOST/DB",
    )
    parser.add_argument(
        "--askar-key", metavar="KEY", help="store key (default: env ASKAR_KEY); never printed"
    )
    parser.add_argument(
        "--askar-key-method",
        choices=KEY_METHODS,
        default="none",
        help="key method of the store (default: none)",
    )
    parser.add_argument("--profile", help="Askar profile (default: the store's default)")
    parser.add_argument(
        "--to", metavar="URL", help="SQL database URL (default: DATABASE_URL / POSTGRES_* / sqlite)"
    )
    parser.add_argument(
        "--categories",
        nargs="+",
        metavar="CATEGORY",
        help="only these source categories (default: every category found)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=500,
        metavar="N",
        help="entries per read batch and write transaction (default: 500)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="read, convert and validate everything; write nothing",
    )
    parser.add_argument(
        "--verify", action="store_true", help="compare source and target after copying"
    )
    parser.add_argument(
        "--verify-only", action="store_true", help="only compare source and target; write nothing"
    )
    parser.add_argument("--report", metavar="FILE", help="write a JSON summary here")
    parser.add_argument(
        "--rejects",
        metavar="FILE",
        help="write rejected entries here (JSONL: category, name, reason)",
    )
    parser.add_argument("--strict", action="store_true", help="stop at the first bad entry")
    parser.add_argument(
        "--reverse",
        action="store_true",
        help="copy the SQL store (--to) into the Askar store (--askar), "
        "in this project's Askar layout",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="migrate-askar", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return parser


def add_subcommand(subparsers: Any) -> argparse.ArgumentParser:
    """Register `migrate-askar` on the `storage-core` CLI."""
    parser = subparsers.add_parser(
        "migrate-askar", help="copy a legacy did:webvh Askar store into the SQL store"
    )
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(args)


def _secrets(args: argparse.Namespace) -> list[str]:
    found = [args.askar_key] if args.askar_key else []
    for url in (args.askar, args.to):
        password = urlsplit(url or "").password
        if password:
            found.append(password)
    return found


def run(args: argparse.Namespace) -> int:
    """Resolve defaults, run, print the summary; always returns an exit status."""
    from webvh_storage_migrate.runner import Runner

    args.askar_key = args.askar_key or os.environ.get("ASKAR_KEY") or None
    args.to = args.to or database_url_from_env(os.environ)
    if args.batch_size < 1:
        print("migrate-askar: error: --batch-size must be >= 1", file=sys.stderr)
        return EXIT_FAILED
    if args.askar_key_method != "none" and not args.askar_key:
        print(
            "migrate-askar: error: --askar-key (or ASKAR_KEY) is required for key method "
            f"{args.askar_key_method}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    secrets = _secrets(args)
    runner = Runner(args, secrets)
    started = time.monotonic()
    with ExitStack() as stack:
        stack.callback(runner.close)
        report = runner.run()
    report.seconds = time.monotonic() - started
    try:
        report.write(args.report)
    except OSError as exc:
        print(f"migrate-askar: cannot write report: {exc}", file=sys.stderr)
    if not args.quiet or report.error:
        runner.print_summary(report)
    if report.error:
        print(f"migrate-askar: error: {mask_text(report.error, secrets)}", file=sys.stderr)
        if not report.error.startswith("--strict"):
            return EXIT_FAILED
    if report.rejected or report.verify_failed or report.error:
        return EXIT_INCOMPLETE
    return EXIT_OK


def masked(url: str | None) -> str:
    return mask_url(url) or ""
