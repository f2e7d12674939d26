"""`migrate-askar`: copy a did:webvh server's Askar store into the SQL store (or back).

Usable as `python tools/migrate_askar.py ...` and `storage-core migrate-askar ...`.
Exit status: 0 all copied (and verified); 1 some entries rejected, a verify mismatch, or
--strict stopped; 2 the run could not proceed (store unreachable, bad key, ...), with
one masked line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from storage_core.config import database_url_from_env
from webvh_storage_askar.config import KEY_METHODS, AskarConfig
from webvh_storage_migrate.report import print_summary
from webvh_storage_migrate.runner import Runner, RunOptions

EXIT_OK, EXIT_INCOMPLETE, EXIT_FAILED = 0, 1, 2
PROG = "migrate-askar"


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
    parser = argparse.ArgumentParser(prog=PROG, description=(__doc__ or "").splitlines()[0])
    add_arguments(parser)
    return parser


def add_subcommand(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `migrate-askar` on the `storage-core` CLI."""
    parser = subparsers.add_parser(
        PROG, help="copy a legacy did:webvh Askar store into the SQL store"
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return EXIT_FAILED


def options_from(args: argparse.Namespace) -> RunOptions | str:
    """The run the flags ask for, with defaults from the environment; or what is wrong."""
    if args.batch_size < 1:
        return "--batch-size must be >= 1"
    method = args.askar_key_method
    key = args.askar_key or os.environ.get("ASKAR_KEY") or None
    if method != "none" and not key:
        return f"--askar-key (or ASKAR_KEY) is required for key method {method}"
    askar = AskarConfig(
        uri=args.askar,
        key_method=method,
        key=key if method != "none" else None,  # a store without a key ignores one
        profile=args.profile,
    )
    return RunOptions(
        askar=askar,
        target_url=args.to or database_url_from_env(os.environ),
        categories=tuple(args.categories) if args.categories else None,
        batch_size=args.batch_size,
        dry_run=args.dry_run,
        verify=args.verify,
        verify_only=args.verify_only,
        strict=args.strict,
        reverse=args.reverse,
        quiet=args.quiet,
        rejects=args.rejects,
    )


def run(args: argparse.Namespace) -> int:
    """Run, write the report, print the summary; always returns an exit status."""
    options = options_from(args)
    if isinstance(options, str):
        return _fail(options)
    runner = Runner(options)
    started = time.monotonic()
    try:
        report = runner.run()
    finally:
        runner.close()
    report.seconds = time.monotonic() - started
    try:
        report.write(args.report)
    except OSError as exc:
        print(f"{PROG}: cannot write report: {exc}", file=sys.stderr)
    if not args.quiet or report.error:
        print_summary(report, options.rejects)
    if report.error:
        print(f"{PROG}: error: {report.error}", file=sys.stderr)
        if not report.stopped_by_strict:
            return EXIT_FAILED
    if report.rejected or report.verify_failed or report.error:
        return EXIT_INCOMPLETE
    return EXIT_OK
