"""One migration run: open both stores, survey, copy, verify, and build the report.

Kept apart from the CLI so tests and the benchmark drive exactly what operators run.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from typing import Any

from storage_core import kinds as K
from storage_core.config import mask_text, mask_url
from storage_core.errors import StorageError
from storage_core.manager import StorageManager, open_storage
from webvh_storage_migrate.askar_reader import ScanReader
from webvh_storage_migrate.engine import Engine, StrictStop
from webvh_storage_migrate.jobs import AskarSource
from webvh_storage_migrate.layout_detect import detect_layout
from webvh_storage_migrate.lookup import RunIndex
from webvh_storage_migrate.progress import Progress, summary_table
from webvh_storage_migrate.report import RejectsFile, RunReport
from webvh_storage_migrate.reverse import SqlSource
from webvh_storage_migrate.source import AskarStore
from webvh_storage_migrate.targets import AskarArchive, RecordTarget, SqlArchive
from webvh_storage_migrate.verify import Verifier

FIRST_LEGACY = ("logEntries",)  # what a legacy store's migration reads first, and longest


class Runner:
    def __init__(self, args: argparse.Namespace, secrets: list[str]) -> None:
        self.args = args
        self.secrets = secrets
        self.stack = ExitStack()
        self.progress = Progress(open_devnull(self.stack) if args.quiet else sys.stderr)
        self.rejects = RejectsFile(args.rejects)
        self.stack.callback(self.rejects.close)
        self.sql_target: StorageManager | None = None  # forward runs: checkpointed at the end

    def close(self) -> None:
        self.stack.close()

    def run(self) -> RunReport:
        a = self.args
        source, target = (a.to, a.askar) if a.reverse else (a.askar, a.to)
        report = RunReport(
            direction="sql->askar" if a.reverse else "askar->sql",
            source=mask_url(source) or "",
            target=mask_url(target) or "",
            dry_run=a.dry_run or a.verify_only,
        )
        try:
            self._run(report)
        except StrictStop as exc:
            report.error = f"--strict: stopped at {exc}"
        except (StorageError, OSError, RuntimeError, ValueError) as exc:
            report.error = self._masked(exc)
        except Exception as exc:  # aries_askar errors and anything unforeseen, masked
            report.error = self._masked(exc)
        return report

    def _masked(self, exc: BaseException) -> str:
        return mask_text(f"{type(exc).__name__}: {exc}", self.secrets)

    # --- wiring -----------------------------------------------------------------------
    def _run(self, report: RunReport) -> None:
        a = self.args
        writes = not (a.dry_run or a.verify_only)
        if a.reverse:
            source, records, archive = self._open_reverse(writes)
        else:
            source, records, archive = self._open_forward(writes)
        counts = source.survey()
        if not a.reverse:
            report.layout = detect_layout(counts)
            report.discovered_categories = source.discovered
        plans = source.plans(counts, a.categories)
        if not a.verify_only:
            engine = Engine(
                records,
                archive,
                self.rejects,
                self.progress,
                dry_run=a.dry_run,
                strict=a.strict,
            )
            self.progress.label = "dry-run" if a.dry_run else "migrate"
            engine.run(source.jobs(plans), report.categories)
            if self.sql_target is not None and not a.dry_run:
                self.sql_target.flush()
        if (a.verify or a.verify_only) and not a.dry_run:
            if records is None:
                raise StorageError("the target store is not provisioned: nothing to verify")
            if isinstance(source, AskarSource):
                source.index.reset_seen()
            self.progress.label = "verify"
            report.verify = Verifier(records, archive, self.progress).run(source.jobs(plans))

    def _open_forward(self, writes: bool) -> tuple[Any, RecordTarget | None, Any]:
        a = self.args
        # started first: the child's start-up overlaps opening both stores
        reader = ScanReader(
            a.askar,
            key=a.askar_key,
            key_method=a.askar_key_method,
            profile=a.profile,
            chunk_size=a.batch_size,
            warm=[c for c in FIRST_LEGACY if not a.categories or c in a.categories],
        )
        self.stack.callback(reader.close)
        store = AskarStore(
            a.askar, key=a.askar_key, key_method=a.askar_key_method, profile=a.profile
        )
        self.stack.callback(store.close)
        # Commits need not reach the disk one by one: a batch lost to a power cut is
        # copied again by the next run; checkpoint() makes everything durable at the end.
        # A 40 MB WAL between copies into the database file syncs ten times less often.
        sql = open_storage(
            "sqlalchemy", a.to, sqlite_synchronous="NORMAL", sqlite_wal_autocheckpoint=10_000
        )
        self.stack.callback(sql.close)
        if writes:
            sql.init_db()
        self.sql_target = sql
        records, archive = self._sql_targets(sql)
        index = RunIndex()
        self.stack.callback(index.close)
        return AskarSource(store, reader, index), records, archive

    def _sql_targets(self, sql: Any) -> tuple[RecordTarget | None, SqlArchive | None]:
        """The SQL store as a target; (None, None) when a dry run finds no schema yet."""
        try:
            sql.count_records(K.LOG_ENTRY)
            archive = SqlArchive(sql)
            archive.count(None)
        except StorageError:
            if self.args.dry_run:
                return None, None
            raise
        return RecordTarget(sql), archive

    def _open_reverse(self, writes: bool) -> tuple[Any, RecordTarget | None, Any]:
        a = self.args
        sql = open_storage("sqlalchemy", a.to)
        self.stack.callback(sql.close)
        try:
            sql_archive: SqlArchive | None = SqlArchive(sql)
        except StorageError:
            sql_archive = None
        options = {"key": a.askar_key, "key_method": a.askar_key_method, "profile": a.profile}
        askar = open_storage("askar", a.askar, **{k: v for k, v in options.items() if v})
        self.stack.callback(askar.close)
        if writes:
            askar.init_db()
        raw = AskarStore(a.askar, key=a.askar_key, key_method=a.askar_key_method, profile=a.profile)
        self.stack.callback(raw.close)
        source = SqlSource(sql, sql_archive, a.batch_size)
        return source, RecordTarget(askar), AskarArchive(raw)

    def print_summary(self, report: RunReport) -> None:
        out = sys.stdout
        print(f"{report.direction}: {report.source} -> {report.target}", file=out)
        if report.layout:
            print(f"source layout: {report.layout}", file=out)
        if report.categories:
            print(summary_table(report), file=out)
        if report.rejected:
            where = f" (see {self.args.rejects})" if self.args.rejects else ""
            print(f"{report.rejected} entries rejected{where}", file=out)
        if report.verify is not None:
            verdict = (
                "OK"
                if report.verify["ok"]
                else (f"FAILED: {report.verify['mismatch_count']} mismatches")
            )
            print(f"verify: {verdict}", file=out)
            for m in report.verify["mismatches"][:20]:
                print(f"  {m['category']}/{m['name']}: {m['problem']}", file=out)


def open_devnull(stack: ExitStack) -> Any:
    import os

    return stack.enter_context(open(os.devnull, "w"))
