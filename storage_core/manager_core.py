"""What `StorageManager` and `AsyncStorageManager` share: one implementation of
argument handling, validation and error masking for both faces.

Each public call is turned into a `Call` here: the backend method to run and its
validated arguments, or the answer when none is needed (`limit=0`, a filter matching
nothing). The sync manager runs it on a `StorageBackend`, the async one awaits it on an
`AsyncStorageBackend`; the record builders turn the named API's arguments into records.
"""

from __future__ import annotations

import builtins
import contextvars
import dataclasses
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any

from storage_core.codec import utcnow
from storage_core.config import Settings, mask_text, mask_url
from storage_core.errors import (
    ConflictError,
    StorageError,
    UnsupportedOperationError,
    ValidationError,
)
from storage_core.interface import (
    ArchivedEntry,
    ArchiveStore,
    AsyncArchiveStore,
    AsyncStorageBackend,
    Capability,
    StorageBackend,
)
from storage_core.kinds import POLICY, SPEC_BY_RECORD, KindSpec, R, spec_for
from storage_core.ordering import parse_order_by
from storage_core.plugins import get_registry
from storage_core.records import (
    LogEntry,
    Policy,
    Registry,
    Resource,
    Task,
    TestLogEntry,
    TestResource,
    WhoisPresentation,
    WitnessFile,
)
from storage_core.validation import (
    check_version,
    normalize_filters,
    validate_batch_size,
    validate_changes,
    validate_key,
    validate_paging,
    validate_record,
    validate_records,
)

#: The managers' logger keeps its name: operators filter on "storage_core.manager".
log = logging.getLogger("storage_core.manager")
DEFAULT_STREAM_BATCH = 500


@dataclass(frozen=True, slots=True)
class Call:
    """A validated backend call: `method(*args)` on the backend, or, when `asks` is
    False, `answer` without asking the backend at all."""

    method: str
    args: tuple[Any, ...] = ()
    asks: bool = True
    answer: Any = None


def answered(value: Any) -> Call:
    return Call("", asks=False, answer=value)


class TransactionState:
    """One `transaction()` block of a manager: the first failure of a call inside it,
    which dooms it to roll back even if the caller caught the error."""

    __slots__ = ("failure",)

    def __init__(self) -> None:
        self.failure: BaseException | None = None


#: Errors that leave a transaction usable: refused before any statement ran
#: (ValidationError), or found by a statement that succeeded (ConflictError). Any other
#: failure may have left the database transaction half done or aborted (PostgreSQL
#: refuses every later statement of a transaction whose statement failed).
HARMLESS_IN_TRANSACTION = (ValidationError, ConflictError)


def build_backend(settings: Settings) -> tuple[Settings, StorageBackend]:
    """The backend the settings select, built by the plugin registry, and the settings
    resolved against its declared options."""
    registry = get_registry(settings.plugins_allow, settings.plugins_block)
    settings = registry.resolve(settings)  # the backend's declared options, parsed
    return settings, registry.build(settings.backend, settings)


