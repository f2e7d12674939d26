"""`SQLAlchemyBackend`: the StorageBackend for SQLite and PostgreSQL.

Hot paths use SQLAlchemy Core statements prebuilt per kind (statements.py) on a pooled
connection, one statement per call where the contract allows, and build records straight
from rows; no ORM Session is involved. Gets by key, creates, counts and bulk writes run
on the DBAPI connection directly (fastread.py; SQLite files and PostgreSQL). Other
PostgreSQL reads use a second, autocommit pool without pre-ping (retried once on a
dropped connection); streams fetch rows undecoded and convert each when yielded.
`engine` and `SessionLocal` are exposed for callers who want the ORM models (models.py);
on `sqlite:///:memory:` there is one shared connection, so ORM sessions must not be used
from several threads at once (the backend's own calls are serialised by a lock).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, ClassVar, TypeVar

from sqlalchemy import Connection, bindparam, func, select, tuple_, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import sessionmaker

from storage_core.codec import utcnow
from storage_core.config import Settings, mask_url
from storage_core.errors import ConflictError, StorageError
from storage_core.interface import ArchivedEntry, ArchiveStore, Capability, StorageBackend
from storage_core.kinds import KINDS, KindSpec
from storage_core.validation import Filters
from webvh_storage_sqlalchemy import migrations
from webvh_storage_sqlalchemy.engine import (
    SQLITE_AUTOCOMMIT_OPTION,
    SQLITE_BEGIN_OPTION,
    build_engine,
)
from webvh_storage_sqlalchemy.errors import translate
from webvh_storage_sqlalchemy.fastread import ReadConnections
from webvh_storage_sqlalchemy.models import KIND_TABLES, archive_table
from webvh_storage_sqlalchemy.statements import KindStatements, dialect_insert

#: Rows per executemany call in bulk writes (bounds memory; one transaction for all).
BULK_CHUNK_ROWS = 1000
T = TypeVar("T")


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class SQLAlchemyBackend(StorageBackend, ArchiveStore):
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {
            Capability.SQL_SESSIONS,
            Capability.SERVER_SIDE_CURSORS,
            Capability.PERSISTENT,
            Capability.ARCHIVE,
        }
    )

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._secrets = settings.secrets
        self._url = settings.url or settings.env_sql_url
        self._closed = True
        try:
            bundle = build_engine(settings)
        except Exception as exc:
            raise translate(exc, self._secrets, action="opening the database") from None
        self.engine = bundle.engine
        self.dialect = bundle.dialect
        self.in_memory = bundle.in_memory
        self._lock = bundle.lock
        self._extra_engine = bundle.read_engine
        self.SessionLocal = sessionmaker(bind=self.engine, expire_on_commit=False)
        caps = set(type(self).capabilities)
        if self.dialect == "sqlite":
            caps.discard(Capability.SERVER_SIDE_CURSORS)
            # Writes take the lock up front; reads need no transaction at all.
            self._write_engine = self.engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
            self._read_engine = self.engine.execution_options(**{SQLITE_AUTOCOMMIT_OPTION: True})
        else:
            self._write_engine = self.engine
            self._read_engine = bundle.read_engine or self.engine
        if self.in_memory:
            caps.discard(Capability.PERSISTENT)
        self.capabilities = frozenset(caps)  # type: ignore[misc]  # narrowed per instance
        self._statements = {
            name: KindStatements(spec, KIND_TABLES[name], self.dialect)
            for name, spec in KINDS.items()
        }
        self._archive_insert = dialect_insert(self.dialect)
        # SQLite files: reads by key skip SQLAlchemy's layers (see fastread.py).
        self._readers = (
            ReadConnections(self.engine, settings.pool_size)
            if self.dialect == "sqlite" and not self.in_memory
            else None
        )
        self._direct_engine = bundle.direct_engine
        if self._direct_engine is not None:  # PostgreSQL gets by key, likewise (fastread.py)
            self._readers = ReadConnections(
                self._direct_engine,
                settings.pool_size,
                limit=settings.pool_size + settings.max_overflow,
                timeout=settings.pool_timeout,
            )
        self._get_params = (
            (lambda key: {"key": key}) if self.dialect == "postgresql" else (lambda key: (key,))
        )
        self._closed = False

    def _error(
        self, exc: BaseException, action: str, spec: KindSpec | None = None, key: str | None = None
    ) -> Exception:
        return translate(
            exc, self._secrets, kind=spec.name if spec else None, key=key, action=action
        )

    def _read(self, work: Callable[[Connection], T]) -> T:
        """Run `work` on a read connection. The PostgreSQL read pool has no pre-ping: a
        stale pooled connection (server restart, failover) fails the first attempt,
        SQLAlchemy invalidates the pool, and the read runs once more on a new one."""
        try:
            with self._lock, self._read_engine.connect() as conn:
                return work(conn)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        with self._lock, self._read_engine.connect() as conn:
            return work(conn)

    # --- lifecycle ---------------------------------------------------------------------
    async def provision(self, recreate: bool = False) -> None:
        try:
            with self._lock:
                migrations.provision(self._write_engine, recreate=recreate)
        except Exception as exc:
            raise self._error(exc, "provisioning") from None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._readers is not None:
                self._readers.close()
            if self._extra_engine is not None:
                self._extra_engine.dispose()
            if self._direct_engine is not None:
                self._direct_engine.dispose()
            self.engine.dispose()

    def flush(self) -> None:
        """SQLite: copy the write-ahead log into the database file, synced to disk (after
        a bulk load with synchronous=NORMAL). PostgreSQL commits are durable already."""
        if self.dialect != "sqlite" or self.in_memory:
            return
        try:
            with self._lock:
                connection = self.engine.raw_connection()  # autocommit: outside BEGIN
                try:
                    busy, _, _ = (
                        connection.cursor().execute("PRAGMA wal_checkpoint(FULL)").fetchone()
                    )
                finally:
                    connection.close()
        except Exception as exc:
            raise self._error(exc, "checkpointing the database") from None
        if busy:
            raise StorageError("could not checkpoint the SQLite database: another process holds it")

    def health_check(self) -> bool:
        try:
            return self._read(lambda conn: conn.exec_driver_sql("SELECT 1").scalar() == 1)
        except Exception:
            return False

    def describe(self) -> dict[str, Any]:
        with self._lock:
            revision = migrations.describe_revision(self.engine)
        return {
            "backend": self.name,
            "url": mask_url(self._url),
            "dialect": self.dialect,
            "schema_revision": revision,
        }

    def __repr__(self) -> str:
        return f"SQLAlchemyBackend(url={mask_url(self._url)!r})"

    # --- single records ------------------------------------------------------------------
    def create(self, spec: KindSpec, record: Any) -> Any:
        st = self._statements[spec.name]
        if st.insert_sql is not None and self._readers is not None:  # SQLite file
            return self._create_direct(st, spec, record)
        if st.pg_insert_sql is not None and self._readers is not None:
            return self._create_pg(st, spec, record)
        try:
            with self._lock, self._write_engine.begin() as conn:
                conn.execute(st.insert, st.params(record))
        except Exception as exc:
            raise self._error(exc, f"creating {spec.name}", spec, spec.key_of(record)) from None
        return record

    def _create_direct(self, st: KindStatements, spec: KindSpec, record: Any) -> Any:
        """SQLite: the compiled INSERT in a BEGIN IMMEDIATE transaction on a DBAPI
        connection of the engine (fastread.py); SQLAlchemy's layers cost about as much
        as the insert itself."""
        readers = self._readers
        assert readers is not None
        try:
            conn = readers.acquire()
        except Exception as exc:
            raise self._error(exc, f"creating {spec.name}", spec, spec.key_of(record)) from None
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(st.insert_sql, st.to_raw_params(record))
            conn.execute("COMMIT")
        except Exception as exc:
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except Exception:  # the connection is thrown away
                readers.discard(conn)
            else:
                readers.release(conn)
            raise self._error(exc, f"creating {spec.name}", spec, spec.key_of(record)) from None
        readers.release(conn)
        return record

    def _create_pg(self, st: KindStatements, spec: KindSpec, record: Any) -> Any:
        """PostgreSQL: the compiled INSERT as one autocommit statement on a kept
        connection (fastread.py): one round trip, where BEGIN + INSERT + COMMIT on a
        pre-pinged pooled connection took four. A connection the server closed while
        idle is noticed before use; a failure after sending is not retried."""
        readers = self._readers
        assert readers is not None
        key = spec.key_of(record)
        try:
            conn = readers.acquire()
        except Exception as exc:
            raise self._error(exc, f"creating {spec.name}", spec, key) from None
        try:
            readers.execute(conn, st.pg_insert_sql, st.to_pg_params(record))
        except Exception as exc:
            if readers.is_disconnect(exc, conn):
                readers.discard(conn)
            else:
                readers.release(conn)
            raise self._error(exc, f"creating {spec.name}", spec, key) from None
        readers.release(conn)
        return record

    def get(self, spec: KindSpec, key: str) -> Any | None:
        st = self._statements[spec.name]
        if self._readers is not None:
            return self._get_direct(st, spec, key)
        try:
            row = self._read(lambda conn: conn.execute(st.get, {"key": key}).first())
        except Exception as exc:
            raise self._error(exc, f"reading {spec.name}") from None
        return None if row is None else st.to_record(row)

    def _get_direct(self, st: KindStatements, spec: KindSpec, key: str) -> Any | None:
        row = self._fetch_one_direct(st.get_sql, self._get_params(key), f"reading {spec.name}")
        return None if row is None else st.from_raw_row(row)

    def _fetch_one_direct(self, sql: str, params: Any, action: str) -> Any:
        """One row of a read on a kept DBAPI connection (fastread.py), retried once if
        the server had dropped the connection."""
        readers = self._readers
        assert readers is not None
        for attempt in (1, 2):
            try:
                conn = readers.acquire()
            except Exception as exc:
                raise self._error(exc, action) from None
            try:
                row = readers.fetch_one(conn, sql, params)
            except Exception as exc:
                readers.discard(conn)
                if attempt == 1 and readers.is_disconnect(exc, conn):
                    readers.drop_idle()  # the server dropped us: the others are stale too
                    continue
                raise self._error(exc, action) from None
            readers.release(conn)
            return row
        raise AssertionError("unreachable")

    def _count_direct(self, spec: KindSpec, filters: Filters) -> int:
        """count(*) with equality filters as driver SQL on a kept connection: the query
        is an index lookup, several times cheaper than SQLAlchemy's layers around it."""
        quote = self.engine.dialect.identifier_preparer.quote
        mark = "?" if self.dialect == "sqlite" else "%s"
        where, params = [], []
        for name, values in filters.items():
            column = quote(KIND_TABLES[spec.name].c[name].name)
            if len(values) == 1:
                where.append(f"{column} = {mark}")
            else:
                where.append(f"{column} IN ({', '.join([mark] * len(values))})")
            params.extend(values)
        sql = f"SELECT count(*) FROM {quote(spec.table)}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return int(self._fetch_one_direct(sql, params, f"counting {spec.name}")[0])

    def update(
        self,
        spec: KindSpec,
        key: str,
        changes: dict[str, Any],
        now: datetime,
        expected_version: int | None = None,
    ) -> Any | None:
        st = self._statements[spec.name]
        values = dict(changes)
        if spec.timestamps:
            values["updated_at"] = now
        values["record_version"] = st.version + 1
        stmt = update(st.table).where(st.key_column == bindparam("key"))
        if expected_version is not None:
            stmt = stmt.where(st.version == expected_version)
        stmt = stmt.values(values).returning(*st.columns)
        try:
            with self._lock, self._write_engine.begin() as conn:
                row = conn.execute(stmt, {"key": key}).first()
                if row is not None:
                    return st.to_record(row)
                actual = conn.execute(st.get_version, {"key": key}).scalar()
        except Exception as exc:
            raise self._error(exc, f"updating {spec.name}", spec, key) from None
        if actual is None:
            return None
        raise ConflictError(spec.name, key, expected_version or 0, actual)

    def upsert(self, spec: KindSpec, record: Any, expected_version: int | None = None) -> Any:
        st = self._statements[spec.name]
        key = spec.key_of(record)
        try:
            with self._lock, self._write_engine.begin() as conn:
                if expected_version is None:
                    row = conn.execute(st.upsert, st.params(record)).first()
                elif expected_version == 0:
                    row = conn.execute(st.insert_if_absent, st.params(record)).first()
                else:
                    stmt = (
                        update(st.table)
                        .where(st.key_column == bindparam("key"), st.version == expected_version)
                        .values({**st.data_params(record), "record_version": st.version + 1})
                        .returning(*st.columns)
                    )
                    row = conn.execute(stmt, {"key": key}).first()
                if row is not None:
                    return st.to_record(row)
                actual = conn.execute(st.get_version, {"key": key}).scalar()
        except Exception as exc:
            raise self._error(exc, f"writing {spec.name}", spec, key) from None
        raise ConflictError(spec.name, key, expected_version or 0, actual)

    def delete(self, spec: KindSpec, key: str) -> bool:
        st = self._statements[spec.name]
        try:
            with self._lock, self._write_engine.begin() as conn:
                return conn.execute(st.delete, {"key": key}).rowcount > 0
        except Exception as exc:
            raise self._error(exc, f"deleting {spec.name}") from None

    # --- many records --------------------------------------------------------------------
    def list(self, spec: KindSpec, filters: Filters, limit: int | None, offset: int) -> list[Any]:
        st = self._statements[spec.name]
        stmt = st.listing(filters)
        if limit is not None:
            stmt = stmt.limit(limit)
        if offset:
            stmt = stmt.offset(offset)
        try:
            rows = self._read(lambda conn: conn.execute(stmt).all())
        except Exception as exc:
            raise self._error(exc, f"listing {spec.name}") from None
        to_record = st.to_record
        return [to_record(row) for row in rows]

    def count(self, spec: KindSpec, filters: Filters) -> int:
        if any(not values for values in filters.values()):
            return 0
        if self._readers is not None:
            return self._count_direct(spec, filters)
        st = self._statements[spec.name]
        stmt = st.count.where(*st.where(filters)) if filters else st.count
        try:
            return int(self._read(lambda conn: conn.execute(stmt).scalar_one()))
        except Exception as exc:
            raise self._error(exc, f"counting {spec.name}") from None

    def stream(self, spec: KindSpec, filters: Filters, batch_size: int) -> Iterator[Any]:
        if self.dialect == "postgresql":
            return self._stream_server_side(spec, filters, batch_size)
        return self._stream_keyset(spec, filters, batch_size)

    def _stream_server_side(
        self, spec: KindSpec, filters: Filters, batch_size: int
    ) -> Iterator[Any]:
        """One named (server-side) cursor; the connection is released in `finally`,
        also when the caller abandons the generator."""
        st = self._statements[spec.name]
        stmt = select(*st.stream_columns).where(*st.where(filters)).order_by(st.seq)
        to_record = st.stream_record  # JSON fetched as text, decoded per yielded row
        try:
            with self.engine.connect() as conn:
                result = conn.execution_options(yield_per=batch_size).execute(stmt)
                try:
                    for row in result:
                        yield to_record(row)
                finally:
                    result.close()
        except Exception as exc:
            raise self._error(exc, f"streaming {spec.name}") from None

    def _stream_keyset(self, spec: KindSpec, filters: Filters, batch_size: int) -> Iterator[Any]:
        """Pages of `seq > last ORDER BY seq LIMIT batch`: no connection (or :memory:
        lock) is held between batches, so the caller may write while iterating."""
        st = self._statements[spec.name]
        stmt = (
            select(*st.stream_columns, st.seq)
            .where(*st.where(filters), st.seq > bindparam("after"))
            .order_by(st.seq)
            .limit(batch_size)
        )
        to_record = st.stream_record  # converts a row when it is yielded, not before
        after = 0
        while True:
            try:
                with self._lock, self._read_engine.connect() as conn:
                    rows = conn.execute(stmt, {"after": after}).all()
            except Exception as exc:
                raise self._error(exc, f"streaming {spec.name}") from None
            for row in rows:
                yield to_record(row)
            if len(rows) < batch_size:
                return
            after = rows[-1][-1]

    def bulk_upsert(self, spec: KindSpec, records: Sequence[Any]) -> int:
        st = self._statements[spec.name]
        try:
            with self._lock, self._write_engine.begin() as conn:
                if st.bulk_upsert_sql is not None:  # SQLite: executemany in C (fastread.py)
                    cursor = conn.connection.dbapi_connection.cursor()
                    try:
                        cursor.executemany(st.bulk_upsert_sql, map(st.to_raw_params, records))
                    finally:
                        cursor.close()
                elif st.pg_bulk_upsert is not None:  # PostgreSQL: many rows per statement
                    from psycopg2.extras import execute_values

                    sql, template = st.pg_bulk_upsert
                    cursor = conn.connection.dbapi_connection.cursor()
                    try:
                        for chunk in _chunks(records, BULK_CHUNK_ROWS):
                            execute_values(
                                cursor,
                                sql,
                                [st.to_pg_params(r) for r in chunk],
                                template=template,
                                page_size=BULK_CHUNK_ROWS,
                            )
                    finally:
                        cursor.close()
                else:
                    for chunk in _chunks(records, BULK_CHUNK_ROWS):
                        conn.execute(st.bulk_upsert, [st.params(r) for r in chunk])
        except Exception as exc:
            raise self._error(exc, f"bulk writing {spec.name}") from None
        return len(records)

    # --- archive (Capability.ARCHIVE: the migration's verbatim entries) -----------------
    def archive_upsert(self, entries: Sequence[ArchivedEntry]) -> int:
        insert = self._archive_insert(archive_table)
        stmt = insert.on_conflict_do_update(
            index_elements=[archive_table.c.category, archive_table.c.name],
            set_={n: insert.excluded[n] for n in ("value", "tags", "archived_at")},
        )
        now = utcnow()
        try:
            with self._lock, self._write_engine.begin() as conn:
                for chunk in _chunks(entries, BULK_CHUNK_ROWS):
                    conn.execute(
                        stmt,
                        [
                            {
                                "category": e.category,
                                "name": e.name,
                                "value": e.value,
                                "tags": dict(e.tags),
                                "archived_at": now,
                            }
                            for e in chunk
                        ],
                    )
        except Exception as exc:
            raise self._error(exc, "archiving entries") from None
        return len(entries)

    def archive_get(self, category: str, names: Sequence[str]) -> dict[str, ArchivedEntry]:
        t = archive_table
        stmt = select(t.c.category, t.c.name, t.c.value, t.c.tags).where(
            t.c.category == category, t.c.name.in_(bindparam("names", expanding=True))
        )
        found: dict[str, ArchivedEntry] = {}
        try:
            for chunk in _chunks(names, BULK_CHUNK_ROWS):
                rows = self._read(
                    lambda conn, c=chunk: conn.execute(stmt, {"names": list(c)}).all()
                )
                for c, n, v, tags in rows:
                    found[n] = ArchivedEntry(c, n, v, tags or {})
        except Exception as exc:
            raise self._error(exc, "reading the archive") from None
        return found

    def archive_stream(
        self, category: str | None = None, batch_size: int = 500
    ) -> Iterator[ArchivedEntry]:
        """Keyset pages ordered by (category, name)."""
        t = archive_table
        stmt = select(t.c.category, t.c.name, t.c.value, t.c.tags)
        if category is not None:
            stmt = stmt.where(t.c.category == category)
        stmt = stmt.order_by(t.c.category, t.c.name).limit(batch_size)
        after: tuple[str, str] | None = None
        while True:
            page = stmt
            if after is not None:
                page = stmt.where(tuple_(t.c.category, t.c.name) > tuple_(*after))
            try:
                with self._lock, self._read_engine.connect() as conn:
                    rows = conn.execute(page).all()
            except Exception as exc:
                raise self._error(exc, "reading the archive") from None
            yield from (ArchivedEntry(c, n, v, tags or {}) for c, n, v, tags in rows)
            if len(rows) < batch_size:
                return
            after = (rows[-1][0], rows[-1][1])

    def archive_count(self, category: str | None = None) -> int:
        stmt = select(func.count()).select_from(archive_table)
        if category is not None:
            stmt = stmt.where(archive_table.c.category == category)
        try:
            with self._lock, self._read_engine.connect() as conn:
                return int(conn.execute(stmt).scalar_one())
        except Exception as exc:
            raise self._error(exc, "counting the archive") from None
