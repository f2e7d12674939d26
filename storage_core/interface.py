"""The contract every backend implements, built-in or third-party.

Backends receive validated input (the manager checks it with `storage_core.validation`)
and a `KindSpec` describing the kind, so one implementation serves all nine kinds.
They must return `storage_core.records` instances and raise only `StorageError`s.

Ordering: list and stream return records in insertion order (the order in which each
key was first created); an update keeps a record's place; delete then create moves it to
the end. Every backend must honour this so pages agree between backends. With an
`order_by` (`storage_core.ordering`), records come in that order, insertion order
breaking ties, exactly as `ordering.sort_records` sorts them.
"""

from __future__ import annotations

import builtins
import hashlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import orjson

from storage_core.errors import UnsupportedOperationError
from storage_core.kinds import KindSpec, R
from storage_core.ordering import OrderBy
from storage_core.validation import Filters

if TYPE_CHECKING:  # only for type checkers: storage_core never imports SQLAlchemy itself
    from sqlalchemy import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
    from sqlalchemy.orm import Session, sessionmaker


class Capability:
    """Names of optional abilities; the conformance suite skips tests needing absent ones."""

    SQL_SESSIONS = "sql_sessions"  # exposes engine / SessionLocal: a `SqlSessions`
    SERVER_SIDE_CURSORS = "server_side_cursors"  # streams without buffering a result set
    PERSISTENT = "persistent"  # data outlives the process (reopen sees it)
    ARCHIVE = "archive"  # keeps foreign entries verbatim: the backend is an ArchiveStore
    #: The backend *cannot* roll back a bulk_upsert that fails mid-way (earlier records
    #: stay written). Declaring it is honest; the suite then reports the atomicity test
    #: as an expected failure naming this flag, instead of requiring the test hook.
    NO_ROLLBACK = "no_rollback"
    #: `transaction()` works: the writes of a block commit together or not at all, and
    #: reads in the block see them. A backend without it refuses `transaction()`.
    TRANSACTIONS = "transactions"


@dataclass(frozen=True, slots=True)
class ArchivedEntry:
    """An entry kept verbatim because no kind describes it (e.g. an Askar category the
    migration has no table for): restoring it must give back exactly what was read."""

    category: str
    name: str
    value: str
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        """Content digest (value and tags, not the tags' order) that re-runs and verify
        compare, so an unchanged entry is never rewritten and a changed one always is."""
        data = orjson.dumps([self.value, sorted(self.tags.items())])
        return hashlib.sha256(data).hexdigest()


class SqlSessions(Protocol):
    """What a backend with `Capability.SQL_SESSIONS` also has: the SQLAlchemy engine it
    runs on and a session factory bound to it (`StorageManager.engine` / `get_session()`)."""

    @property
    def engine(self) -> Engine: ...

    @property
    def SessionLocal(self) -> sessionmaker[Session]: ...


class AsyncSqlSessions(Protocol):
    """What an async face with `Capability.SQL_SESSIONS` also has: its SQLAlchemy
    `AsyncEngine` and an `AsyncSession` factory bound to it
    (`AsyncStorageManager.engine` / `get_session()`)."""

    @property
    def engine(self) -> AsyncEngine: ...

    @property
    def SessionLocal(self) -> async_sessionmaker[AsyncSession]: ...