class ManagerCore:
    """State and checks both managers share; subclasses hold `backend` (their face)."""

    settings: Settings
    _max_payload: int
    _secrets: tuple[str, ...]

    def _adopt(self, settings: Settings, backend: StorageBackend | AsyncStorageBackend) -> None:
        self.settings = settings
        self._max_payload = settings.max_payload_bytes
        #: What every error this manager raises is masked with (see `_failure`).
        self._secrets = tuple(dict.fromkeys(s for s in (*settings.secrets, *backend.secrets) if s))
        #: The caller's open transaction() block of this manager (per thread / task).
        self._in_transaction: contextvars.ContextVar[TransactionState | None] = (
            contextvars.ContextVar("webvh_storage_manager_transaction", default=None)
        )

    def _face(self) -> StorageBackend | AsyncStorageBackend:
        raise NotImplementedError  # pragma: no cover  (each manager returns its backend)

    @property
    def backend_name(self) -> str:
        return self._face().name

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset(self._face().capabilities)

    @property
    def masked_url(self) -> str | None:
        return mask_url(self._face().describe().get("url"))

    def _describe(self) -> dict[str, Any]:
        facts = dict(self._face().describe())
        facts["url"] = mask_url(facts.get("url"))
        facts["backend"] = self.backend_name
        return facts

    def _log_opened(self) -> None:
        if log.isEnabledFor(logging.INFO):  # describe() may ask the database
            log.info("opened storage backend=%s url=%s", self.backend_name, self.masked_url)

    def _failure(self, exc: Exception, action: str = "backend") -> StorageError:
        """The StorageError that replaces `exc`, something a backend leaked that is not
        one: its text with every secret of the settings and the backend masked."""
        text = mask_text(f"{type(exc).__name__}: {exc}", self._secrets)
        return StorageError(f"{action} {self.backend_name!r} failed: {text}")

    # --- transactions -----------------------------------------------------------------
    def _begin_transaction(self) -> TransactionState | None:
        """The state of a new block, or None inside a block of this manager already: a
        nested transaction() joins the outer one (one commit, at the outer end; a
        failure anywhere rolls back all of it). Refused without the capability."""
        if self._in_transaction.get() is not None:
            return None
        if Capability.TRANSACTIONS not in self.capabilities:
            raise UnsupportedOperationError(
                f"backend {self.backend_name!r} cannot make several calls atomic (no "
                f"{Capability.TRANSACTIONS!r} capability); use one call (bulk_upsert "
                "is atomic) or a backend that has it"
            )
        return TransactionState()

    def _note_failure(self, exc: BaseException) -> None:
        """A call failed: inside a block, that dooms the block (see HARMLESS_IN_TRANSACTION)."""
        state = self._in_transaction.get()
        harmless = isinstance(exc, HARMLESS_IN_TRANSACTION)
        if state is not None and state.failure is None and not harmless:
            state.failure = exc

    def _doomed(self, state: TransactionState) -> StorageError | None:
        """The error that ends a block whose body finished though a call in it failed."""
        failure = state.failure
        if failure is None:
            return None
        text = mask_text(f"{type(failure).__name__}: {failure}", self._secrets)
        return StorageError(f"transaction rolled back: a call inside it failed ({text})")

    # --- the generic API as validated calls -------------------------------------------
    def _create_call(self, record: Any) -> Call:
        spec = spec_of_record(record)
        now = utcnow()
        record = validate_record(
            spec, fresh_record(spec, record, now), max_payload=self._max_payload, now=now
        )
        return Call("create", (spec, record))

    def _get_args(self, kind: str | KindSpec[Any], key: str) -> tuple[KindSpec[Any], str]:
        """`get`'s arguments, validated; without a Call, on the hottest path of all."""
        spec = spec_for(kind)
        return spec, validate_key(spec, key)

    def _list_call(
        self,
        kind: str | KindSpec[Any],
        filters: Mapping[str, Any] | None,
        limit: int | None,
        offset: int,
        order_by: Any = None,
    ) -> Call:
        spec = spec_for(kind)
        normalized = normalize_filters(spec, filters)
        limit, offset = validate_paging(limit, offset)
        order = parse_order_by(spec, order_by)
        if limit == 0 or matches_nothing(normalized):
            return answered([])
        if order is None:  # the default order: the backend's call exactly as before
            return Call("list", (spec, normalized, limit, offset))
        return Call("list", (spec, normalized, limit, offset, order))

    def _count_call(self, kind: str | KindSpec[Any], filters: Mapping[str, Any] | None) -> Call:
        spec = spec_for(kind)
        normalized = normalize_filters(spec, filters)
        return answered(0) if matches_nothing(normalized) else Call("count", (spec, normalized))

    def _update_call(
        self,
        kind: str | KindSpec[Any],
        key: str,
        expected_version: int | None,
        fields: dict[str, Any],
    ) -> Call:
        spec = spec_for(kind)
        validate_key(spec, key)
        if expected_version is not None:
            check_version("expected_version", expected_version)
        changes = validate_changes(spec, fields, max_payload=self._max_payload)
        return Call("update", (spec, key, changes, utcnow(), expected_version))

    def _upsert_call(self, record: Any, expected_version: int | None) -> Call:
        spec = spec_of_record(record)
        if expected_version is not None:
            check_version("expected_version", expected_version, minimum=0)
        now = utcnow()
        record = validate_record(
            spec, fresh_record(spec, record, now), max_payload=self._max_payload, now=now
        )
        return Call("upsert", (spec, record, expected_version))

    def _delete_call(self, kind: str | KindSpec[Any], key: str) -> Call:
        spec = spec_for(kind)
        return Call("delete", (spec, validate_key(spec, key)))

    def _stream_call(
        self,
        kind: str | KindSpec[Any],
        filters: Mapping[str, Any] | None,
        batch_size: int,
        order_by: Any = None,
    ) -> Call:
        """A `stream` call, or the answer None: nothing can match."""
        spec = spec_for(kind)
        normalized = normalize_filters(spec, filters)
        batch_size = validate_batch_size(batch_size)
        order = parse_order_by(spec, order_by)
        if matches_nothing(normalized):
            return answered(None)
        if order is None:
            return Call("stream", (spec, normalized, batch_size))
        return Call("stream", (spec, normalized, batch_size, order))

    def _bulk_call(self, kind: str | KindSpec[Any], records: Iterable[Any]) -> Call:
        """All records validated first, so a bad one leaves the store unchanged."""
        spec = spec_for(kind)
        now = utcnow()
        checked = validate_records(spec, records, max_payload=self._max_payload, now=now)
        reject_repeated_keys(spec, checked)
        return Call("bulk_upsert", (spec, checked)) if checked else answered(0)

    # --- archive (faces with Capability.ARCHIVE) -------------------------------------
    def _check_archive(self) -> None:
        face = self._face()
        if Capability.ARCHIVE not in face.capabilities or not isinstance(
            face, ArchiveStore | AsyncArchiveStore
        ):
            raise UnsupportedOperationError(
                f"backend {self.backend_name!r} cannot keep archived entries "
                f"(no {Capability.ARCHIVE!r} capability)"
            )

    def _archive_upsert_call(self, entries: Iterable[ArchivedEntry]) -> Call:
        checked = builtins.list(entries)
        if not checked:
            return answered(0)
        self._check_archive()
        return Call("archive_upsert", (checked,))

    def _archive_get_call(self, category: str, names: Iterable[str]) -> Call:
        wanted = builtins.list(names)
        if not wanted:
            return answered({})
        self._check_archive()
        return Call("archive_get", (category, wanted))

    def _archive_stream_call(self, category: str | None, batch_size: int) -> Call:
        batch_size = validate_batch_size(batch_size)
        self._check_archive()
        return Call("archive_stream", (category, batch_size))

    def _archive_count_call(self, category: str | None) -> Call:
        self._check_archive()
        return Call("archive_count", (category,))


