"""What each operation is compared with, all doing the same work on the same store.

Every driver here offers the same seven operations as `Ours` (the StorageManager):

    get(scid) -> LogEntry | None        page(namespace, offset) -> list[LogEntry] (50)
    count(namespace) -> int             create(entry) -> LogEntry
    update(scid, logs) -> LogEntry      bulk(entries) -> int (one transaction)
    stream(batch) -> int (rows read)

and returns the same thing (a `LogEntry`, JSON decoded with orjson, timestamps as aware
UTC datetimes), so a ratio measures only what our layers add:

- `SqliteRaw`: the stdlib `sqlite3` module on the same file, with the pragmas the
  SQLAlchemy backend sets (WAL, synchronous=FULL, busy_timeout, autocommit reads,
  BEGIN IMMEDIATE writes), hand-written SQL on the backend's own schema.
- `PostgresRaw`: `psycopg2` on the same database, one connection in autocommit mode
  (a single-statement call is one round trip), orjson registered as the `json` decoder,
  `execute_values` in one transaction for bulk, a named (server-side) cursor for the
  stream.
- `AskarRaw`: aries-askar calls on the same store from an asyncio loop in this thread
  (one coroutine per block of calls: what an async server does), same layout as the
  backend (category, name, JSON value, tags); reads reuse one open session, writes
  open a session (create) or a transaction (update, bulk) per call.
- `Seed` ("original"): the original storage manager's pattern on the original manager's
  own engine configuration (`original_sessions`: a plain `create_engine(url)` with the
  library defaults, no BEGIN hook, no tuned pool, `sessionmaker(autoflush=False)`) and the
  backend's ORM models: a new ORM `Session` per call,
  `session.query(Model).filter(Model.scid == x).first()`, `commit()` + `refresh()` per
  write.
- `Peer` ("advanced-alchemy"): what a user would pick instead of this library,
  advanced-alchemy's `SQLAlchemySyncRepository` over the same ORM model, one session per
  call (a request), on its own `SQLAlchemySyncConfig` engine. Optional: the `bench`
  dependency group (`uv sync --group bench`); without it the column is skipped.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Coroutine, Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

from storage_core import kinds as K
from storage_core.codec import record_to_dict
from storage_core.records import LogEntry

PAGE = 50
_COLS = (
    "scid, did, domain, namespace, identifier, logs, deactivated, created_at, updated_at, "
    "record_version"
)
_FIELDS = K.LOG_ENTRY.all_fields


def now() -> datetime:
    return datetime.now(UTC)


class Ours:
    """The public API: StorageManager methods, exactly as a server calls them."""

    name = "ours"

    def __init__(self, manager: Any) -> None:
        self.m = manager

    def get(self, scid: str) -> LogEntry | None:
        return self.m.get_log_entry(scid)

    def page(self, namespace: str, offset: int) -> list[LogEntry]:
        return self.m.get_log_entries({"namespace": namespace}, limit=PAGE, offset=offset)

    def count(self, namespace: str) -> int:
        return self.m.count_log_entries({"namespace": namespace})

    def create(self, e: LogEntry) -> LogEntry:
        return self.m.create_log_entry(
            e.scid, e.did, e.domain, e.namespace, e.identifier, e.logs, e.deactivated
        )

    def update(self, scid: str, logs: list[Any]) -> LogEntry | None:
        return self.m.update_log_entry(scid, logs=logs)

    def bulk(self, entries: list[LogEntry]) -> int:
        return self.m.bulk_upsert("log_entry", entries)

    def stream(self, batch: int = 500) -> int:
        n = 0
        for _ in self.m.stream_records("log_entry", batch_size=batch):
            n += 1
        return n


# --- SQLite ------------------------------------------------------------------------------
def _sqlite_ts(value: datetime) -> str:
    """What SQLAlchemy's SQLite DateTime stores: naive UTC, microseconds."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _sqlite_row(r: tuple) -> LogEntry:
    return LogEntry(
        scid=r[0],
        did=r[1],
        domain=r[2],
        namespace=r[3],
        identifier=r[4],
        logs=orjson.loads(r[5]),
        deactivated=bool(r[6]),
        created_at=datetime.fromisoformat(r[7]).replace(tzinfo=UTC),
        updated_at=datetime.fromisoformat(r[8]).replace(tzinfo=UTC),
        record_version=r[9],
    )


