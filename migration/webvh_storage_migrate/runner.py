"""One migration run: open both stores, survey, copy, verify, and build the report.

Kept apart from the CLI so tests and the benchmark drive exactly what operators run.
Forward: an Askar store (askar_reader) -> any registered backend, through the
StorageManager (records) and its archive capability (categories without a kind).
Reverse: a store of any backend -> a raw Askar store in this project's layout.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Protocol

from storage_core.config import DEFAULT_BACKEND, Settings, mask_text, mask_url
from storage_core.errors import StorageError
from storage_core.install_hints import missing_module_hint
from storage_core.kinds import LOG_ENTRY
from storage_core.manager import StorageManager
from webvh_storage_askar.config import AskarConfig
from webvh_storage_migrate.askar_reader import AskarStore, ScanReader
from webvh_storage_migrate.convert import AskarSource, Job, RunIndex
from webvh_storage_migrate.engine import Archive, Engine, RecordTarget, StrictStop
from webvh_storage_migrate.legacy import CategoryPlan, detect_layout
from webvh_storage_migrate.report import Progress, RejectsFile, RunReport
from webvh_storage_migrate.reverse import StoreSource
from webvh_storage_migrate.safety import check_stores, missing_file
from webvh_storage_migrate.verify import Verifier

FIRST_LEGACY = ("logEntries",)  # what a legacy store's migration reads first, and longest
#: The backend whose SQLite tuning options a bulk load sets (see `bulk_load_options`).
SQL_BACKEND = "sqlalchemy"


@dataclass(frozen=True)
class RunOptions:
    """What one run does; the CLI builds it from its flags."""

    askar: AskarConfig
    target_url: str | None  # None: the target backend's own default
    target_backend: str = DEFAULT_BACKEND
    categories: tuple[str, ...] | None = None
    batch_size: int = 500
    dry_run: bool = False
    verify: bool = False
    verify_only: bool = False
    strict: bool = False
    reverse: bool = False
    quiet: bool = False
    rejects: str | None = None
    overwrite_newer: bool = False

    @property
    def writes(self) -> bool:
        return not (self.dry_run or self.verify_only)


class Source(Protocol):
    """What a run reads: the Askar store (forward) or a store of any backend (reverse)."""

    def survey(self) -> dict[str, int]: ...
    def plans(self, counts: dict[str, int], only: tuple[str, ...] | None) -> list[CategoryPlan]: ...
    def jobs(self, plans: list[CategoryPlan]) -> list[Job]: ...
    def rewind(self) -> None: ...


def bulk_load_options(backend: str, url: str | None) -> dict[str, Any]:
    """Options that make a bulk load into `backend` faster without risking a wrong
    result: for the SQL backend on SQLite, commits that need not reach the disk one by
    one (a batch lost to a power cut is copied again by the next run; `flush()` makes
    everything durable at the end) and a 40 MB WAL between copies into the database file,
    which syncs ten times less often. Nothing for other backends or databases."""
    scheme = (url or "").partition(":")[0].partition("+")[0].lower()
    if backend == SQL_BACKEND and scheme == "sqlite":
        return {"sqlite_synchronous": "NORMAL", "sqlite_wal_autocheckpoint": 10_000}
    return {}


class Runner:
    def __init__(self, options: RunOptions) -> None:
        self.options = options
        #: Strings never to print: grows with every store opened (`_open_store`).
        self.secrets: list[str | None] = list(options.askar.secrets)
        self.stack = ExitStack()
        self.progress = Progress(None if options.quiet else sys.stderr)
        self.rejects = RejectsFile(options.rejects)
        self.stack.callback(self.rejects.close)

    def close(self) -> None:
        self.stack.close()

    def run(self) -> RunReport:
        o = self.options
        target = mask_url(o.target_url) or o.target_backend
        source = o.askar.masked_uri
        report = RunReport(
            direction=f"{o.target_backend}->askar" if o.reverse else f"askar->{o.target_backend}",
            source=target if o.reverse else source,
            target=source if o.reverse else target,
            dry_run=not o.writes,
        )
        try:
            self._run(report)
        except KeyboardInterrupt:
            report.interrupted = True
        except StrictStop as exc:
            report.error = self._masked(f"--strict: stopped at {exc}")
            report.stopped_by_strict = True
        except ModuleNotFoundError as exc:  # a driver not installed: name its extra
            hint = missing_module_hint(exc.name)
            report.error = hint or self._masked(f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # aries_askar errors and anything unforeseen, masked
            report.error = self._masked(f"{type(exc).__name__}: {exc}")
        return report

    def _masked(self, text: str) -> str:
        return mask_text(text, self.secrets)

    # --- wiring -----------------------------------------------------------------------
    def _run(self, report: RunReport) -> None:
        o = self.options
        check_stores(o.askar.uri, o.target_backend, o.target_url or "")
        source: Source
        records: RecordTarget | None
        archive: Archive | None
        if o.reverse:
            source, records, archive = self._open_reverse()
        else:
            source, records, archive = self._open_forward()
        counts = source.survey()
        if isinstance(source, AskarSource):
            report.layout = detect_layout(counts)
            report.discovered_categories = source.discovered
        plans = source.plans(counts, o.categories)
        late_rejects = {}
        if not o.verify_only:
            engine = Engine(
                records,
                archive,
                self.rejects,
                self.progress,
                dry_run=o.dry_run,
                strict=o.strict,
                overwrite_newer=o.overwrite_newer,
            )
            self.progress.label = "dry-run" if o.dry_run else "migrate"
            engine.run(source.jobs(plans), report.categories)
            late_rejects = engine.late_rejects
            if records is not None and not o.dry_run:
                records.manager.flush()
        if (o.verify or o.verify_only) and not o.dry_run:
            if records is None:
                raise StorageError("the target store is not provisioned: nothing to verify")
            source.rewind()
            self.progress.label = "verify"
            verifier = Verifier(
                records,
                archive,
                self.progress,
                late_rejects=late_rejects,
                overwrite_newer=o.overwrite_newer,
            )
            report.verify = verifier.run(source.jobs(plans))

    def _open_store(self, backend: str, url: str | None, **options: Any) -> StorageManager:
        """A StorageManager on `backend`, its secrets added to the masking list first."""
        settings = Settings.from_env(backend=backend, url=url, options=options or None)
        self.secrets += settings.secrets
        manager = StorageManager(settings)
        self.stack.callback(manager.close)
        self.secrets += manager.backend.secrets
        return manager

    def _open_forward(self) -> tuple[Source, RecordTarget | None, Archive | None]:
        o = self.options
        # started first: the child's start-up overlaps opening both stores
        reader = ScanReader(
            o.askar,
            chunk_size=o.batch_size,
            warm=[c for c in FIRST_LEGACY if not o.categories or c in o.categories],
        )
        self.stack.callback(reader.close)
        store = AskarStore(o.askar)
        self.stack.callback(store.close)
        index = RunIndex()
        self.stack.callback(index.close)
        source = AskarSource(store, reader, index)
        absent = missing_file(o.target_backend, o.target_url)
        if absent is not None and not o.writes:
            if o.verify_only:
                raise StorageError(f"the target {absent} does not exist: nothing to verify")
            return source, None, None  # a dry run creates nothing: every entry is new
        options = bulk_load_options(o.target_backend, o.target_url)
        target = self._open_store(o.target_backend, o.target_url, **options)
        if o.writes:
            target.init_db()
        try:
            target.count_records(LOG_ENTRY)  # raises when the schema is missing
            target.archive_count()  # raises when the backend keeps no archive
        except StorageError:
            if o.dry_run:
                return source, None, None  # nothing to compare with: every entry is new
            raise
        return source, RecordTarget(target), target

    def _open_reverse(self) -> tuple[Source, RecordTarget, Archive]:
        o = self.options
        stored = self._open_store(o.target_backend, o.target_url)
        cfg = o.askar
        askar_options = {"key": cfg.key, "key_method": cfg.key_method, "profile": cfg.profile}
        askar = self._open_store("askar", cfg.uri, **{k: v for k, v in askar_options.items() if v})
        if o.writes:
            askar.init_db()
        raw = AskarStore(cfg)  # archived entries go back under their own category
        self.stack.callback(raw.close)
        return StoreSource(stored, o.batch_size), RecordTarget(askar), raw