class StorageBackend(ABC):
    """One store. Methods are synchronous and thread-safe; `provision` is async."""

    #: Capabilities this backend has (see `Capability`); everything else is mandatory.
    capabilities: ClassVar[frozenset[str]] = frozenset()
    #: Registered name, set by the plugin registry when it builds the backend.
    name: str = "?"

    # --- lifecycle -------------------------------------------------------------------
    @abstractmethod
    async def provision(self, recreate: bool = False) -> None:
        """Create the schema/store if missing; with recreate, drop all data first."""

    @abstractmethod
    def close(self) -> None:
        """Release connections, threads and files. Idempotent. Afterwards health_check()
        is False and every other call raises BackendUnavailableError."""

    @abstractmethod
    def health_check(self) -> bool:
        """True when the store answers a trivial query right now."""

    def describe(self) -> dict[str, Any]:
        """Facts for `storage-core info` (URL masked, schema revision, ...)."""
        return {"backend": self.name}

    @property
    def secrets(self) -> Sequence[str]:
        """Values this backend was given that must never be printed (keys, passwords
        from its own options); the manager masks them in every error it raises."""
        return ()

    def refuse_writes_for_testing(self, spec: KindSpec[Any], key: str) -> bool:
        """Test hook of the conformance suite; never called outside tests.

        From now until the store is reprovisioned or closed, the *store itself* must
        refuse to write the record `key` of `spec` (SQL: a trigger that raises; others:
        the write inside the transaction raises), so the suite can check that a
        bulk_upsert failing mid-way leaves nothing written. Return True once armed; the
        default returns False, and the suite then fails its atomicity test unless the
        backend declares `Capability.NO_ROLLBACK`.
        """
        return False

    def flush(self) -> None:  # noqa: B027  (optional: a no-op unless overridden)
        """Make every acknowledged write durable now. A no-op where each commit already
        is; a bulk load that relaxed durability (e.g. SQLite synchronous=NORMAL) calls it
        before reporting success, and it raises if it cannot complete."""

    def native_async(self) -> AsyncStorageBackend | None:
        """This store's own async face, for a backend whose driver is async (Askar);
        None (the default) lets the framework adapt the sync face on a thread pool
        (`storage_core.adapters`). The face returned owns this backend: its `aclose()`
        closes this object too."""
        return None

    # --- single records --------------------------------------------------------------
    @abstractmethod
    def create(self, spec: KindSpec[R], record: R) -> R:
        """Insert; DuplicateRecordError if the key exists. Returns the stored record."""

    @abstractmethod
    def get(self, spec: KindSpec[R], key: str) -> R | None:
        """The record with that key, or None."""

    @abstractmethod
    def update(
        self,
        spec: KindSpec[R],
        key: str,
        changes: dict[str, Any],
        now: datetime,
        expected_version: int | None = None,
    ) -> R | None:
        """Apply `changes` atomically, set updated_at=now (kinds with timestamps) and
        record_version+1. None if the key is missing; ConflictError on a stale
        expected_version (nothing written)."""

    @abstractmethod
    def upsert(self, spec: KindSpec[R], record: R, expected_version: int | None = None) -> R:
        """Create, or replace every data field of an existing record keeping its
        created_at and place, with record_version+1. `expected_version=0` means "must
        not exist yet"; a mismatch raises ConflictError."""

    @abstractmethod
    def delete(self, spec: KindSpec[Any], key: str) -> bool:
        """True if a record was removed."""

    # --- many records ----------------------------------------------------------------
    @abstractmethod
    def list(
        self,
        spec: KindSpec[R],
        filters: Filters,
        limit: int | None,
        offset: int,
        order_by: OrderBy | None = None,
    ) -> builtins.list[R]:
        """Records matching every filter (each a tuple of allowed values), in order:
        insertion order, or `order_by` with insertion order breaking ties. The manager
        passes `order_by` only when the caller gave one."""

    @abstractmethod
    def count(self, spec: KindSpec[Any], filters: Filters) -> int: ...

    @abstractmethod
    def stream(
        self,
        spec: KindSpec[R],
        filters: Filters,
        batch_size: int,
        order_by: OrderBy | None = None,
    ) -> Iterator[R]:
        """Yield matching records in order (as `list`) with memory bounded by batch_size.
        Closing the iterator early must release whatever it holds (cursor, connection)."""

    @abstractmethod
    def bulk_upsert(self, spec: KindSpec[R], records: Sequence[R]) -> int:
        """Write all records in one transaction, as given (fields, timestamps and
        record_version): an import/restore primitive. Returns len(records)."""

    # --- transactions (Capability.TRANSACTIONS) -----------------------------------------
    def transaction(self) -> AbstractContextManager[None]:
        """A block whose calls on this backend, from the thread (or task) that entered
        it, run in one database transaction: committed when the block ends, rolled back
        when it raises; reads inside see its writes, other callers do not until the
        commit. A transaction() inside one joins it (one commit, at the outer end).

        Keep the open block in a context variable (per thread and task): the adapters
        (storage_core.adapters) enter and leave it in one context and carry what
        entering set to the calls inside. Backends without `Capability.TRANSACTIONS`
        keep this default, which refuses."""
        raise UnsupportedOperationError(
            f"backend {self.name!r} has no transactions (capability {Capability.TRANSACTIONS!r})"
        )


class ArchiveStore(ABC):
    """What a backend with `Capability.ARCHIVE` also implements: a verbatim store of
    entries keyed by (category, name), beside the records. The migration keeps Askar
    categories without a kind here, and writes them back on a reverse run."""

    @abstractmethod
    def archive_upsert(self, entries: Sequence[ArchivedEntry]) -> int:
        """Write all entries in one transaction, replacing any with the same (category,
        name). Returns len(entries)."""

    @abstractmethod
    def archive_get(self, category: str, names: Sequence[str]) -> dict[str, ArchivedEntry]:
        """The archived entries of `category` among `names`, by name (missing ones left out)."""

    @abstractmethod
    def archive_stream(
        self, category: str | None = None, batch_size: int = 500
    ) -> Iterator[ArchivedEntry]:
        """Every archived entry (of one category, or all), ordered by (category, name),
        with memory bounded by batch_size."""

    @abstractmethod
    def archive_count(self, category: str | None = None) -> int: ...