_SQLITE_NEXT_SEQ = "(SELECT COALESCE(MAX(seq), 0) + 1 FROM log_entries)"


class SqliteRaw:
    name = "raw"

    def __init__(self, path: str, synchronous: str = "FULL", busy_ms: int = 30_000) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA busy_timeout={busy_ms}")
        self.db.execute(f"PRAGMA synchronous={synchronous}")
        self.db.execute("PRAGMA foreign_keys=ON")

    def close(self) -> None:
        self.db.close()

    def get(self, scid: str) -> LogEntry | None:
        row = self.db.execute(f"SELECT {_COLS} FROM log_entries WHERE scid = ?", (scid,)).fetchone()
        return None if row is None else _sqlite_row(row)

    def page(self, namespace: str, offset: int) -> list[LogEntry]:
        rows = self.db.execute(
            f"SELECT {_COLS} FROM log_entries WHERE namespace = ? ORDER BY seq LIMIT ? OFFSET ?",
            (namespace, PAGE, offset),
        ).fetchall()
        return [_sqlite_row(r) for r in rows]

    def count(self, namespace: str) -> int:
        return self.db.execute(
            "SELECT count(*) FROM log_entries WHERE namespace = ?", (namespace,)
        ).fetchone()[0]

    def create(self, e: LogEntry) -> LogEntry:
        ts = now()
        text = _sqlite_ts(ts)
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                f"INSERT INTO log_entries ({_COLS}, seq) VALUES "
                f"(?, ?, ?, ?, ?, ?, ?, ?, ?, 1, {_SQLITE_NEXT_SEQ})",
                (
                    e.scid,
                    e.did,
                    e.domain,
                    e.namespace,
                    e.identifier,
                    orjson.dumps(e.logs).decode(),
                    e.deactivated,
                    text,
                    text,
                ),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return LogEntry(
            scid=e.scid,
            did=e.did,
            domain=e.domain,
            namespace=e.namespace,
            identifier=e.identifier,
            logs=e.logs,
            deactivated=e.deactivated,
            created_at=ts,
            updated_at=ts,
            record_version=1,
        )

    def update(self, scid: str, logs: list[Any]) -> LogEntry | None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute(
                "UPDATE log_entries SET logs = ?, updated_at = ?, "
                f"record_version = record_version + 1 WHERE scid = ? RETURNING {_COLS}",
                (orjson.dumps(logs).decode(), _sqlite_ts(now()), scid),
            ).fetchone()
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return None if row is None else _sqlite_row(row)

    def bulk(self, entries: list[LogEntry]) -> int:
        db = self.db
        rows = [
            (
                e.scid,
                e.did,
                e.domain,
                e.namespace,
                e.identifier,
                orjson.dumps(e.logs).decode(),
                e.deactivated,
                _sqlite_ts(e.created_at),
                _sqlite_ts(e.updated_at),
                e.record_version,
            )
            for e in entries
        ]
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                f"INSERT INTO log_entries ({_COLS}, seq) VALUES "
                f"(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, {_SQLITE_NEXT_SEQ}) "
                "ON CONFLICT (scid) DO UPDATE SET did = excluded.did, domain = excluded.domain, "
                "namespace = excluded.namespace, identifier = excluded.identifier, "
                "logs = excluded.logs, deactivated = excluded.deactivated, "
                "created_at = excluded.created_at, updated_at = excluded.updated_at, "
                "record_version = excluded.record_version",
                rows,
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return len(rows)

    def stream(self, batch: int = 500) -> int:
        cur = self.db.execute(f"SELECT {_COLS} FROM log_entries ORDER BY seq")
        n = 0
        while rows := cur.fetchmany(batch):
            for r in rows:
                _sqlite_row(r)
                n += 1
        cur.close()
        return n


