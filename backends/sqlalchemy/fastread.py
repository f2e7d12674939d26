"""SQLite fast paths: get-by-key and bulk upsert straight on the DBAPI connection.

SQLAlchemy's Connection/pool/Result layers cost ~100 us per call, several times the
query itself on SQLite. Reads by key are the hottest call of a did:webvh server, so for
SQLite *files* they run the statement SQLAlchemy compiled (same SQL) on a connection
the engine created (same pragmas: WAL, busy_timeout, autocommit), kept in a small LIFO
of idle connections, and convert columns with plain functions. Everything else,
goes through SQLAlchemy. Bulk upserts likewise run SQLAlchemy's compiled INSERT ... ON
CONFLICT with the sqlite3 cursor's executemany (C loop) inside a SQLAlchemy transaction.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from storage_core.codec import dumps_str, loads
from storage_core.kinds import FieldType, KindSpec

_JSON_TYPES = (FieldType.LIST, FieldType.DICT, FieldType.JSON, FieldType.STR_DICT)
JSON_TYPES = _JSON_TYPES


class ReadConnections:
    """Idle autocommit DBAPI connections for reads; at most `max_idle` are kept.

    Connections come from the engine (so its connect hooks ran) and are detached from
    its pool, so they never count against pool_size and close() closes them.
    """

    def __init__(self, engine: Engine, max_idle: int) -> None:
        self._engine = engine
        self._idle: deque[Any] = deque()
        self._max_idle = max(1, max_idle)
        self._closed = False

    def acquire(self) -> Any:
        try:
            return self._idle.pop()  # deque.pop/append are atomic: no lock needed
        except IndexError:
            fairy = self._engine.raw_connection()
            fairy.detach()
            return fairy.dbapi_connection

    def release(self, conn: Any) -> None:
        if self._closed or len(self._idle) >= self._max_idle:
            conn.close()
        else:
            self._idle.append(conn)

    def discard(self, conn: Any) -> None:
        with suppress(Exception):  # a broken connection is being thrown away
            conn.close()

    def close(self) -> None:
        self._closed = True
        while self._idle:
            self.discard(self._idle.pop())


def _parse_sqlite_datetime(value: str | None) -> datetime | None:
    # SQLAlchemy stores "YYYY-MM-DD HH:MM:SS.ffffff" (naive UTC, see UTCDateTime).
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


def _load_json(value: Any) -> Any:
    return None if value is None else loads(value)


def row_converter(spec: KindSpec, fields: Sequence[str]) -> Callable[[Sequence[Any]], Any]:
    """A function turning a raw sqlite3 row (columns in `fields` order) into a record."""
    converters: list[Callable[[Any], Any] | None] = []
    for name in fields:
        ftype = spec.field_types.get(name)
        if ftype in _JSON_TYPES:
            converters.append(_load_json)
        elif ftype is FieldType.BOOL:
            converters.append(bool)
        elif name in ("created_at", "updated_at"):
            converters.append(_parse_sqlite_datetime)
        else:
            converters.append(None)
    plan = tuple(zip(fields, converters, strict=True))
    record_type = spec.record

    def convert(row: Sequence[Any]) -> Any:
        return record_type(
            **{name: (value if fn is None else fn(value))
               for (name, fn), value in zip(plan, row, strict=False)}
        )

    return convert


def json_text_converter(spec: KindSpec, fields: Sequence[str]) -> Callable[[Sequence[Any]], Any]:
    """Like `row_converter` for rows whose JSON fields are text and every other column
    already has its Python value (PostgreSQL streams): decodes only the JSON."""
    json_fields = tuple(
        (i, name) for i, name in enumerate(fields) if spec.field_types.get(name) in _JSON_TYPES
    )
    record_type = spec.record

    def convert(row: Sequence[Any]) -> Any:
        values = dict(zip(fields, row, strict=False))
        for i, name in json_fields:
            values[name] = _load_json(row[i])
        return record_type(**values)

    return convert


def _dump_json(value: Any) -> str | None:
    return None if value is None else dumps_str(value)


def _format_sqlite_datetime(value: datetime | None) -> str | None:
    # Exactly what SQLAlchemy's SQLite DATETIME writes for UTCDateTime (naive UTC).
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", timespec="microseconds")


def param_converter(spec: KindSpec, fields: Sequence[str]) -> Callable[[Any], tuple]:
    """A function turning a record into the positional sqlite3 parameters of `fields`."""
    plan: list[tuple[str, Callable[[Any], Any] | None]] = []
    for name in fields:
        ftype = spec.field_types.get(name)
        if ftype in _JSON_TYPES:
            plan.append((name, _dump_json))
        elif name in ("created_at", "updated_at"):
            plan.append((name, _format_sqlite_datetime))
        else:
            plan.append((name, None))
    frozen = tuple(plan)

    def convert(record: Any) -> tuple:
        return tuple(
            getattr(record, name) if fn is None else fn(getattr(record, name))
            for name, fn in frozen
        )

    return convert