class AsyncArchiveStore(ABC):
    """`ArchiveStore` on an async face (`Capability.ARCHIVE` there): the same contract,
    as coroutines; `archive_stream` is an async iterator whose `aclose()` releases what
    it holds."""

    @abstractmethod
    async def archive_upsert(self, entries: Sequence[ArchivedEntry]) -> int: ...

    @abstractmethod
    async def archive_get(
        self, category: str, names: Sequence[str]
    ) -> dict[str, ArchivedEntry]: ...

    @abstractmethod
    def archive_stream(
        self, category: str | None = None, batch_size: int = 500
    ) -> AsyncIterator[ArchivedEntry]: ...

    @abstractmethod
    async def archive_count(self, category: str | None = None) -> int: ...


class AsyncStorageBackend(ABC):
    """The async face of one store: `StorageBackend`'s contract, method for method, as
    coroutines (`stream` is an async iterator), for callers on an event loop (FastAPI
    handlers). Same input, records, errors and ordering as the sync face.

    A backend implements either face; `storage_core.adapters` makes the other (a sync
    backend runs on a bounded thread pool, an async one on a loop thread).
    """

    capabilities: ClassVar[frozenset[str]] = frozenset()
    name: str = "?"

    # --- lifecycle -------------------------------------------------------------------
    @abstractmethod
    async def provision(self, recreate: bool = False) -> None:
        """Create the schema/store if missing; with recreate, drop all data first."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release connections, threads and files. Idempotent. Afterwards health_check()
        is False and every other call raises BackendUnavailableError."""

    @abstractmethod
    async def health_check(self) -> bool:
        """True when the store answers a trivial query right now."""

    def describe(self) -> dict[str, Any]:
        """Facts for `storage-core info` (URL masked, ...); no I/O."""
        return {"backend": self.name}

    @property
    def secrets(self) -> Sequence[str]:
        """Values that must never be printed (see `StorageBackend.secrets`)."""
        return ()

    async def refuse_writes_for_testing(self, spec: KindSpec[Any], key: str) -> bool:
        """The conformance suite's hook (see `StorageBackend.refuse_writes_for_testing`)."""
        return False

    async def flush(self) -> None:  # noqa: B027  (optional: a no-op unless overridden)
        """Make every acknowledged write durable now (see `StorageBackend.flush`)."""

    # --- single records --------------------------------------------------------------
    @abstractmethod
    async def create(self, spec: KindSpec[R], record: R) -> R: ...

    @abstractmethod
    async def get(self, spec: KindSpec[R], key: str) -> R | None: ...

    @abstractmethod
    async def update(
        self,
        spec: KindSpec[R],
        key: str,
        changes: dict[str, Any],
        now: datetime,
        expected_version: int | None = None,
    ) -> R | None: ...

    @abstractmethod
    async def upsert(
        self, spec: KindSpec[R], record: R, expected_version: int | None = None
    ) -> R: ...

    @abstractmethod
    async def delete(self, spec: KindSpec[Any], key: str) -> bool: ...

    # --- many records ----------------------------------------------------------------
    @abstractmethod
    async def list(
        self,
        spec: KindSpec[R],
        filters: Filters,
        limit: int | None,
        offset: int,
        order_by: OrderBy | None = None,
    ) -> builtins.list[R]: ...

    @abstractmethod
    async def count(self, spec: KindSpec[Any], filters: Filters) -> int: ...

    @abstractmethod
    def stream(
        self,
        spec: KindSpec[R],
        filters: Filters,
        batch_size: int,
        order_by: OrderBy | None = None,
    ) -> AsyncIterator[R]:
        """Matching records in order, memory bounded by batch_size. Closing the iterator
        early (`aclose()`) must release whatever it holds (cursor, pool connection)."""

    @abstractmethod
    async def bulk_upsert(self, spec: KindSpec[R], records: Sequence[R]) -> int: ...

    def transaction(self) -> AbstractAsyncContextManager[None]:
        """`async with`: `StorageBackend.transaction`'s contract for the calling task."""
        raise UnsupportedOperationError(
            f"backend {self.name!r} has no transactions (capability {Capability.TRANSACTIONS!r})"
        )