# --- PostgreSQL ----------------------------------------------------------------------------
def _pg_row(r: tuple) -> LogEntry:
    return LogEntry(
        scid=r[0],
        did=r[1],
        domain=r[2],
        namespace=r[3],
        identifier=r[4],
        logs=r[5],  # decoded by the orjson json typecaster
        deactivated=r[6],
        created_at=r[7].astimezone(UTC),
        updated_at=r[8].astimezone(UTC),
        record_version=r[9],
    )


class PostgresRaw:
    """One psycopg2 connection in autocommit mode: a single-statement read or write is
    one round trip (what a hand-written server would do); bulk and stream open an
    explicit transaction."""

    name = "raw"

    def __init__(self, dsn: str) -> None:
        import psycopg2
        import psycopg2.extras

        self.db = psycopg2.connect(dsn)
        psycopg2.extras.register_default_json(self.db, loads=orjson.loads)
        self.db.autocommit = True
        self._n = 0

    def close(self) -> None:
        self.db.close()

    def _one(self, sql: str, params: tuple) -> Any:
        with self.db.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchone()

    def get(self, scid: str) -> LogEntry | None:
        row = self._one(f"SELECT {_COLS} FROM log_entries WHERE scid = %s", (scid,))
        return None if row is None else _pg_row(row)

    def page(self, namespace: str, offset: int) -> list[LogEntry]:
        with self.db.cursor() as cur:
            cur.execute(
                f"SELECT {_COLS} FROM log_entries WHERE namespace = %s ORDER BY seq "
                "LIMIT %s OFFSET %s",
                (namespace, PAGE, offset),
            )
            rows = cur.fetchall()
        return [_pg_row(r) for r in rows]

    def count(self, namespace: str) -> int:
        return self._one("SELECT count(*) FROM log_entries WHERE namespace = %s", (namespace,))[0]

    def create(self, e: LogEntry) -> LogEntry:
        ts = now()
        with self.db.cursor() as cur:
            cur.execute(
                f"INSERT INTO log_entries ({_COLS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 1)",
                (
                    e.scid,
                    e.did,
                    e.domain,
                    e.namespace,
                    e.identifier,
                    orjson.dumps(e.logs).decode(),
                    e.deactivated,
                    ts,
                    ts,
                ),
            )
        return LogEntry(
            scid=e.scid,
            did=e.did,
            domain=e.domain,
            namespace=e.namespace,
            identifier=e.identifier,
            logs=e.logs,
            deactivated=e.deactivated,
            created_at=ts,
            updated_at=ts,
            record_version=1,
        )

    def update(self, scid: str, logs: list[Any]) -> LogEntry | None:
        row = self._one(
            "UPDATE log_entries SET logs = %s, updated_at = %s, "
            f"record_version = record_version + 1 WHERE scid = %s RETURNING {_COLS}",
            (orjson.dumps(logs).decode(), now(), scid),
        )
        return None if row is None else _pg_row(row)

    def bulk(self, entries: list[LogEntry]) -> int:
        from psycopg2.extras import execute_values

        rows = [
            (
                e.scid,
                e.did,
                e.domain,
                e.namespace,
                e.identifier,
                orjson.dumps(e.logs).decode(),
                e.deactivated,
                e.created_at,
                e.updated_at,
                e.record_version,
            )
            for e in entries
        ]
        with self.db.cursor() as cur:
            cur.execute("BEGIN")
            try:
                execute_values(
                    cur,
                    f"INSERT INTO log_entries ({_COLS}) VALUES %s "
                    "ON CONFLICT (md5(scid)) DO UPDATE "
                    "SET did = excluded.did, domain = excluded.domain, "
                    "namespace = excluded.namespace, identifier = excluded.identifier, "
                    "logs = excluded.logs, deactivated = excluded.deactivated, "
                    "created_at = excluded.created_at, updated_at = excluded.updated_at, "
                    "record_version = excluded.record_version",
                    rows,
                    page_size=1000,
                )
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return len(rows)

    def stream(self, batch: int = 500) -> int:
        self._n += 1
        n = 0
        self.db.autocommit = False  # a named (server-side) cursor needs a transaction
        try:
            with self.db.cursor(name=f"bench_stream_{self._n}") as cur:
                cur.itersize = batch
                cur.execute(f"SELECT {_COLS} FROM log_entries ORDER BY seq")
                for r in cur:
                    _pg_row(r)
                    n += 1
            self.db.commit()
        finally:
            self.db.autocommit = True
        return n