# --- the named API's records ----------------------------------------------------------
def log_entry_record(
    scid: str,
    did: str,
    domain: str,
    namespace: str,
    identifier: str,
    logs: builtins.list[Any],
    deactivated: bool,
) -> LogEntry:
    return LogEntry(
        scid=scid,
        did=did,
        domain=domain,
        namespace=namespace,
        identifier=identifier,
        logs=logs,
        deactivated=deactivated,
    )


def resource_record(
    resource_id: str,
    scid: str,
    did: str,
    resource_type: str,
    resource_name: str,
    content: Any,
    metadata: Any,
    proof: Any,
) -> Resource:
    return Resource(
        resource_id=resource_id,
        scid=scid,
        did=did,
        resource_type=resource_type,
        resource_name=resource_name,
        content=content,
        metadata=metadata,
        proof=proof,
    )


def task_record(
    task_id: str,
    task_type: str,
    status: str,
    progress: dict[str, Any] | None,
    message: str | None,
) -> Task:
    return Task(
        task_id=task_id,
        task_type=task_type,
        status=status,
        progress={} if progress is None else progress,
        message=message,
    )


def policy_record(policy_id: str, data: Mapping[str, Any]) -> Policy:
    """The policy's known fields are lifted out of `data`; all of it is `policy_data`."""
    if not isinstance(data, Mapping):
        raise ValidationError("data", f"must be a dict, got {type(data).__name__}")
    known = {f: data[f] for f in POLICY.field_types if f in data and f != "policy_data"}
    known.pop("policy_id", None)
    return Policy(policy_id=policy_id, policy_data=dict(data), **known)


