"""`SQLAlchemyBackend`: the StorageBackend for SQLite and PostgreSQL.

One engine and one pool per store (connections.py); what differs between the databases
is in dialects/. Gets by key, creates, counts and bulk writes run as driver SQL on a
pooled DBAPI connection (the fast paths); everything else runs SQLAlchemy Core
statements prebuilt per kind (statements.py) and builds records straight from rows; no
ORM Session is involved. `engine` and `SessionLocal` are exposed for callers who want the
ORM models (models.py); on `sqlite:///:memory:` there is one shared connection, so ORM
sessions must not be used from several threads at once (the backend's own calls are
serialised by a lock).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from storage_core.codec import utcnow
from storage_core.config import DEFAULT_DATABASE_URL, Settings, mask_url
from storage_core.errors import ConflictError, StorageError
from storage_core.interface import (
    ArchivedEntry,
    ArchiveStore,
    AsyncStorageBackend,
    Capability,
    StorageBackend,
)
from storage_core.kinds import KindSpec, spec_for
from storage_core.ordering import OrderBy
from storage_core.validation import Filters
from webvh_storage_sqlalchemy import archive, migrations
from webvh_storage_sqlalchemy.connections import Connections
from webvh_storage_sqlalchemy.dialects import Dialect, dialect_for
from webvh_storage_sqlalchemy.errors import translate
from webvh_storage_sqlalchemy.locations import absent_database, opening_error
from webvh_storage_sqlalchemy.models import table_for
from webvh_storage_sqlalchemy.options import SQL_OPTIONS
from webvh_storage_sqlalchemy.replicas import ReadRouter
from webvh_storage_sqlalchemy.statements import KindStatements


class SQLAlchemyBackend(StorageBackend, ArchiveStore):
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {
            Capability.SQL_SESSIONS,
            Capability.SERVER_SIDE_CURSORS,
            Capability.PERSISTENT,
            Capability.ARCHIVE,
            Capability.TRANSACTIONS,
        }
    )
    engine: Engine
    SessionLocal: sessionmaker[Session]
    dialect: Dialect
    #: read-only tools ask this before opening, which would create a SQLite file
    absent_database = staticmethod(absent_database)

    def __init__(self, settings: Settings) -> None:
        settings = SQL_OPTIONS.resolve(settings)  # a no-op on what the registry resolved
        self.settings = settings
        self._secrets = settings.secrets
        self._url = settings.url or DEFAULT_DATABASE_URL
        self._closed = True
        try:
            self.dialect = dialect_for(settings)
            self._connections = Connections(self.dialect)
        except Exception as exc:
            problem = opening_error(exc, settings)
            raise problem or translate(exc, self._secrets, action="opening the database") from None
        self.engine = self._connections.engine
        try:
            self._reads = ReadRouter(self._connections, settings)  # DATABASE_READ_URLS
        except Exception as exc:
            self._connections.close()
            raise translate(exc, self._secrets, action="opening the read replicas") from None
        self._secrets = [*self._secrets, *self._reads.secrets]
        self.SessionLocal = sessionmaker(bind=self.engine, expire_on_commit=False)
        # narrowed per instance
        self.capabilities = type(self).capabilities - self.dialect.lacks  # type: ignore[misc]
        self._statements = _StatementsByKind(self.dialect)  # any declared kind
        self._archive_upsert = archive.upsert_statement(self.dialect)
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

    # --- lifecycle ---------------------------------------------------------------------
    async def provision(self, recreate: bool = False) -> None:
        try:
            with self._connections.lock:
                migrations.provision(self._connections.writes, recreate=recreate)
        except Exception as exc:
            raise self._error(exc, "provisioning") from None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._reads.close()
            self._connections.close()

    def flush(self) -> None:
        """SQLite: copy the write-ahead log into the database file, synced to disk (after
        a bulk load with synchronous=NORMAL). PostgreSQL commits are durable already."""
        try:
            self.dialect.flush(self._connections)
        except Exception as exc:
            raise self._error(exc, "checkpointing the database") from None

    def native_async(self) -> AsyncStorageBackend:
        """The native async face (async_backend.py: asyncpg / aiosqlite on the same URL
        and options); it owns this backend, whose engine stays unconnected unless this
        face is used too."""
        from webvh_storage_sqlalchemy.async_backend import AsyncSqlBackend

        return AsyncSqlBackend(self)

    def health_check(self) -> bool:
        try:
            return self._connections.sql_read(_answers)
        except Exception:
            return False

    def describe(self) -> dict[str, Any]:
        try:
            revision = self._connections.sql_read(migrations.current_revision)
        except Exception:
            revision = None  # unprovisioned or unreachable
        return {
            "backend": self.name,
            "url": mask_url(self._url),
            "dialect": self.dialect.name,
            "schema_revision": revision,
            **({"read_replicas": self._reads.describe()} if self._reads.replicas else {}),
        }

    @property
    def secrets(self) -> Sequence[str]:
        """The read replicas' URL passwords (the primary's are the settings')."""
        return self._reads.secrets

    def transaction(self) -> AbstractContextManager[None]:
        """One database transaction for every call of this thread or task inside the
        block (connections.Connections.bound_transaction); its reads go to the primary,
        which holds its writes."""
        return self._transaction()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._reads.primary_only():
            block = self._connections.bound_transaction()
            try:
                block.__enter__()
            except Exception as exc:
                raise self._error(exc, "starting a transaction") from None
            try:
                yield
            except BaseException as exc:
                block.__exit__(type(exc), exc, exc.__traceback__)  # rolls back
                raise
            try:
                block.__exit__(None, None, None)
            except Exception as exc:
                raise self._error(exc, "committing a transaction") from None
        self._reads.wrote()

    def primary(self) -> AbstractContextManager[None]:
        """Reads inside the block go to the primary, never to a read replica."""
        return self._reads.primary_only()

    def __repr__(self) -> str:
        return f"SQLAlchemyBackend(url={mask_url(self._url)!r})"

    # --- single records ------------------------------------------------------------------
    def create(self, spec: KindSpec[Any], record: Any) -> Any:
        st = self._statements[spec.name]
        try:
            with self._connections.connection() as conn:
                conn.execute(st.insert_sql, st.to_params(record))
        except Exception as exc:
            raise self._error(exc, f"creating {spec.name}", spec, spec.key_of(record)) from None
        self._reads.wrote()
        return record

    def get(self, spec: KindSpec[Any], key: str) -> Any | None:
        st = self._statements[spec.name]
        try:
            row = self._reads.fetch_one(st.get_sql, (key,))
        except Exception as exc:
            raise self._error(exc, f"reading {spec.name}") from None
        return None if row is None else st.from_row(row)

    def update(
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
            with self._connections.connection() as conn:
                rows = conn.fetch_all(sql, params)
        except Exception as exc:
            raise self._error(exc, f"updating {spec.name}", spec, key) from None
        if rows:
            self._reads.wrote()
            return st.from_row(rows[0])
        # absent, or a version conflict: the transaction below tells which, atomically
        return self._update_in_transaction(spec, key, changes, now, expected_version)

    def _update_in_transaction(
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
            with self._connections.sql_transaction() as conn:
                row = conn.execute(returning, {"key": key}).first()
                if row is not None:
                    self._reads.wrote()
                    return st.to_record(row)
                actual = conn.execute(st.get_version, {"key": key}).scalar()
        except Exception as exc:
            raise self._error(exc, f"updating {spec.name}", spec, key) from None
        if actual is None:
            return None
        raise ConflictError(spec.name, key, expected_version or 0, actual)

    def upsert(self, spec: KindSpec[Any], record: Any, expected_version: int | None = None) -> Any:
        st = self._statements[spec.name]
        key = spec.key_of(record)
        try:
            with self._connections.sql_transaction() as conn:
                if expected_version is None:
                    row = conn.execute(st.upsert, st.params(record)).first()
                elif expected_version == 0:
                    row = conn.execute(st.insert_if_absent, st.params(record)).first()
                else:
                    stmt = st.versioned_update(st.data_params(record), expected_version)
                    row = conn.execute(stmt, {"key": key}).first()
                if row is not None:
                    self._reads.wrote()
                    return st.to_record(row)
                actual = conn.execute(st.get_version, {"key": key}).scalar()
        except Exception as exc:
            raise self._error(exc, f"writing {spec.name}", spec, key) from None
        raise ConflictError(spec.name, key, expected_version or 0, actual)

    def delete(self, spec: KindSpec[Any], key: str) -> bool:
        st = self._statements[spec.name]
        try:
            with self._connections.sql_transaction() as conn:
                deleted = conn.execute(st.delete, {"key": key}).rowcount > 0
        except Exception as exc:
            raise self._error(exc, f"deleting {spec.name}") from None
        self._reads.wrote()
        return deleted

    # --- many records --------------------------------------------------------------------
    def list(
        self,
        spec: KindSpec[Any],
        filters: Filters,
        limit: int | None,
        offset: int,
        order_by: OrderBy | None = None,
    ) -> list[Any]:
        st = self._statements[spec.name]
        if order_by is not None:
            page = st.ordered(filters, order_by).limit(limit).offset(offset)
            return [st.to_record(row) for row in self._ordered_rows(spec, page)]
        sql, params = st.list_sql(filters, limit, offset)
        try:
            found = self._reads.fetch_all(sql, params)
        except Exception as exc:
            raise self._error(exc, f"listing {spec.name}") from None
        from_row = st.from_row
        return [from_row(row) for row in found]

    def count(self, spec: KindSpec[Any], filters: Filters) -> int:
        sql, params = self._statements[spec.name].count_sql(filters)
        try:
            row = self._reads.fetch_one(sql, params)
        except Exception as exc:
            raise self._error(exc, f"counting {spec.name}") from None
        return int(row[0]) if row is not None else 0

    def stream(
        self,
        spec: KindSpec[Any],
        filters: Filters,
        batch_size: int,
        order_by: OrderBy | None = None,
    ) -> Iterator[Any]:
        st = self._statements[spec.name]
        if order_by is not None:
            yield from self._ordered_stream(spec, filters, batch_size, order_by)
            return
        try:
            yield from self._reads.stream(lambda c: self.dialect.stream(c, st, filters, batch_size))
        except Exception as exc:
            raise self._error(exc, f"streaming {spec.name}") from None

    def _ordered_rows(self, spec: KindSpec[Any], stmt: Any) -> Sequence[Any]:
        """The rows of an ordered select, read like every other list (replicas, rerun)."""

        def rows(conn: Connection) -> Sequence[Any]:
            return conn.execute(stmt).all()

        try:
            return self._reads.read(lambda connections: connections.sql_read(rows))
        except Exception as exc:
            raise self._error(exc, f"listing {spec.name}") from None

    def _ordered_stream(
        self, spec: KindSpec[Any], filters: Filters, batch_size: int, order_by: OrderBy
    ) -> Iterator[Any]:
        """Keyset pages over (order fields..., seq): each page is one read starting
        after the last row served, so no cursor or connection is held between pages
        and records written meanwhile neither shift nor repeat the ones still to come."""
        st = self._statements[spec.name]
        after: tuple[Any, int] | None = None
        while True:
            page = self._ordered_rows(spec, st.ordered(filters, order_by, after).limit(batch_size))
            records = [st.to_record(row) for row in page]
            yield from records
            if len(page) < batch_size:
                return
            after = (records[-1], page[-1][-1])

    def bulk_upsert(self, spec: KindSpec[Any], records: Sequence[Any]) -> int:
        st = self._statements[spec.name]
        try:
            with self._connections.transaction() as conn:
                self.dialect.bulk_upsert(conn, st, records)
        except Exception as exc:
            raise self._error(exc, f"bulk writing {spec.name}", spec) from None
        self._reads.wrote()
        return len(records)

    def refuse_writes_for_testing(self, spec: KindSpec[Any], key: str) -> bool:
        """The suite's hook (see StorageBackend): a trigger makes the database itself
        refuse to insert this record, so a bulk write's rollback is really exercised."""
        table = table_for(spec).name
        literal = "'" + key.replace("'", "''") + "'"
        with self._connections.sql_transaction() as conn:
            for statement in _REFUSAL_TRIGGER[self.dialect.name]:
                sql = statement.format(table=table, column=spec.key, key=literal)
                conn.exec_driver_sql(sql)
        return True

    # --- archive (Capability.ARCHIVE: the migration's verbatim entries, archive.py) ------
    def archive_upsert(self, entries: Sequence[ArchivedEntry]) -> int:
        try:
            with self._connections.sql_transaction() as conn:
                for batch in archive.upsert_batches(entries, utcnow()):
                    conn.execute(self._archive_upsert, batch)
        except Exception as exc:
            raise self._error(exc, "archiving entries") from None
        self._reads.wrote()
        return len(entries)

    def archive_get(self, category: str, names: Sequence[str]) -> dict[str, ArchivedEntry]:
        found: dict[str, ArchivedEntry] = {}
        try:
            for params in archive.get_batches(category, names):

                def rows(conn: Connection, params: dict[str, Any] = params) -> Sequence[Any]:
                    return conn.execute(archive.GET, params).all()

                found.update(
                    (e.name, e) for e in map(archive.entry_of, self._connections.sql_read(rows))
                )
        except Exception as exc:
            raise self._error(exc, "reading the archive") from None
        return found

    def archive_stream(
        self, category: str | None = None, batch_size: int = 500
    ) -> Iterator[ArchivedEntry]:
        after: tuple[str, str] | None = None
        while True:
            page = archive.page(category, batch_size, after)

            def rows(conn: Connection, page: Any = page) -> Sequence[Any]:
                return conn.execute(page).all()

            try:
                found = self._connections.sql_read(rows)
            except Exception as exc:
                raise self._error(exc, "reading the archive") from None
            yield from map(archive.entry_of, found)
            if len(found) < batch_size:
                return
            after = archive.last_key(found)

    def archive_count(self, category: str | None = None) -> int:
        stmt = archive.count_statement(category)

        def count(conn: Connection) -> int:
            return int(conn.execute(stmt).scalar_one())

        try:
            return self._connections.sql_read(count)
        except Exception as exc:
            raise self._error(exc, "counting the archive") from None


class _StatementsByKind(dict[str, KindStatements]):
    """Each declared kind's KindStatements, built on its first use."""

    def __init__(self, dialect: Dialect) -> None:
        super().__init__()
        self._dialect = dialect

    def __missing__(self, name: str) -> KindStatements:
        spec = spec_for(name)
        statements = self[name] = KindStatements(spec, table_for(spec), self._dialect)
        return statements


def _answers(conn: Connection) -> bool:
    return bool(conn.exec_driver_sql("SELECT 1").scalar() == 1)


#: The test hook's trigger per dialect: refuse (raise) an insert of one key.
_REFUSAL_TRIGGER = {
    "sqlite": (
        "CREATE TRIGGER IF NOT EXISTS refuse_{table} BEFORE INSERT ON {table} "
        "WHEN NEW.{column} = {key} BEGIN SELECT RAISE(ABORT, 'refused by the test hook'); END",
    ),
    "postgresql": (
        "CREATE OR REPLACE FUNCTION webvh_refuse() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'refused by the test hook'; END $$",
        "CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} FOR EACH ROW "
        "WHEN (NEW.{column} = {key}) EXECUTE FUNCTION webvh_refuse()",
    ),
}