# --- Askar ---------------------------------------------------------------------------------
CATEGORY = K.LOG_ENTRY.category


def _askar_tags(d: dict[str, Any]) -> dict[str, str]:
    return {
        "scid": d["scid"],
        "did": d["did"],
        "domain": d["domain"],
        "namespace": d["namespace"],
        "identifier": d["identifier"],
        "deactivated": "true" if d["deactivated"] else "false",
    }


def _askar_record(raw: Any) -> LogEntry:
    d = orjson.loads(raw)
    d["created_at"] = datetime.fromisoformat(d["created_at"])
    d["updated_at"] = datetime.fromisoformat(d["updated_at"])
    return LogEntry(**d)


class AskarRaw:
    """aries-askar on the same store; every block of calls is one coroutine."""

    name = "raw"

    def __init__(self, uri: str) -> None:
        from aries_askar import Store

        self.loop = asyncio.new_event_loop()
        self.store = self.run(Store.open(uri, "none"))
        self._session: Any = None

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        if self._session is not None:
            self.run(self._session.close())
        self.run(self.store.close())
        self.loop.close()

    # Every op is a coroutine; run_many runs a block of them in one coroutine. Reads
    # reuse one long-lived session (no open/close per call): the fastest direct use.
    async def _reader(self) -> Any:
        if self._session is None:
            self._session = await self.store.session()
        return self._session

    async def get(self, scid: str) -> LogEntry | None:
        entry = await (await self._reader()).fetch(CATEGORY, scid)
        return None if entry is None else _askar_record(entry.raw_value)

    async def page(self, namespace: str, offset: int) -> list[LogEntry]:
        wql = {"namespace": namespace}
        if offset == 0:  # one round trip
            entries = await (await self._reader()).fetch_all(CATEGORY, wql, PAGE, order_by="id")
            return [_askar_record(e.raw_value) for e in entries]
        scan = self.store.scan(CATEGORY, wql, offset=offset, limit=PAGE, order_by="id")
        return [_askar_record(e.raw_value) async for e in scan]

    async def count(self, namespace: str) -> int:
        return await (await self._reader()).count(CATEGORY, {"namespace": namespace})

    async def create(self, e: LogEntry) -> LogEntry:
        ts = now()
        rec = LogEntry(
            scid=e.scid,
            did=e.did,
            domain=e.domain,
            namespace=e.namespace,
            identifier=e.identifier,
            logs=e.logs,
            deactivated=e.deactivated,
            created_at=ts,
            updated_at=ts,
            record_version=1,
        )
        d = record_to_dict(K.LOG_ENTRY, rec)
        async with self.store.session() as s:
            await s.insert(CATEGORY, e.scid, orjson.dumps(d), _askar_tags(d))
        return rec

    async def update(self, scid: str, logs: list[Any]) -> LogEntry | None:
        async with self.store.transaction() as t:
            entry = await t.fetch(CATEGORY, scid, for_update=True)
            if entry is None:
                return None
            d = orjson.loads(entry.raw_value)
            d["logs"] = logs
            d["updated_at"] = now().isoformat()
            d["record_version"] += 1
            await t.replace(CATEGORY, scid, orjson.dumps(d), _askar_tags(d))
            await t.commit()
        d["created_at"] = datetime.fromisoformat(d["created_at"])
        d["updated_at"] = datetime.fromisoformat(d["updated_at"])
        return LogEntry(**d)

    async def bulk(self, entries: list[LogEntry]) -> int:
        """Into an empty store: plain inserts in one transaction (the least work an
        import can do; our bulk_upsert must also handle existing keys)."""
        async with self.store.transaction() as t:
            for e in entries:
                d = record_to_dict(K.LOG_ENTRY, e)
                await t.insert(CATEGORY, e.scid, orjson.dumps(d), _askar_tags(d))
            await t.commit()
        return len(entries)

    async def stream(self, batch: int = 500) -> int:
        n = 0
        async for e in self.store.scan(CATEGORY, order_by="id"):
            _askar_record(e.raw_value)
            n += 1
        return n


