"""`AsyncStorageManager`: `StorageManager`'s API as coroutines, for `async def` callers.

Same names, arguments, results and errors as the sync manager: both turn each call into
the same validated `manager_core.Call`; this one awaits it on the backend's async face
(its native one, e.g. Askar's, or the sync face on a bounded thread pool, see
`storage_core.adapters`), so the event loop never waits on the database.

A store opened here is bound to the event loop that first uses it (drivers' connections
belong to one loop): open one per loop, e.g. in a FastAPI lifespan.
"""

from __future__ import annotations

import builtins
import functools
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast, overload

from storage_core.adapters import DEFAULT_WORKERS, as_async
from storage_core.config import Settings
from storage_core.encoded import within_scope
from storage_core.errors import StorageError, UnsupportedOperationError
from storage_core.interface import (
    ArchivedEntry,
    AsyncSqlSessions,
    AsyncStorageBackend,
    Capability,
    StorageBackend,
)
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
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

T = TypeVar("T")
A = TypeVar("A", bound=Callable[..., Coroutine[Any, Any, Any]])  # an async method


def _guarded(method: A) -> A:
    """Turn anything a backend leaks that is not a StorageError into one, masked."""

    @functools.wraps(method)
    async def wrapper(self: AsyncStorageManager, *args: Any, **kwargs: Any) -> Any:
        try:
            return await method(self, *args, **kwargs)
        except StorageError as exc:
            self._note_failure(exc)
            raise
        except Exception as exc:
            error = self._failure(exc)
            self._note_failure(error)
            raise error from None

    return cast(A, wrapper)


def workers_for(settings: Settings) -> int:
    """Threads for a sync store's async face: its connection pool size, so no call
    waits on a thread while a connection is free (DEFAULT_WORKERS when it has none)."""
    size = settings.options.get("pool_size")
    return size if isinstance(size, int) and size > 0 else DEFAULT_WORKERS


