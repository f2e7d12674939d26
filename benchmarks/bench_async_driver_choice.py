"""Which async driver the SQL backend's async face runs on (issue 13): asyncpg vs psycopg 3
for PostgreSQL, and aiosqlite for SQLite, each awaited directly ("raw") and through
SQLAlchemy's async engine ("sa": AsyncConnection + a Core select / insert), plus our async
face on the chosen driver ("ours": AsyncStorageManager.get_log_entry / create_log_entry).

The machine is shared and noisy: the variants run interleaved, several rounds, and the
table shows the median rate of the rounds; compare rows of one run, not across runs.

    uv sync --group bench     # psycopg 3 (the other PostgreSQL candidate)
    uv run python benchmarks/bench_async_driver_choice.py [--n 2000] [--rounds 5]
        [--pg-url postgresql://postgres@127.0.0.1:5432/postgres] [--no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
from sqlalchemy import bindparam, insert, select
from sqlalchemy.ext.asyncio import create_async_engine

from storage_core import open_async_storage
from storage_core.records import LogEntry
from webvh_storage_sqlalchemy.models import KIND_TABLES

COLS = "scid, did, domain, namespace, identifier, logs, deactivated, created_at, updated_at"
TABLE = KIND_TABLES["log_entry"]
Block = Callable[[int], Awaitable[None]]


def entry(scid: str) -> LogEntry:
    return LogEntry(
        scid=scid,
        did=f"did:webvh:{scid}:example.com",
        domain="example.com",
        namespace="ns",
        identifier=scid,
        logs=[{"versionId": "1-abc", "parameters": {"method": "did:webvh:1.0"}}],
    )


def to_record(row: Any, logs_text: bool = False) -> LogEntry:
    """The same LogEntry every variant returns (JSON decoded, aware UTC timestamps)."""
    values = dict(zip(COLS.split(", "), row, strict=True))
    if logs_text:
        values["logs"] = orjson.loads(values["logs"])
    for name in ("created_at", "updated_at"):
        value = values[name]
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        values[name] = value.astimezone(UTC)
    return LogEntry(**values, record_version=1)


async def rate(block: Block, n: int) -> float:
    started = time.perf_counter()
    await block(n)
    return n / (time.perf_counter() - started)


async def measure(variants: dict[str, Block], n: int, rounds: int) -> dict[str, float]:
    """Median ops/s of each variant, the variants interleaved round by round."""
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, block in variants.items():
            rates[name].append(await rate(block, n))
    return {name: statistics.median(values) for name, values in rates.items()}


def keys(n: int) -> list[str]:
    return [f"seed{i % n}" for i in range(n)]


# --- PostgreSQL -------------------------------------------------------------------------
def _with_db(url: str, db: str, scheme: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + db, scheme=scheme))


async def postgres(admin_url: str, n: int, rounds: int) -> list[tuple[str, str, float]]:
    import asyncpg

    db = f"webvh_bench_async_{os.getpid()}"
    admin = await asyncpg.connect(_with_db(admin_url, "postgres", "postgresql"))
    await admin.execute(f'CREATE DATABASE "{db}"')
    try:
        return await _postgres(_with_db(admin_url, db, "postgresql"), n, rounds)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.close()


async def _postgres(url: str, n: int, rounds: int) -> list[tuple[str, str, float]]:
    import asyncpg
    import psycopg

    storage = open_async_storage("sqlalchemy", url)
    await storage.provision(recreate=True)
    await storage.bulk_upsert("log_entry", [entry(f"seed{i}") for i in range(n)])
    raw_pg = await asyncpg.connect(url)
    await raw_pg.set_type_codec("json", encoder=str, decoder=orjson.loads, schema="pg_catalog")
    raw_psycopg = await psycopg.AsyncConnection.connect(url, autocommit=True)
    sa_asyncpg = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://"))
    sa_psycopg = create_async_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    get_sql = f"SELECT {COLS} FROM log_entries WHERE scid = "
    insert_sql = f"INSERT INTO log_entries ({COLS}) VALUES "
    now = datetime.now(UTC)
    logs = orjson.dumps(entry("x").logs).decode()
    counter = iter(range(10**9))

    def new_values() -> tuple[Any, ...]:
        scid = f"new{next(counter)}"
        return (scid, f"did:webvh:{scid}:x", "example.com", "ns", scid, logs, False, now, now)

    async def raw_asyncpg_get(k: int) -> None:
        for key in keys(k):
            to_record(await raw_pg.fetchrow(get_sql + "$1", key))

    async def raw_asyncpg_create(k: int) -> None:
        marks = ", ".join(f"${i}" for i in range(1, 10))
        for _ in range(k):
            await raw_pg.execute(f"{insert_sql}({marks})", *new_values())

    async def raw_psycopg_get(k: int) -> None:
        for key in keys(k):
            cur = await raw_psycopg.execute(get_sql + "%s", (key,))
            to_record(await cur.fetchone())

    async def raw_psycopg_create(k: int) -> None:
        marks = ", ".join(["%s"] * 9)
        for _ in range(k):
            await raw_psycopg.execute(f"{insert_sql}({marks})", new_values())

    def sa_get(engine: Any) -> Block:
        stmt = select(*[TABLE.c[c] for c in COLS.split(", ")]).where(
            TABLE.c.scid == bindparam("key")
        )

        async def run(k: int) -> None:
            for key in keys(k):
                async with engine.connect() as conn:
                    row = (await conn.execute(stmt, {"key": key})).first()
                    to_record(row)

        return run

    def sa_create(engine: Any) -> Block:
        async def run(k: int) -> None:
            for _ in range(k):
                values = dict(zip(COLS.split(", "), new_values(), strict=True))
                values["logs"] = entry("x").logs
                async with engine.begin() as conn:
                    await conn.execute(insert(TABLE), values)

        return run

    async def ours_get(k: int) -> None:
        for key in keys(k):
            await storage.get_log_entry(key)

    async def ours_create(k: int) -> None:
        for _ in range(k):
            await storage.create_record(entry(f"ours{next(counter)}"))

    try:
        gets = await measure(
            {
                "raw asyncpg": raw_asyncpg_get,
                "raw psycopg3": raw_psycopg_get,
                "sa asyncpg": sa_get(sa_asyncpg),
                "sa psycopg3": sa_get(sa_psycopg),
                "ours (asyncpg)": ours_get,
            },
            n,
            rounds,
        )
        creates = await measure(
            {
                "raw asyncpg": raw_asyncpg_create,
                "raw psycopg3": raw_psycopg_create,
                "sa asyncpg": sa_create(sa_asyncpg),
                "sa psycopg3": sa_create(sa_psycopg),
                "ours (asyncpg)": ours_create,
            },
            max(1, n // 4),
            rounds,
        )
    finally:
        await raw_pg.close()
        await raw_psycopg.close()
        await sa_asyncpg.dispose()
        await sa_psycopg.dispose()
        await storage.aclose()
    return [("postgres get", k, v) for k, v in gets.items()] + [
        ("postgres create", k, v) for k, v in creates.items()
    ]


# --- SQLite -----------------------------------------------------------------------------
async def sqlite(n: int, rounds: int) -> list[tuple[str, str, float]]:
    import aiosqlite

    folder = tempfile.mkdtemp(prefix="webvh_bench_async_")
    path = f"{folder}/store.db"
    storage = open_async_storage("sqlalchemy", f"sqlite:///{path}")
    await storage.provision(recreate=True)
    await storage.bulk_upsert("log_entry", [entry(f"seed{i}") for i in range(n)])
    raw = await aiosqlite.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=5000"):
        await raw.execute(f"PRAGMA {pragma}")
    sa = create_async_engine(f"sqlite+aiosqlite:///{path}")
    get_sql = f"SELECT {COLS} FROM log_entries WHERE scid = ?"
    now = datetime.now(UTC).isoformat()
    logs = orjson.dumps(entry("x").logs).decode()
    counter = iter(range(10**9))

    async def raw_get(k: int) -> None:
        for key in keys(k):
            async with raw.execute(get_sql, (key,)) as cur:
                to_record(await cur.fetchone(), logs_text=True)

    async def raw_get_one_hop(k: int) -> None:  # one hop to aiosqlite's thread, as ours
        for key in keys(k):
            rows = await raw.execute_fetchall(get_sql, (key,))
            to_record(next(iter(rows)), logs_text=True)

    async def raw_create(k: int) -> None:
        sql = (
            f"INSERT INTO log_entries ({COLS}, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "(SELECT COALESCE(MAX(seq), 0) + 1 FROM log_entries))"
        )
        for _ in range(k):
            scid = f"new{next(counter)}"
            await raw.execute(sql, (scid, f"did:{scid}", "e", "ns", scid, logs, 0, now, now))

    async def sa_get(k: int) -> None:
        for key in keys(k):
            async with sa.connect() as conn:
                await conn.exec_driver_sql(get_sql, (key,))

    async def ours_get(k: int) -> None:
        for key in keys(k):
            assert await storage.get_log_entry(key) is not None

    async def ours_create(k: int) -> None:
        for _ in range(k):
            await storage.create_record(entry(f"ours{next(counter)}"))

    try:
        gets = await measure(
            {
                "raw aiosqlite": raw_get,
                "raw execute_fetchall": raw_get_one_hop,
                "sa aiosqlite": sa_get,
                "ours (aiosqlite)": ours_get,
            },
            n,
            rounds,
        )
        creates = await measure(
            {"raw aiosqlite": raw_create, "ours (aiosqlite)": ours_create}, max(1, n // 4), rounds
        )
    finally:
        await raw.close()
        await sa.dispose()
        await storage.aclose()
    return [("sqlite get", k, v) for k, v in gets.items()] + [
        ("sqlite create", k, v) for k, v in creates.items()
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="gets per round (creates: n/4)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    rows = await sqlite(args.n, args.rounds)
    if not args.no_postgres:
        rows += await postgres(args.pg_url, args.n, args.rounds)
    print(f"{'operation':<17} {'variant':<18} {'ops/s':>9}  vs first row")
    first: dict[str, float] = {}
    for op, variant, ops in rows:
        base = first.setdefault(op, ops)
        print(f"{op:<17} {variant:<18} {ops:>9.0f}  {ops / base:>5.2f}")


if __name__ == "__main__":
    asyncio.run(main())
