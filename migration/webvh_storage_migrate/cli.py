"""`migrate-askar`: copy a did:webvh server's Askar store into the SQL store (or back).

Usable as `python tools/migrate_askar.py ...` and `storage-core migrate-askar ...`.
Exit status: 0 all copied (and verified); 1 some entries rejected, a verify mismatch, or
--strict stopped; 2 the run could not proceed (store unreachable, bad key, unsafe
target, unwritable --rejects/--report, ...), with one masked line on stderr; 130
interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from storage_core.config import DEFAULT_BACKEND
from webvh_storage_askar.config import KEY_METHODS, AskarConfig
from webvh_storage_migrate.report import one_line, print_summary
from webvh_storage_migrate.runner import Runner, RunOptions

EXIT_OK, EXIT_INCOMPLETE, EXIT_FAILED = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C
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
        "--to",
        metavar="URL",
        help="the target store's URL for --to-backend (required, never guessed: "
        "e.g. sqlite:///new.db, postgresql+psycopg2://..., sqlite://askar.db)",
    )
    parser.add_argument(
        "--to-backend",
        default=DEFAULT_BACKEND,
        metavar="NAME",
        help=f"the registered backend to write into (default: {DEFAULT_BACKEND}); "
        "it must keep an archive",
    )
    parser.add_argument(
        "--overwrite-newer",
        action="store_true",
        help="copy legacy records over target records written after the migration "
        "(default: keep them, counted as kept-newer)",
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
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress or table: errors and a one-line summary only",
    )


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


def unwritable(flag: str, path: str | None) -> str | None:
    """Why `path` cannot be written (found before the run starts), or None. Tried by
    opening it for appending; a file created by the try is removed again."""
    if path is None:
        return None
    target = Path(path)
    existed = target.exists()
    try:
        with target.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        return f"{flag} {path}: cannot write there ({exc.strerror or type(exc).__name__})"
    if not existed:
        target.unlink(missing_ok=True)
    return None


def options_from(args: argparse.Namespace) -> RunOptions | str:
    """The run the flags ask for, with defaults from the environment; or what is wrong."""
    if args.batch_size < 1:
        return "--batch-size must be >= 1"
    if args.to is None:
        return "--to is required: the target store's URL (it is never guessed)"
    if not args.to.strip():
        return "--to is empty (an unset variable?); name the target store's URL"
    for flag, path in (("--rejects", args.rejects), ("--report", args.report)):
        problem = unwritable(flag, path)
        if problem:
            return problem
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
        target_url=args.to,
        target_backend=args.to_backend,
        overwrite_newer=args.overwrite_newer,
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
    started = time.monotonic()
    try:
        runner = Runner(options)
        try:
            report = runner.run()
        finally:
            runner.close()
    except KeyboardInterrupt:  # before the run started, or while closing it
        print(f"{PROG}: interrupted; nothing more was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    report.seconds = time.monotonic() - started
    try:
        report.write(args.report)
    except OSError as exc:
        print(f"{PROG}: cannot write report: {exc}", file=sys.stderr)
    if args.quiet:
        print(one_line(report))
    else:
        print_summary(report, options.rejects)
    if report.interrupted:
        print(
            f"{PROG}: interrupted; what was written is kept, re-run the same command "
            "to complete the migration",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if report.error:
        print(f"{PROG}: error: {report.error}", file=sys.stderr)
        if not report.stopped_by_strict:
            return EXIT_FAILED
    if report.rejected or report.verify_failed or report.error:
        return EXIT_INCOMPLETE
    return EXIT_OK