class AsyncStorageManager(ManagerCore):
    """`AsyncStorageManager()` is the process-wide instance built from the environment;
    `storage_core.open_async_storage(...)` (or `AsyncStorageManager(settings)`) builds an
    independent one. Use `async with` or `await storage.aclose()`."""

    _instance: ClassVar[AsyncStorageManager | None] = None
    _instance_lock: ClassVar[threading.Lock] = threading.Lock()

    def __new__(
        cls,
        settings: Settings | None = None,
        *,
        backend: StorageBackend | AsyncStorageBackend | None = None,
    ) -> AsyncStorageManager:
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
        self,
        settings: Settings | None = None,
        *,
        backend: StorageBackend | AsyncStorageBackend | None = None,
    ) -> None:
        """Everything is set up in __new__ so the singleton is never re-initialised."""

    def _open(
        self, settings: Settings, backend: StorageBackend | AsyncStorageBackend | None
    ) -> None:
        if backend is None:
            settings, backend = build_backend(settings)
        self.backend: AsyncStorageBackend = as_async(backend, workers_for(settings))
        self._adopt(settings, self.backend)
        self._log_opened()

    @classmethod
    async def configure(cls, source: Settings | AsyncStorageManager) -> AsyncStorageManager:
        """`StorageManager.configure` for the async face: every later
        `AsyncStorageManager()` returns this store. A process-wide instance opened
        before is closed (awaited) and replaced."""
        instance = source if isinstance(source, AsyncStorageManager) else cls(source)
        with cls._instance_lock:
            previous, cls._instance = cls._instance, instance
        if previous is not None and previous is not instance:
            await previous.aclose()
        return instance

    @classmethod
    async def reset(cls) -> None:
        """Close and forget the process-wide instance (the next call builds a new one)."""
        with cls._instance_lock:
            instance, cls._instance = cls._instance, None
        if instance is not None:
            await instance.aclose()

    def _face(self) -> AsyncStorageBackend:
        return self.backend

    async def _do(self, call: Call) -> Any:
        """Await a validated call (manager_core) on the backend's async face."""
        return await getattr(self.backend, call.method)(*call.args) if call.asks else call.answer

    # --- lifecycle -------------------------------------------------------------------
    async def provision(self, recreate: bool = False) -> None:
        try:
            await self.backend.provision(recreate=recreate)
        except StorageError:
            raise
        except Exception as exc:
            raise self._failure(exc, "provisioning") from None

    async def init_db(self, recreate: bool = False) -> None:
        """`provision()`, under the sync manager's other name for it."""
        await self.provision(recreate=recreate)

    async def aclose(self) -> None:
        await self.backend.aclose()

    @_guarded
    async def flush(self) -> None:
        """Make every acknowledged write durable now (see `StorageBackend.flush`)."""
        await self.backend.flush()

    async def health_check(self) -> bool:
        try:
            return bool(await self.backend.health_check())
        except Exception:
            return False

    async def info(self) -> dict[str, Any]:
        """Backend, masked URL and rows per kind (as `StorageManager.info`)."""
        facts = self._describe()
        facts["rows"] = {name: await self.count_records(name) for name in KINDS}
        return facts

    def primary(self) -> AbstractAsyncContextManager[None]:
        """`async with storage.primary():` reads of this task in the block see the
        latest writes: they go to the primary database, never to a read replica (as
        `StorageManager.primary`; a face without replicas: no-op). Tasks started inside
        the block inherit it."""
        backend_primary = getattr(self.backend, "primary", None)
        return backend_primary() if callable(backend_primary) else nullcontext()

    def transaction(self) -> AbstractAsyncContextManager[None]:
        """`async with storage.transaction():` the calls of this task on this manager
        inside the block are one atomic unit (see `StorageManager.transaction`: the same
        rules). Tasks started inside the block share it, one call at a time."""
        return self._transaction()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        state = self._begin_transaction()
        if state is None:  # nested: part of the outer block
            yield
            return
        try:
            block = self.backend.transaction()
            await block.__aenter__()
        except StorageError:
            raise
        except Exception as exc:
            raise self._failure(exc, "starting a transaction on") from None
        token = self._in_transaction.set(state)
        try:
            yield
        except BaseException as exc:
            self._in_transaction.reset(token)
            await self._leave(block, exc)
            raise
        self._in_transaction.reset(token)
        doomed = self._doomed(state)
        await self._leave(block, doomed)
        if doomed is not None:
            raise doomed

    async def _leave(
        self, block: AbstractAsyncContextManager[None], exc: BaseException | None
    ) -> None:
        """Commit (exc None) or roll back a backend's transaction block."""
        try:
            if exc is None:
                await block.__aexit__(None, None, None)
            else:
                await block.__aexit__(type(exc), exc, exc.__traceback__)
        except StorageError:
            raise
        except Exception as exc2:
            raise self._failure(exc2, "ending a transaction on") from None

    async def __aenter__(self) -> AsyncStorageManager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncStorageManager(backend={self.backend_name!r}, url={self.masked_url!r})"

    # --- SQL access (async faces with the sql_sessions capability) ---------------------
    def _sql(self) -> AsyncSqlSessions:
        if Capability.SQL_SESSIONS not in self.backend.capabilities:
            raise UnsupportedOperationError(
                f"backend {self.backend_name!r} has no SQL engine or sessions; "
                "use the AsyncStorageManager methods, or select a SQL backend"
            )
        return cast(AsyncSqlSessions, self.backend)  # what the capability promises

    @property
    def engine(self) -> AsyncEngine:
        """The store's SQLAlchemy `AsyncEngine` (its one pool, shared with every call)."""
        return self._sql().engine

    @property
    def SessionLocal(self) -> async_sessionmaker[AsyncSession]:
        return self._sql().SessionLocal

    def get_session(self) -> AsyncSession:
        """A new ORM `AsyncSession` on the store's engine; the caller closes it (use it
        as an async context manager: `async with storage.get_session() as session:`)."""
        return self._sql().SessionLocal()

    # --- archive (faces with the archive capability) -----------------------------------
    @_guarded
    async def archive_upsert(self, entries: Iterable[ArchivedEntry]) -> int:
        """Keep entries verbatim, replacing any with the same (category, name)."""
        return cast(int, await self._do(self._archive_upsert_call(entries)))

    @_guarded
    async def archive_get(self, category: str, names: Iterable[str]) -> dict[str, ArchivedEntry]:
        return cast(
            dict[str, ArchivedEntry], await self._do(self._archive_get_call(category, names))
        )

    def archive_stream(
        self, category: str | None = None, batch_size: int = DEFAULT_STREAM_BATCH
    ) -> AsyncGenerator[ArchivedEntry, None]:
        """Every archived entry (of one category, or all) ordered by (category, name),
        `async for`; bad arguments raise here, at the call. When stopping early,
        `await it.aclose()` (or `contextlib.aclosing`) releases what it holds."""
        call = self._archive_stream_call(category, batch_size)
        return self._guard_iter(getattr(self.backend, call.method)(*call.args))

    @_guarded
    async def archive_count(self, category: str | None = None) -> int:
        return cast(int, await self._do(self._archive_count_call(category)))

    # --- generic record API: every kind, by name or by spec ------------------------------
    @_guarded
    @within_scope
    async def create_record(self, record: R) -> R:
        return cast(R, await self._do(self._create_call(record)))

    @overload
    async def get_record(self, kind: KindSpec[R], key: str) -> R | None: ...
    @overload
    async def get_record(self, kind: str, key: str) -> AnyRecord | None: ...
    async def get_record(self, kind: str | KindSpec[Any], key: str) -> Any:
        # `_guarded`, written out: one coroutine fewer on the hottest path.
        try:
            return await self.backend.get(*self._get_args(kind, key))
        except StorageError:
            raise
        except Exception as exc:
            raise self._failure(exc) from None

    @overload
    async def list_records(
        self,
        kind: KindSpec[R],
        filters: Mapping[str, Any] | None = None,
        limit: int | None = None,
        offset: int = 0,
        order_by: OrderByArg = None,
    ) -> builtins.list[R]: ...
    @overload
    async def list_records(
        self,
        kind: str,
        filters: Mapping[str, Any] | None = None,
        limit: int | None = None,
        offset: int = 0,
        order_by: OrderByArg = None,
    ) -> builtins.list[AnyRecord]: ...
    @_guarded
    async def list_records(
        self,
        kind: str | KindSpec[Any],
        filters: Mapping[str, Any] | None = None,
        limit: int | None = None,
        offset: int = 0,
        order_by: OrderByArg = None,
    ) -> builtins.list[Any]:
        return cast(
            builtins.list[Any],
            await self._do(self._list_call(kind, filters, limit, offset, order_by)),
        )

    @_guarded
    async def count_records(
        self, kind: str | KindSpec[Any], filters: Mapping[str, Any] | None = None
    ) -> int:
        return cast(int, await self._do(self._count_call(kind, filters)))

    @overload
    async def update_record(
        self, kind: KindSpec[R], key: str, expected_version: int | None = None, **fields: Any
    ) -> R | None: ...
    @overload
    async def update_record(
        self, kind: str, key: str, expected_version: int | None = None, **fields: Any
    ) -> AnyRecord | None: ...
    @_guarded
    @within_scope
    async def update_record(
        self,
        kind: str | KindSpec[Any],
        key: str,
        expected_version: int | None = None,
        **fields: Any,
    ) -> Any:
        return await self._do(self._update_call(kind, key, expected_version, fields))

    @_guarded
    @within_scope
    async def upsert_record(self, record: R, expected_version: int | None = None) -> R:
        """Create or replace by key (the `create_or_update_*` semantics)."""
        return cast(R, await self._do(self._upsert_call(record, expected_version)))

    @_guarded
    async def delete_record(self, kind: str | KindSpec[Any], key: str) -> bool:
        return bool(await self._do(self._delete_call(kind, key)))

    @overload
    def stream_records(
        self,
        kind: KindSpec[R],
        filters: Mapping[str, Any] | None = None,
        batch_size: int = DEFAULT_STREAM_BATCH,
        order_by: OrderByArg = None,
    ) -> AsyncGenerator[R, None]: ...
    @overload
    def stream_records(
        self,
        kind: str,
        filters: Mapping[str, Any] | None = None,
        batch_size: int = DEFAULT_STREAM_BATCH,
        order_by: OrderByArg = None,
    ) -> AsyncGenerator[AnyRecord, None]: ...
    def stream_records(
        self,
        kind: str | KindSpec[Any],
        filters: Mapping[str, Any] | None = None,
        batch_size: int = DEFAULT_STREAM_BATCH,
        order_by: OrderByArg = None,
    ) -> AsyncGenerator[Any, None]:
        """Iterate matching records in order with bounded memory (`async for`). Bad
        arguments raise here, at the call. When stopping early, `await it.aclose()` (or
        use `contextlib.aclosing`): that releases the cursor and its connection."""
        call = self._stream_call(kind, filters, batch_size, order_by)
        return self._guard_iter(self.backend.stream(*call.args) if call.asks else None)

    async def _guard_iter(self, inner: AsyncIterator[T] | None) -> AsyncGenerator[T, None]:
        if inner is None:
            return
        try:
            async for item in inner:
                yield item
        except StorageError as exc:
            self._note_failure(exc)
            raise
        except Exception as exc:
            error = self._failure(exc)
            self._note_failure(error)
            raise error from None
        finally:
            aclose = getattr(inner, "aclose", None)
            if aclose is not None:
                await aclose()

    @overload
    async def bulk_upsert(self, kind: KindSpec[R], records: Iterable[R]) -> int: ...
    @overload
    async def bulk_upsert(self, kind: str, records: Iterable[AnyRecord]) -> int: ...
    @_guarded
    @within_scope
    async def bulk_upsert(self, kind: str | KindSpec[Any], records: Iterable[Any]) -> int:
        """Write many records in one transaction, as given (an import primitive): all are
        validated first, so a bad one leaves the store unchanged."""
        return cast(int, await self._do(self._bulk_call(kind, records)))

    # --- the original manager's named API ------------------------------------------------
    # log entries
    async def create_log_entry(
        self,
        scid: str,
        did: str,
        domain: str,
        namespace: str,
        identifier: str,
        logs: builtins.list[Any],
        deactivated: bool = False,
    ) -> LogEntry:
        return await self.create_record(
            log_entry_record(scid, did, domain, namespace, identifier, logs, deactivated)
        )

    async def get_log_entry(self, scid: str) -> LogEntry | None:
        return await self.get_record(LOG_ENTRY, scid)

    async def get_log_entries(
        self,
        filters: Mapping[str, Any] | None = None,
        limit: int | None = None,
        offset: int = 0,
        order_by: OrderByArg = None,
    ) -> builtins.list[LogEntry]:
        return await self.list_records(LOG_ENTRY, filters, limit, offset, order_by)

    async def count_log_entries(self, filters: Mapping[str, Any] | None = None) -> int:
        return await self.count_records(LOG_ENTRY, filters)

    async def update_log_entry(
        self, scid: str, expected_version: int | None = None, **fields: Any
    ) -> LogEntry | None:
        return await self.update_record(LOG_ENTRY, scid, expected_version, **fields)

    async def delete_log_entry(self, scid: str) -> bool:
        return await self.delete_record(LOG_ENTRY, scid)

    # resources
    async def create_resource(
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
        return await self.create_record(
            resource_record(
                resource_id, scid, did, resource_type, resource_name, content, metadata, proof
            )
        )

    async def get_resource(self, resource_id: str) -> Resource | None:
        return await self.get_record(RESOURCE, resource_id)

    async def get_resources(
        self,
        filters: Mapping[str, Any] | None = None,
        limit: int | None = None,
        offset: int = 0,
        order_by: OrderByArg = None,
    ) -> builtins.list[Resource]:
        return await self.list_records(RESOURCE, filters, limit, offset, order_by)

    async def count_resources(self, filters: Mapping[str, Any] | None = None) -> int:
        return await self.count_records(RESOURCE, filters)

    async def update_resource(
        self, resource_id: str, expected_version: int | None = None, **fields: Any
    ) -> Resource | None:
        return await self.update_record(RESOURCE, resource_id, expected_version, **fields)

    async def delete_resource(self, resource_id: str) -> bool:
        return await self.delete_record(RESOURCE, resource_id)

    # tasks
    async def create_task(
        self,
        task_id: str,
        task_type: str,
        status: str,
        progress: dict[str, Any] | None = None,
        message: str | None = None,
    ) -> Task:
        return await self.create_record(task_record(task_id, task_type, status, progress, message))

    async def get_task(self, task_id: str) -> Task | None:
        return await self.get_record(TASK, task_id)

    async def get_tasks(
        self,
        filters: Mapping[str, Any] | None = None,
        limit: int | None = None,
        offset: int = 0,
        order_by: OrderByArg = None,
    ) -> builtins.list[Task]:
        return await self.list_records(TASK, filters, limit, offset, order_by)

    async def count_tasks(self, filters: Mapping[str, Any] | None = None) -> int:
        return await self.count_records(TASK, filters)

    async def update_task(
        self, task_id: str, expected_version: int | None = None, **fields: Any
    ) -> Task | None:
        return await self.update_record(TASK, task_id, expected_version, **fields)

    async def delete_task(self, task_id: str) -> bool:
        return await self.delete_record(TASK, task_id)

    # singletons and per-DID documents: create or replace
    async def create_or_update_policy(
        self, policy_id: str, data: Mapping[str, Any], expected_version: int | None = None
    ) -> Policy:
        return await self.upsert_record(policy_record(policy_id, data), expected_version)

    async def get_policy(self, policy_id: str) -> Policy | None:
        return await self.get_record(POLICY, policy_id)

    async def create_or_update_registry(
        self,
        registry_id: str,
        registry_type: str,
        registry_data: dict[str, Any],
        meta: dict[str, Any] | None = None,
        expected_version: int | None = None,
    ) -> Registry:
        record = registry_record(registry_id, registry_type, registry_data, meta)
        return await self.upsert_record(record, expected_version)

    async def get_registry(self, registry_id: str) -> Registry | None:
        return await self.get_record(REGISTRY, registry_id)

    async def create_or_update_witness_file(
        self,
        scid: str,
        witness_proofs: builtins.list[Any],
        expected_version: int | None = None,
    ) -> WitnessFile:
        return await self.upsert_record(witness_file_record(scid, witness_proofs), expected_version)

    async def get_witness_file(self, scid: str) -> WitnessFile | None:
        return await self.get_record(WITNESS_FILE, scid)

    async def create_or_update_whois(
        self, scid: str, presentation: dict[str, Any], expected_version: int | None = None
    ) -> WhoisPresentation:
        return await self.upsert_record(whois_record(scid, presentation), expected_version)

    async def get_whois(self, scid: str) -> WhoisPresentation | None:
        return await self.get_record(WHOIS, scid)

    # load-test tables
    async def create_test_log_entry(
        self, scid: str, logs: builtins.list[Any], tags: dict[str, str] | None = None
    ) -> TestLogEntry:
        return await self.create_record(loadtest_log_entry_record(scid, logs, tags))

    async def get_test_log_entry(self, scid: str) -> TestLogEntry | None:
        return await self.get_record(TEST_LOG_ENTRY, scid)

    async def delete_test_log_entry(self, scid: str) -> bool:
        return await self.delete_record(TEST_LOG_ENTRY, scid)

    async def create_test_resource(
        self, resource_id: str, scid: str, content: Any, tags: dict[str, str] | None = None
    ) -> TestResource:
        return await self.create_record(loadtest_resource_record(resource_id, scid, content, tags))

    async def get_test_resource(self, resource_id: str) -> TestResource | None:
        return await self.get_record(TEST_RESOURCE, resource_id)

    async def delete_test_resource(self, resource_id: str) -> bool:
        return await self.delete_record(TEST_RESOURCE, resource_id)


def open_async_storage(
    backend: str | None = None, url: str | None = None, **options: Any
) -> AsyncStorageManager:
    """An independent AsyncStorageManager (not the process-wide one), as `open_storage`:
    unset arguments come from the environment; Settings fields passed here set those
    fields, every other keyword is a backend option. Not a coroutine: it builds the
    backend, whose connections open in the event loop of the first call."""
    return AsyncStorageManager(settings_for(backend, url, options))
