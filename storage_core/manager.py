"""`StorageManager`: the API of the original SQL storage manager, on any backend.

Every call is validated here once (`storage_core.validation`) and then handed to the
backend chosen by config, so all backends see the same clean input and callers get the
same records and errors whichever backend runs underneath.
"""

from __future__ import annotations

import builtins
import functools
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast, overload

from storage_core.config import Settings
from storage_core.encoded import within_scope
from storage_core.errors import StorageError, UnsupportedOperationError
from storage_core.interface import ArchivedEntry, Capability, SqlSessions, StorageBackend
from storage_core.kinds import (
    KINDS,
    LOG_ENTRY,
    POLICY,
    REGISTRY,
    RESOURCE,
    TASK,
    TEST_LOG_ENTRY,
    TEST_RESOURCE,
    WHOIS,
    WITNESS_FILE,
    KindSpec,
    R,
)
from storage_core.loop import run_sync
from storage_core.manager_core import (
    DEFAULT_STREAM_BATCH,
    Call,
    ManagerCore,
    build_backend,
    loadtest_log_entry_record,
    loadtest_resource_record,
    log_entry_record,
    policy_record,
    registry_record,
    resource_record,
    settings_for,
    task_record,
    whois_record,
    witness_file_record,
)
from storage_core.ordering import OrderByArg
from storage_core.records import (
    AnyRecord,
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

if TYPE_CHECKING:  # only for type checkers: storage_core never imports SQLAlchemy itself
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")
M = TypeVar("M", bound=Callable[..., Any])  # a StorageManager method


def _guarded(method: M) -> M:
    """Turn anything a backend leaks that is not a StorageError into one, masked."""

    @functools.wraps(method)
    def wrapper(self: StorageManager, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except StorageError as exc:
            self._note_failure(exc)
            raise
        except Exception as exc:
            error = self._failure(exc)
            self._note_failure(error)
            raise error from None

    return cast(M, wrapper)


class StorageManager(ManagerCore):
    """`StorageManager()` is the process-wide instance built from the environment;
    `storage_core.open_storage(...)` (or `StorageManager(settings)`) builds an
    independent one."""

    _instance: ClassVar[StorageManager | None] = None
    _instance_lock: ClassVar[threading.Lock] = threading.Lock()

    def __new__(
        cls, settings: Settings | None = None, *, backend: StorageBackend | None = None
    ) -> StorageManager:
        if settings is None and backend is None:
            with cls._instance_lock:
                if cls._instance is None:
                    instance = super().__new__(cls)
                    instance._open(Settings.from_env(), None)
                    cls._instance = instance
                return cls._instance
        instance = super().__new__(cls)
        instance._open(settings or Settings.from_env(), backend)
        return instance

    def __init__(
        self, settings: Settings | None = None, *, backend: StorageBackend | None = None
    ) -> None:
        """Everything is set up in __new__ so the singleton is never re-initialised."""

    def _open(self, settings: Settings, backend: StorageBackend | None) -> None:
        if backend is None:
            settings, backend = build_backend(settings)
        self.backend: StorageBackend = backend
        self._adopt(settings, backend)
        self._log_opened()

    def _face(self) -> StorageBackend:
        return self.backend

    def _do(self, call: Call) -> Any:
        """Run a validated call (manager_core) on the backend."""
        return getattr(self.backend, call.method)(*call.args) if call.asks else call.answer

    @classmethod
    def configure(cls, source: Settings | StorageManager) -> StorageManager:
        """Make a store built in code the process-wide one: every later `StorageManager()`
        returns it. `source` is a `Settings` (e.g. built from a server's pydantic-settings)
        or a manager from `open_storage(...)`. Call it once at start-up; a process-wide
        instance opened before is closed and replaced."""
        instance = source if isinstance(source, StorageManager) else cls(source)
        with cls._instance_lock:
            previous, cls._instance = cls._instance, instance
        if previous is not None and previous is not instance:
            previous.close()
        return instance

    @classmethod
    def reset(cls) -> None:
        """Close and forget the process-wide instance (the next call builds a new one)."""
        with cls._instance_lock:
            if cls._instance is not None:
                cls._instance.close()
            cls._instance = None

    # --- lifecycle -------------------------------------------------------------------
    async def provision(self, recreate: bool = False) -> None:
        try:
            await self.backend.provision(recreate=recreate)
        except StorageError:
            raise
        except Exception as exc:
            raise self._failure(exc, "provisioning") from None

    def init_db(self, recreate: bool = False) -> None:
        """Synchronous provision(); safe to call while an event loop is running."""
        run_sync(self.provision(recreate=recreate))

    def close(self) -> None:
        self.backend.close()

    @_guarded
    def flush(self) -> None:
        """Make every acknowledged write durable now (see `StorageBackend.flush`)."""
        self.backend.flush()

    def health_check(self) -> bool:
        try:
            return bool(self.backend.health_check())
        except Exception:
            return False

    def info(self) -> dict[str, Any]:
        """Backend, masked URL, schema revision and rows per kind (for `storage-core info`)."""
        facts = self._describe()
        facts["rows"] = {name: self.count_records(name) for name in KINDS}
        return facts

    def primary(self) -> AbstractContextManager[None]:
        """`with storage.primary():` reads in the block see the latest writes: they go to
        the primary database, never to a read replica (backends without replicas: no-op)."""
        backend_primary = getattr(self.backend, "primary", None)
        return backend_primary() if callable(backend_primary) else nullcontext()

    def transaction(self) -> AbstractContextManager[None]:
        """`with storage.transaction():` every call of this thread on this manager inside
        the block is one atomic unit: committed when the block ends, rolled back when it
        raises (nothing of it is ever seen by anyone else); reads inside see its writes.
        A call failing inside the block (other than ValidationError or ConflictError)
        dooms it: leaving the block then rolls back and raises StorageError even if the
        error was caught. A transaction() inside one joins it. Backends without
        `Capability.TRANSACTIONS` refuse with UnsupportedOperationError."""
        return self._transaction()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        state = self._begin_transaction()
        if state is None:  # nested: part of the outer block
            yield
            return
        try:
            block = self.backend.transaction()
            block.__enter__()
        except StorageError:
            raise
        except Exception as exc:
            raise self._failure(exc, "starting a transaction on") from None
        token = self._in_transaction.set(state)
        try:
            yield
        except BaseException as exc:
            self._in_transaction.reset(token)
            self._leave(block, exc)
            raise
        self._in_transaction.reset(token)
        doomed = self._doomed(state)
        self._leave(block, doomed)
        if doomed is not None:
            raise doomed

    def _leave(self, block: AbstractContextManager[None], exc: BaseException | None) -> None:
        """Commit (exc None) or roll back a backend's transaction block."""
        try:
            if exc is None:
                block.__exit__(None, None, None)
            else:
                block.__exit__(type(exc), exc, exc.__traceback__)
        except StorageError:
            raise
        except Exception as exc2:
            raise self._failure(exc2, "ending a transaction on") from None

    def __enter__(self) -> StorageManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StorageManager(backend={self.backend_name!r}, url={self.masked_url!r})"

    # --- SQL access (backends with the sql_sessions capability) -----------------------
    def _sql(self) -> SqlSessions:
        if Capability.SQL_SESSIONS not in self.backend.capabilities:
            raise UnsupportedOperationError(
                f"backend {self.backend_name!r} has no SQL engine or sessions; "
                "use the StorageManager methods, or select a SQL backend"
            )
        return cast(SqlSessions, self.backend)  # what the capability promises

    @property
    def engine(self) -> Engine:
        return self._sql().engine

    @property
    def SessionLocal(self) -> sessionmaker[Session]:
        return self._sql().SessionLocal

    def get_session(self) -> Session:
        """A new ORM Session; the caller closes it (use it as a context manager:
        `with storage.get_session() as session: ...`)."""
        return self._sql().SessionLocal()

    # --- archive (backends with the archive capability) --------------------------------
    @_guarded
    def archive_upsert(self, entries: Iterable[ArchivedEntry]) -> int:
        """Keep entries verbatim, replacing any with the same (category, name)."""
        return cast(int, self._do(self._archive_upsert_call(entries)))

    @_guarded
    def archive_get(self, category: str, names: Iterable[str]) -> dict[str, ArchivedEntry]:
        return cast(dict[str, ArchivedEntry], self._do(self._archive_get_call(category, names)))

    def archive_stream(
        self, category: str | None = None, batch_size: int = DEFAULT_STREAM_BATCH
    ) -> Iterator[ArchivedEntry]:
        return self._guard_iter(self._do(self._archive_stream_call(category, batch_size)))

    @_guarded
    def archive_count(self, category: str | None = None) -> int:
        return cast(int, self._do(self._archive_count_call(category)))

    # --- generic record API: every kind, by name or by spec ------------------------------
    # A kind given as its spec (e.g. `kinds.LOG_ENTRY`) types the result precisely
    # (`LogEntry`); given by name, the result is one of the nine record types.
    @_guarded
    @within_scope
    def create_record(self, record: R) -> R:
        return cast(R, self._do(self._create_call(record)))

    @overload
    def get_record(self, kind: KindSpec[R], key: str) -> R | None: ...
    @overload
    def get_record(self, kind: str, key: str) -> AnyRecord | None: ...
    @_guarded
    def get_record(self, kind: str | KindSpec[Any], key: str) -> Any:
        return self.backend.get(*self._get_args(kind, key))

    @overload
    def list_records(
        self,
        kind: KindSpec[R],
        filters: Mapping[str, Any] | None = None,
        limit: int | None = None,
        offset: int = 0,
        order_by: OrderByArg = None,
    ) -> builtins.list[R]: ...
    @overload
    def list_records(
        self,
        kind: str,
        filters: Mapping[str, Any] | None = None,
        limit: int | None = None,
        offset: int = 0,
        order_by: OrderByArg = None,
    ) -> builtins.list[AnyRecord]: ...
    @_guarded
    def list_records(
        self,
        kind: str | KindSpec[Any],
        filters: Mapping[str, Any] | None = None,
        limit: int | None = None,
        offset: int = 0,
        order_by: OrderByArg = None,
    ) -> builtins.list[Any]:
        return cast(
            builtins.list[Any], self._do(self._list_call(kind, filters, limit, offset, order_by))
        )

    @_guarded
    def count_records(
        self, kind: str | KindSpec[Any], filters: Mapping[str, Any] | None = None
    ) -> int:
        return cast(int, self._do(self._count_call(kind, filters)))

    @overload
    def update_record(
        self, kind: KindSpec[R], key: str, expected_version: int | None = None, **fields: Any
    ) -> R | None: ...
    @overload
    def update_record(
        self, kind: str, key: str, expected_version: int | None = None, **fields: Any
    ) -> AnyRecord | None: ...
    @_guarded
    @within_scope
    def update_record(
        self,
        kind: str | KindSpec[Any],
        key: str,
        expected_version: int | None = None,
        **fields: Any,
    ) -> Any:
        return self._do(self._update_call(kind, key, expected_version, fields))

    @_guarded
    @within_scope
    def upsert_record(self, record: R, expected_version: int | None = None) -> R:
        """Create or replace by key (the `create_or_update_*` semantics)."""
        return cast(R, self._do(self._upsert_call(record, expected_version)))

    @_guarded
    def delete_record(self, kind: str | KindSpec[Any], key: str) -> bool:
        return bool(self._do(self._delete_call(kind, key)))

    @overload
    def stream_records(
        self,
        kind: KindSpec[R],
        filters: Mapping[str, Any] | None = None,
        batch_size: int = DEFAULT_STREAM_BATCH,
        order_by: OrderByArg = None,
    ) -> Generator[R, None, None]: ...
    @overload
    def stream_records(
        self,
        kind: str,
        filters: Mapping[str, Any] | None = None,
        batch_size: int = DEFAULT_STREAM_BATCH,
        order_by: OrderByArg = None,
    ) -> Generator[AnyRecord, None, None]: ...
    def stream_records(
        self,
        kind: str | KindSpec[Any],
        filters: Mapping[str, Any] | None = None,
        batch_size: int = DEFAULT_STREAM_BATCH,
        order_by: OrderByArg = None,
    ) -> Generator[Any, None, None]:
        """Iterate matching records in order with bounded memory. Close the iterator (or
        use `contextlib.closing`) when stopping early; it is also closed when dropped."""
        call = self._stream_call(kind, filters, batch_size, order_by)
        return self._guard_iter(self._do(call) if call.asks else iter(()))

    def _guard_iter(self, inner: Iterator[T]) -> Generator[T, None, None]:
        try:
            yield from inner
        except StorageError as exc:
            self._note_failure(exc)
            raise
        except Exception as exc:
            error = self._failure(exc)
            self._note_failure(error)
            raise error from None
        finally:
            close = getattr(inner, "close", None)
            if close is not None:
                close()

    @overload
    def bulk_upsert(self, kind: KindSpec[R], records: Iterable[R]) -> int: ...
    @overload
    def bulk_upsert(self, kind: str, records: Iterable[AnyRecord]) -> int: ...
    @_guarded
    @within_scope
    def bulk_upsert(self, kind: str | KindSpec[Any], records: Iterable[Any]) -> int:
        """Write many records in one transaction, as given (an import primitive): all are
        validated first, so a bad one leaves the store unchanged."""
        return cast(int, self._do(self._bulk_call(kind, records)))

    # --- the original manager's named API ------------------------------------------------
    # log entries
    def create_log_entry(
        self,
        scid: str,
        did: str,
        domain: str,
        namespace: str,
        identifier: str,
        logs: builtins.list[Any],
        deactivated: bool = False,
    ) -> LogEntry:
        return self.create_record(
            log_entry_record(scid, did, domain, namespace, identifier, logs, deactivated)
        )

    def get_log_entry(self, scid: str) -> LogEntry | None:
        return self.get_record(LOG_ENTRY, scid)

    def get_log_entries(
        self,
        filters: Mapping[str, Any] | None = None,
        limit: int | None = None,
        offset: int = 0,
        order_by: OrderByArg = None,
    ) -> builtins.list[LogEntry]:
        return self.list_records(LOG_ENTRY, filters, limit, offset, order_by)

    def count_log_entries(self, filters: Mapping[str, Any] | None = None) -> int:
        return self.count_records(LOG_ENTRY, filters)

    def update_log_entry(
        self, scid: str, expected_version: int | None = None, **fields: Any
    ) -> LogEntry | None:
        return self.update_record(LOG_ENTRY, scid, expected_version, **fields)

    def delete_log_entry(self, scid: str) -> bool:
        return self.delete_record(LOG_ENTRY, scid)

    # resources
    def create_resource(
        self,
        resource_id: str,
        scid: str,
        did: str,
        resource_type: str,
        resource_name: str,
        content: Any,
        metadata: Any = None,
        proof: Any = None,
    ) -> Resource:
        return self.create_record(
            resource_record(
                resource_id, scid, did, resource_type, resource_name, content, metadata, proof
            )
        )

    def get_resource(self, resource_id: str) -> Resource | None:
        return self.get_record(RESOURCE, resource_id)

    def get_resources(
        self,
        filters: Mapping[str, Any] | None = None,
        limit: int | None = None,
        offset: int = 0,
        order_by: OrderByArg = None,
    ) -> builtins.list[Resource]:
        return self.list_records(RESOURCE, filters, limit, offset, order_by)

    def count_resources(self, filters: Mapping[str, Any] | None = None) -> int:
        return self.count_records(RESOURCE, filters)

    def update_resource(
        self, resource_id: str, expected_version: int | None = None, **fields: Any
    ) -> Resource | None:
        return self.update_record(RESOURCE, resource_id, expected_version, **fields)

    def delete_resource(self, resource_id: str) -> bool:
        return self.delete_record(RESOURCE, resource_id)

    # tasks
    def create_task(
        self,
        task_id: str,
        task_type: str,
        status: str,
        progress: dict[str, Any] | None = None,
        message: str | None = None,
    ) -> Task:
        return self.create_record(task_record(task_id, task_type, status, progress, message))

    def get_task(self, task_id: str) -> Task | None:
        return self.get_record(TASK, task_id)

    def get_tasks(
        self,
        filters: Mapping[str, Any] | None = None,
        limit: int | None = None,
        offset: int = 0,
        order_by: OrderByArg = None,
    ) -> builtins.list[Task]:
        return self.list_records(TASK, filters, limit, offset, order_by)

    def count_tasks(self, filters: Mapping[str, Any] | None = None) -> int:
        return self.count_records(TASK, filters)

    def update_task(
        self, task_id: str, expected_version: int | None = None, **fields: Any
    ) -> Task | None:
        return self.update_record(TASK, task_id, expected_version, **fields)

    def delete_task(self, task_id: str) -> bool:
        return self.delete_record(TASK, task_id)

    # singletons and per-DID documents: create or replace
    def create_or_update_policy(
        self, policy_id: str, data: Mapping[str, Any], expected_version: int | None = None
    ) -> Policy:
        return self.upsert_record(policy_record(policy_id, data), expected_version)

    def get_policy(self, policy_id: str) -> Policy | None:
        return self.get_record(POLICY, policy_id)

    def create_or_update_registry(
        self,
        registry_id: str,
        registry_type: str,
        registry_data: dict[str, Any],
        meta: dict[str, Any] | None = None,
        expected_version: int | None = None,
    ) -> Registry:
        record = registry_record(registry_id, registry_type, registry_data, meta)
        return self.upsert_record(record, expected_version)

    def get_registry(self, registry_id: str) -> Registry | None:
        return self.get_record(REGISTRY, registry_id)

    def create_or_update_witness_file(
        self,
        scid: str,
        witness_proofs: builtins.list[Any],
        expected_version: int | None = None,
    ) -> WitnessFile:
        return self.upsert_record(witness_file_record(scid, witness_proofs), expected_version)

    def get_witness_file(self, scid: str) -> WitnessFile | None:
        return self.get_record(WITNESS_FILE, scid)

    def create_or_update_whois(
        self, scid: str, presentation: dict[str, Any], expected_version: int | None = None
    ) -> WhoisPresentation:
        return self.upsert_record(whois_record(scid, presentation), expected_version)

    def get_whois(self, scid: str) -> WhoisPresentation | None:
        return self.get_record(WHOIS, scid)

    # load-test tables
    def create_test_log_entry(
        self, scid: str, logs: builtins.list[Any], tags: dict[str, str] | None = None
    ) -> TestLogEntry:
        return self.create_record(loadtest_log_entry_record(scid, logs, tags))

    def get_test_log_entry(self, scid: str) -> TestLogEntry | None:
        return self.get_record(TEST_LOG_ENTRY, scid)

    def delete_test_log_entry(self, scid: str) -> bool:
        return self.delete_record(TEST_LOG_ENTRY, scid)

    def create_test_resource(
        self, resource_id: str, scid: str, content: Any, tags: dict[str, str] | None = None
    ) -> TestResource:
        return self.create_record(loadtest_resource_record(resource_id, scid, content, tags))

    def get_test_resource(self, resource_id: str) -> TestResource | None:
        return self.get_record(TEST_RESOURCE, resource_id)

    def delete_test_resource(self, resource_id: str) -> bool:
        return self.delete_record(TEST_RESOURCE, resource_id)


def open_storage(
    backend: str | None = None, url: str | None = None, **options: Any
) -> StorageManager:
    """An independent StorageManager (not the process-wide one): for tools, tests and
    processes that use several stores. Unset arguments come from the environment.
    Settings fields (max_payload_bytes, connect_timeout, pool_size, ...) passed here set
    those fields; every other keyword is a backend option."""
    return StorageManager(settings_for(backend, url, options))
