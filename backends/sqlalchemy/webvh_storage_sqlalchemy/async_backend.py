"""`AsyncSqlBackend`: the SQL backend's native async face, on SQLAlchemy's asyncio
extension (asyncpg for PostgreSQL, aiosqlite for SQLite: async_drivers.py).

It shares everything but the connections with the sync face (backend.py): the same
URL and options, models, Alembic revisions and provisioning lock, the same prebuilt
statements and row/parameter converters per kind (statements.py, the dialect classes),
the same error translation. Gets by key, creates, updates, pages, counts, streams and
bulk writes run driver SQL on a raw driver connection (async_connections.py); upserts,
deletes and an update's conflict check run the same SQLAlchemy Core statements as the
sync face on an `AsyncConnection`, and so do the archive's (archive.py). Reads go to the
read replicas by the sync face's policy, shared with it (replicas.py), on a pool per
replica of this face's own (async_replicas.py). `engine` (an `AsyncEngine`) and
`SessionLocal` (an `async_sessionmaker`) are there for callers who want the ORM models
asynchronously.

Built by `SQLAlchemyBackend.native_async()`: it owns that sync face (closing it on
`aclose()`), whose engine never connects unless the sync face is used itself. On
`sqlite:///:memory:` each face has its own database (one connection each).
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from storage_core.codec import utcnow
from storage_core.config import mask_url
from storage_core.errors import ConflictError, StorageError, UnsupportedOperationError
from storage_core.install_hints import missing_module_hint
from storage_core.interface import (
    ArchivedEntry,
    AsyncArchiveStore,
    AsyncStorageBackend,
    Capability,
)
from storage_core.kinds import KindSpec
from storage_core.ordering import OrderBy
from storage_core.validation import Filters
from webvh_storage_sqlalchemy import archive, migrations
from webvh_storage_sqlalchemy.async_connections import AsyncConnections
from webvh_storage_sqlalchemy.async_drivers import driver_for
from webvh_storage_sqlalchemy.async_replicas import AsyncReadRouter
from webvh_storage_sqlalchemy.errors import translate
from webvh_storage_sqlalchemy.models import table_for

if TYPE_CHECKING:
    from webvh_storage_sqlalchemy.backend import SQLAlchemyBackend


class AsyncSqlBackend(AsyncStorageBackend, AsyncArchiveStore):
    """The async face of one SQL store (see the module docstring)."""

    capabilities: ClassVar[frozenset[str]] = frozenset()
    engine: AsyncEngine
    SessionLocal: async_sessionmaker[AsyncSession]

    def __init__(self, owner: SQLAlchemyBackend) -> None:
        self._owner = owner
        self.name = owner.name
        self.dialect = owner.dialect
        self.capabilities = owner.capabilities  # type: ignore[misc]  # sessions: async ones
        self._secrets = list(owner.settings.secrets)
        self._statements = owner._statements
        self._archive_upsert = owner._archive_upsert
        self._url = owner._url
        self.driver = driver_for(self.dialect)
        try:
            self._connections = AsyncConnections(self.dialect, self.driver)
        except ModuleNotFoundError as exc:  # asyncpg comes with the postgres extra
            hint = missing_module_hint(exc.name)
            raise UnsupportedOperationError(hint or str(exc)) from None
        except Exception as exc:
            raise translate(exc, self._secrets, action="opening the database") from None
        try:  # DATABASE_READ_URLS: the sync face's policy, this face's pools
            self._reads = AsyncReadRouter(self._connections, owner._reads.policy)
        except Exception as exc:
            raise translate(exc, self._secrets, action="opening the read replicas") from None
        self.engine = self._connections.engine
        self.SessionLocal = async_sessionmaker(bind=self.engine, expire_on_commit=False)
        self._closed = False

    def _error(
        self,
        exc: BaseException,
        action: str,
        spec: KindSpec[Any] | None = None,
        key: str | None = None,
    ) -> StorageError:
        return translate(
            exc, self._secrets, kind=spec.name if spec else None, key=key, action=action
        )

    def __repr__(self) -> str:
        return f"AsyncSqlBackend(url={mask_url(self._url)!r})"

    @property
    def secrets(self) -> Sequence[str]:
        return self._owner.secrets

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "url": mask_url(self._url),
            "dialect": self.dialect.name,
            "driver": self.driver.driver,
            **({"read_replicas": self._reads.policy.describe()} if self._reads.replicas else {}),
        }

    # --- lifecycle ---------------------------------------------------------------------
    async def provision(self, recreate: bool = False) -> None:
        """The sync face's provisioning (same revisions, same locks) on this engine."""
        connections = self._connections
        try:
            connections.check_open()
            lock = migrations.provisioning_lock(self.engine.sync_engine)
            await asyncio.to_thread(lock.__enter__)  # a flock beside a SQLite file
            try:
                async with connections.sql_transaction() as conn:
                    await conn.run_sync(migrations.provision_on, recreate)
            finally:
                lock.__exit__(None, None, None)
            if self.driver.caches_plans:  # planned against the schema just replaced
                await self._connections.close_idle()
        except Exception as exc:
            raise self._error(exc, "provisioning") from None

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._reads.close()
            await self._connections.close()
        finally:
            self._owner.close()

    async def health_check(self) -> bool:
        try:
            row = await self._connections.fetch_one("SELECT 1", ())
        except Exception:
            return False
        return row is not None and row[0] == 1

    async def flush(self) -> None:
        """SQLite file: copy the write-ahead log into the database file, synced (as the
        sync face's flush); PostgreSQL commits and `:memory:` need nothing."""
        sql = self.driver.flush_sql
        if sql is None or Capability.PERSISTENT not in self.capabilities:
            return
        try:
            row = await self._connections.fetch_one(sql, ())
        except Exception as exc:
            raise self._error(exc, "checkpointing the database") from None
        if row is None or row[0]:
            raise StorageError("could not checkpoint the SQLite database: another process holds it")

    async def refuse_writes_for_testing(self, spec: KindSpec[Any], key: str) -> bool:
        """The sync face's trigger (backend._REFUSAL_TRIGGER), created on this engine."""
        from webvh_storage_sqlalchemy.backend import _REFUSAL_TRIGGER

        table = table_for(spec).name
        literal = "'" + key.replace("'", "''") + "'"
        async with self._connections.sql_transaction() as conn:
            for statement in _REFUSAL_TRIGGER[self.dialect.name]:
                sql = statement.format(table=table, column=spec.key, key=literal)
                await conn.exec_driver_sql(sql)
        return True

    def transaction(self) -> AbstractAsyncContextManager[None]:
        """One database transaction for every call of this task inside the block
        (async_connections.AsyncConnections.bound_transaction), as on the sync face;
        its reads go to the primary, which holds its writes."""
        return self._on_primary(self._transaction(), wrote=True)

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        block = self._connections.bound_transaction()
        try:
            await block.__aenter__()
        except Exception as exc:
            raise self._error(exc, "starting a transaction") from None
        try:
            yield
        except BaseException as exc:
            await block.__aexit__(type(exc), exc, exc.__traceback__)  # rolls back
            raise
        try:
            await block.__aexit__(None, None, None)
        except Exception as exc:
            raise self._error(exc, "committing a transaction") from None

    def primary(self) -> AbstractAsyncContextManager[None]:
        """Reads of this task inside the block go to the primary, never to a replica."""
        return self._on_primary(nullcontext())

    @asynccontextmanager
    async def _on_primary(
        self, block: AbstractAsyncContextManager[Any], wrote: bool = False
    ) -> AsyncIterator[None]:
        """`block` with this task's reads on the primary; `wrote`: a block that wrote
        (it committed), after which the task reads its writes there too."""
        with self._reads.policy.primary_only():
            async with block:
                yield
        if wrote:
            self._reads.policy.wrote()

    # --- single records ------------------------------------------------------------------
    async def create(self, spec: KindSpec[Any], record: Any) -> Any:
        st = self._statements[spec.name]
        try:
            async with self._connections.connection() as conn:
                await conn.execute(st.insert_sql, st.to_params(record))
        except Exception as exc:
            raise self._error(exc, f"creating {spec.name}", spec, spec.key_of(record)) from None
        self._reads.policy.wrote()
        return record

    async def get(self, spec: KindSpec[Any], key: str) -> Any | None:
        st = self._statements[spec.name]
        try:
            row = await self._reads.fetch_one(st.get_sql, (key,))
        except Exception as exc:
            raise self._error(exc, f"reading {spec.name}") from None
        return None if row is None else st.from_row(row)

    async def update(
        self,
        spec: KindSpec[Any],
        key: str,
        changes: dict[str, Any],
        now: datetime,
        expected_version: int | None = None,
    ) -> Any | None:
        st = self._statements[spec.name]
        sql, params = st.update_sql(changes, now, key, expected_version)
        try:
            async with self._connections.connection() as conn:
                rows = await conn.fetch_all(sql, params)
        except Exception as exc:
            raise self._error(exc, f"updating {spec.name}", spec, key) from None
        if rows:
            self._reads.policy.wrote()
            return st.from_row(rows[0])
        # absent, or a version conflict: the transaction below tells which, atomically
        return await self._update_in_transaction(spec, key, changes, now, expected_version)

    async def _update_in_transaction(
        self,
        spec: KindSpec[Any],
        key: str,
        changes: dict[str, Any],
        now: datetime,
        expected_version: int | None,
    ) -> Any | None:
        st = self._statements[spec.name]
        returning = st.versioned_update(st.changes_at(changes, now), expected_version)
        try:
            async with self._connections.sql_transaction() as conn:
                row = (await conn.execute(returning, {"key": key})).first()
                if row is not None:
                    self._reads.policy.wrote()
                    return st.to_record(row)
                actual = (await conn.execute(st.get_version, {"key": key})).scalar()
        except Exception as exc:
            raise self._error(exc, f"updating {spec.name}", spec, key) from None
        if actual is None:
            return None
        raise ConflictError(spec.name, key, expected_version or 0, actual)

    async def upsert(
        self, spec: KindSpec[Any], record: Any, expected_version: int | None = None
    ) -> Any:
        st = self._statements[spec.name]
        key = spec.key_of(record)
        try:
            async with self._connections.sql_transaction() as conn:
                if expected_version is None:
                    row = (await conn.execute(st.upsert, st.params(record))).first()
                elif expected_version == 0:
                    row = (await conn.execute(st.insert_if_absent, st.params(record))).first()
                else:
                    stmt = st.versioned_update(st.data_params(record), expected_version)
                    row = (await conn.execute(stmt, {"key": key})).first()
                if row is not None:
                    self._reads.policy.wrote()
                    return st.to_record(row)
                actual = (await conn.execute(st.get_version, {"key": key})).scalar()
        except Exception as exc:
            raise self._error(exc, f"writing {spec.name}", spec, key) from None
        raise ConflictError(spec.name, key, expected_version or 0, actual)

    async def delete(self, spec: KindSpec[Any], key: str) -> bool:
        st = self._statements[spec.name]
        try:
            async with self._connections.sql_transaction() as conn:
                deleted = (await conn.execute(st.delete, {"key": key})).rowcount > 0
        except Exception as exc:
            raise self._error(exc, f"deleting {spec.name}") from None
        self._reads.policy.wrote()
        return deleted

    # --- many records --------------------------------------------------------------------
    async def list(
        self,
        spec: KindSpec[Any],
        filters: Filters,
        limit: int | None,
        offset: int,
        order_by: OrderBy | None = None,
    ) -> builtins.list[Any]:
        st = self._statements[spec.name]
        if order_by is not None:
            page = st.ordered(filters, order_by).limit(limit).offset(offset)
            return [st.to_record(row) for row in await self._ordered_rows(spec, page)]
        sql, params = st.list_sql(filters, limit, offset)
        try:
            found = await self._reads.fetch_all(sql, params)
        except Exception as exc:
            raise self._error(exc, f"listing {spec.name}") from None
        from_row = st.from_row
        return [from_row(row) for row in found]

    async def count(self, spec: KindSpec[Any], filters: Filters) -> int:
        sql, params = self._statements[spec.name].count_sql(filters)
        try:
            row = await self._reads.fetch_one(sql, params)
        except Exception as exc:
            raise self._error(exc, f"counting {spec.name}") from None
        return int(row[0]) if row is not None else 0

    async def _ordered_rows(self, spec: KindSpec[Any], stmt: Any) -> Sequence[Any]:
        """The rows of an ordered select (SQLAlchemy Core, like the sync face's), read
        like every other list (replicas, rerun)."""

        async def rows(conn: AsyncConnection) -> Sequence[Any]:
            return (await conn.execute(stmt)).all()

        try:
            return await self._reads.read(lambda connections: connections.sql_read(rows))
        except Exception as exc:
            raise self._error(exc, f"listing {spec.name}") from None

    async def stream(
        self,
        spec: KindSpec[Any],
        filters: Filters,
        batch_size: int,
        order_by: OrderBy | None = None,
    ) -> AsyncIterator[Any]:
        """The list SQL (statements.list_sql, no limit) read through one cursor, a batch
        at a time; leaving early (`aclose()`) closes the cursor and returns the
        connection at once. With `order_by`: keyset pages over (order fields..., seq),
        as the sync face, holding nothing between pages."""
        st = self._statements[spec.name]
        if order_by is not None:
            after: tuple[Any, int] | None = None
            while True:
                stmt = st.ordered(filters, order_by, after).limit(batch_size)
                page = await self._ordered_rows(spec, stmt)
                records = [st.to_record(row) for row in page]
                for record in records:
                    yield record
                if len(page) < batch_size:
                    return
                after = (records[-1], page[-1][-1])
        sql, params = st.list_sql(filters, None, 0)
        from_row = st.from_row
        rows = self._reads.stream(lambda c: c.stream_rows(sql, params, batch_size))
        try:
            while True:
                try:
                    batch = await anext(rows)
                except StopAsyncIteration:
                    return
                except Exception as exc:
                    raise self._error(exc, f"streaming {spec.name}") from None
                for row in batch:
                    yield from_row(row)
        finally:
            await rows.aclose()  # type: ignore[attr-defined]

    async def bulk_upsert(self, spec: KindSpec[Any], records: Sequence[Any]) -> int:
        st = self._statements[spec.name]
        to_params = st.to_params
        try:
            async with self._connections.transaction() as conn:
                await conn.bulk_upsert(st.bulk_upsert_sql, [to_params(r) for r in records])
        except Exception as exc:
            raise self._error(exc, f"bulk writing {spec.name}", spec) from None
        self._reads.policy.wrote()
        return len(records)

    # --- archive (Capability.ARCHIVE: the sync face's statements, archive.py) -----------
    async def archive_upsert(self, entries: Sequence[ArchivedEntry]) -> int:
        try:
            async with self._connections.sql_transaction() as conn:
                for batch in archive.upsert_batches(entries, utcnow()):
                    await conn.execute(self._archive_upsert, batch)
        except Exception as exc:
            raise self._error(exc, "archiving entries") from None
        self._reads.policy.wrote()
        return len(entries)

    async def archive_get(self, category: str, names: Sequence[str]) -> dict[str, ArchivedEntry]:
        found: dict[str, ArchivedEntry] = {}
        try:
            for params in archive.get_batches(category, names):
                rows = await self._archive_rows(archive.GET, params)
                found.update((e.name, e) for e in map(archive.entry_of, rows))
        except Exception as exc:
            raise self._error(exc, "reading the archive") from None
        return found

    async def archive_stream(
        self, category: str | None = None, batch_size: int = 500
    ) -> AsyncIterator[ArchivedEntry]:
        """Keyset pages, each one read: leaving early holds nothing to release."""
        after: tuple[str, str] | None = None
        while True:
            try:
                found = await self._archive_rows(archive.page(category, batch_size, after))
            except Exception as exc:
                raise self._error(exc, "reading the archive") from None
            for row in found:
                yield archive.entry_of(row)
            if len(found) < batch_size:
                return
            after = archive.last_key(found)

    async def archive_count(self, category: str | None = None) -> int:
        try:
            rows = await self._archive_rows(archive.count_statement(category))
        except Exception as exc:
            raise self._error(exc, "counting the archive") from None
        return int(rows[0][0])

    async def _archive_rows(self, stmt: Any, params: dict[str, Any] | None = None) -> Sequence[Any]:
        async def rows(conn: AsyncConnection) -> Sequence[Any]:
            return (await conn.execute(stmt, params)).all()

        return await self._connections.sql_read(rows)