def registry_record(
    registry_id: str,
    registry_type: str,
    registry_data: dict[str, Any],
    meta: dict[str, Any] | None,
) -> Registry:
    return Registry(
        registry_id=registry_id,
        registry_type=registry_type,
        registry_data=registry_data,
        meta={} if meta is None else meta,
    )


def witness_file_record(scid: str, witness_proofs: builtins.list[Any]) -> WitnessFile:
    return WitnessFile(scid=scid, witness_proofs=witness_proofs)


def whois_record(scid: str, presentation: dict[str, Any]) -> WhoisPresentation:
    return WhoisPresentation(scid=scid, presentation=presentation)


def loadtest_log_entry_record(
    scid: str, logs: builtins.list[Any], tags: dict[str, str] | None
) -> TestLogEntry:
    return TestLogEntry(scid=scid, logs=logs, tags={} if tags is None else tags)


def loadtest_resource_record(
    resource_id: str, scid: str, content: Any, tags: dict[str, str] | None
) -> TestResource:
    return TestResource(
        resource_id=resource_id, scid=scid, content=content, tags={} if tags is None else tags
    )


# --- helpers ---------------------------------------------------------------------------
def spec_of_record(record: R) -> KindSpec[R]:
    spec = SPEC_BY_RECORD.get(type(record))
    if spec is None:
        names = ", ".join(s.record.__name__ for s in SPEC_BY_RECORD.values())
        raise ValidationError("record", f"must be one of {names}, got {type(record).__name__}")
    return spec


def fresh_record(spec: KindSpec[R], record: R, now: datetime) -> R:
    """A record as a single write stores it: version 1 and, for kinds with timestamps,
    created/updated now (callers never set those; the backend keeps created_at on replace)."""
    fresh: R
    if spec.timestamps:
        stamped: Any = record  # a kind with timestamps: its record has created_at/updated_at
        fresh = dataclasses.replace(stamped, created_at=now, updated_at=now, record_version=1)
    else:
        fresh = (
            record if record.record_version == 1 else dataclasses.replace(record, record_version=1)
        )
    return fresh


def matches_nothing(filters: Mapping[str, tuple[Any, ...]]) -> bool:
    """Some field allows no value (an empty list): no record can match."""
    return () in filters.values()


def reject_repeated_keys(spec: KindSpec[R], records: builtins.list[R]) -> None:
    """Name the first key seen twice; the set of all keys, built in C, says if there is one."""
    keys = list(map(attrgetter(spec.key), records))
    if len(set(keys)) == len(keys):
        return
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            raise ValidationError(spec.key, f"{key!r} appears twice in one bulk upsert")
        seen.add(key)


_SETTINGS_FIELDS = frozenset(f.name for f in dataclasses.fields(Settings)) - {
    "backend",
    "url",
    "options",
    "env",
}


def settings_for(backend: str | None, url: str | None, options: dict[str, Any]) -> Settings:
    """The settings `open_storage` / `open_async_storage` build: Settings fields
    (max_payload_bytes, ...) passed as options set those fields; every other keyword
    is a backend option; unset arguments come from the environment."""
    overrides = {name: options.pop(name) for name in list(options) if name in _SETTINGS_FIELDS}
    return Settings.from_env(backend=backend, url=url, options=options or None, **overrides)