# --- the seed's pattern --------------------------------------------------------------------
def original_sessions(url: str, *, sqlite_synchronous: str | None = None) -> Any:
    """(engine, session factory) as the original storage manager built them: a plain
    `create_engine(url)` (library defaults: QueuePool, no pre-ping, the driver's own
    transaction handling) and a sessionmaker. `sqlite_synchronous` sets that pragma on
    each connection, for the row that compares ours at synchronous=NORMAL with the same
    durability."""
    from sqlalchemy import create_engine, event
    from sqlalchemy.orm import sessionmaker

    engine = create_engine(url)
    if sqlite_synchronous is not None:

        @event.listens_for(engine, "connect")
        def _pragma(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute(f"PRAGMA synchronous={sqlite_synchronous}")

    return engine, sessionmaker(autoflush=False, bind=engine)


class Seed:
    """The original storage manager: a Session per call, ORM query, commit + refresh."""

    name = "original"

    def __init__(self, url: str, model: Any, *, sqlite_synchronous: str | None = None) -> None:
        self.engine, self.SessionLocal = original_sessions(
            url, sqlite_synchronous=sqlite_synchronous
        )
        self.Model = model

    def close(self) -> None:
        self.engine.dispose()

    def get(self, scid: str) -> Any:
        M = self.Model
        with self.SessionLocal() as session:
            return session.query(M).filter(M.scid == scid).first()

    def page(self, namespace: str, offset: int) -> list[Any]:
        M = self.Model
        with self.SessionLocal() as session:
            return (
                session.query(M)
                .filter(M.namespace == namespace)
                .order_by(M.seq)
                .offset(offset)
                .limit(PAGE)
                .all()
            )

    def count(self, namespace: str) -> int:
        M = self.Model
        with self.SessionLocal() as session:
            return session.query(M).filter(M.namespace == namespace).count()

    def create(self, e: LogEntry) -> Any:
        ts = now()
        row = self.Model(
            scid=e.scid,
            did=e.did,
            domain=e.domain,
            namespace=e.namespace,
            identifier=e.identifier,
            logs=e.logs,
            deactivated=e.deactivated,
            created_at=ts,
            updated_at=ts,
            record_version=1,
        )
        with self.SessionLocal() as session:
            session.add(row)
            session.commit()
            session.refresh(row)
            return row

    def update(self, scid: str, logs: list[Any]) -> Any:
        M = self.Model
        with self.SessionLocal() as session:
            row = session.query(M).filter(M.scid == scid).first()
            if row is None:
                return None
            row.logs = logs
            row.updated_at = now()
            row.record_version = row.record_version + 1
            session.commit()
            session.refresh(row)
            return row


# --- the peer library ------------------------------------------------------------------------
def peer_available() -> bool:
    try:
        import advanced_alchemy  # noqa: F401
    except ImportError:
        return False
    return True


class Peer:
    """advanced-alchemy's sync repository: one session and repository per call, as a
    request handler would use it; `upsert_many` for bulk (it matches existing keys)."""

    name = "advanced-alchemy"

    def __init__(self, url: str, model: Any) -> None:
        from advanced_alchemy.config import SQLAlchemySyncConfig
        from advanced_alchemy.repository import SQLAlchemySyncRepository

        class Repository(SQLAlchemySyncRepository[Any]):
            model_type = model
            id_attribute = "scid"

        self.config = SQLAlchemySyncConfig(connection_string=url, create_all=False)
        # On SQLite the schema's `seq` default is a subquery, which one multi-row INSERT
        # (advanced-alchemy's native upsert) evaluates once for all rows: bulk numbers
        # the rows itself there (one MAX(seq) query per call).
        self.numbers_rows = url.startswith("sqlite")
        # On PostgreSQL its native upsert names ON CONFLICT (scid), which needs a unique
        # constraint on the key column itself; 64 KiB keys are unique through md5(key)
        # (Alembic 0008), so it runs its portable path there (select, then merge).
        self.no_merge = url.startswith("postgresql")
        self.Repository = Repository
        self.Model = model

    def close(self) -> None:
        self.config.get_engine().dispose()

    def _repo(self, session: Any) -> Any:
        return self.Repository(session=session)

    def get(self, scid: str) -> Any:
        with self.config.get_session() as session:
            return self._repo(session).get_one_or_none(self.Model.scid == scid)

    def page(self, namespace: str, offset: int) -> list[Any]:
        from advanced_alchemy.filters import LimitOffset

        M = self.Model
        with self.config.get_session() as session:
            return self._repo(session).list(
                M.namespace == namespace,
                LimitOffset(limit=PAGE, offset=offset),
                order_by=M.seq.asc(),
            )

    def count(self, namespace: str) -> int:
        with self.config.get_session() as session:
            return int(self._repo(session).count(self.Model.namespace == namespace))

    def _row(self, e: LogEntry, ts: datetime | None = None, version: int = 1) -> Any:
        return self.Model(
            scid=e.scid,
            did=e.did,
            domain=e.domain,
            namespace=e.namespace,
            identifier=e.identifier,
            logs=e.logs,
            deactivated=e.deactivated,
            created_at=ts or e.created_at,
            updated_at=ts or e.updated_at,
            record_version=version,
        )

    def create(self, e: LogEntry) -> Any:
        with self.config.get_session() as session:
            return self._repo(session).add(self._row(e, now()), auto_commit=True)

    def update(self, scid: str, logs: list[Any]) -> Any:
        with self.config.get_session() as session:
            repo = self._repo(session)
            row = repo.get_one_or_none(self.Model.scid == scid)
            if row is None:
                return None
            row.logs = logs
            row.updated_at = now()
            row.record_version = row.record_version + 1
            return repo.update(row, auto_commit=True)

    def bulk(self, entries: list[LogEntry]) -> int:
        rows = [self._row(e, version=e.record_version) for e in entries]
        with self.config.get_session() as session:
            if self.numbers_rows:
                from sqlalchemy import func, select

                top = session.scalar(select(func.coalesce(func.max(self.Model.seq), 0)))
                for i, row in enumerate(rows, start=int(top or 0) + 1):
                    row.seq = i
            self._repo(session).upsert_many(rows, auto_commit=True, no_merge=self.no_merge)
        return len(rows)


def run_many(driver: Any, method: str, args: Iterable[tuple]) -> int:
    """Call driver.method(*a) for every a; async drivers run the lot in one coroutine."""
    fn = getattr(driver, method)
    if isinstance(driver, AskarRaw):

        async def block() -> int:
            n = 0
            for a in args:
                await fn(*a)
                n += 1
            return n

        return driver.run(block())
    n = 0
    for a in args:
        fn(*a)
        n += 1
    return n


def run_one(driver: Any, method: str, *args: Any) -> Any:
    fn = getattr(driver, method)
    if isinstance(driver, AskarRaw):
        return driver.run(fn(*args))
    return fn(*args)


def same_record(a: Any, b: Any) -> bool:
    """Ours and a raw driver must return the same record (checked once per operation)."""
    return all(getattr(a, f) == getattr(b, f) for f in _FIELDS)
