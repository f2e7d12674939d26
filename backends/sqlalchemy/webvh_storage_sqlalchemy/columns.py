"""Column types that make every dialect store a value exactly as the caller wrote it.

- `UTCDateTime`: aware UTC datetimes in and out, microseconds kept, also on SQLite
  (which has no time zones: it stores naive UTC and we re-attach UTC on read).
- `JSONDocument`: PostgreSQL `json` (not `jsonb`, which reorders keys) and SQLite
  TEXT; both written with orjson, so a DID log reads back byte-identical. Python
  None is SQL NULL (a JSON `null` document therefore also reads back as None).
- `NextSeq`: the SQL expression that numbers rows in insertion order (see models.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import TypeDecorator

from storage_core.codec import loads
from storage_core.encoded import dumps_str


class UTCDateTime(TypeDecorator[datetime]):
    """timestamptz on PostgreSQL; naive-UTC text on SQLite; always aware UTC in Python."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class JSONDocument(TypeDecorator[Any]):
    """A JSON document kept verbatim: `json` on PostgreSQL, TEXT elsewhere.

    On PostgreSQL the engine's json_serializer/json_deserializer (orjson) do the work;
    elsewhere this type (de)serialises with orjson itself.
    """

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.JSON(none_as_null=True))
        return dialect.type_descriptor(Text())

    def bind_processor(self, dialect: Any) -> Any:
        if dialect.name == "postgresql":
            return self.load_dialect_impl(dialect).bind_processor(dialect)
        return _dump_or_none

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        if dialect.name == "postgresql":
            return self.load_dialect_impl(dialect).result_processor(dialect, coltype)
        return _load_or_none

    # TypeDecorator requires these; the processors above replace them.
    def process_bind_param(self, value: Any, dialect: Any) -> Any:  # pragma: no cover
        return value

    def process_result_value(self, value: Any, dialect: Any) -> Any:  # pragma: no cover
        return value

    def coerce_compared_value(self, op: Any, value: Any) -> Any:
        return self


def _dump_or_none(value: Any) -> str | None:
    return None if value is None else dumps_str(value)


def _load_or_none(value: Any) -> Any:
    return None if value is None else loads(value)


class NextSeq(ColumnElement[int]):
    """The next insertion-order number of a table.

    PostgreSQL: `nextval('<table>_seq_seq')`, a real sequence (safe under concurrent
    writers). SQLite: `(SELECT COALESCE(MAX(seq), 0) + 1 FROM <table>)`, safe because
    SQLite serialises writers; evaluated per executed row, so executemany works too.
    """

    type = BigInteger()
    inherit_cache = True
    _traverse_internals = [("table_name", InternalTraversal.dp_string)]

    def __init__(self, table_name: str) -> None:
        self.table_name = table_name


def sequence_name(table_name: str) -> str:
    return f"{table_name}_seq_seq"


@compiles(NextSeq)
def _next_seq_default(element: NextSeq, compiler: Any, **kw: Any) -> str:
    table = compiler.preparer.quote(element.table_name)
    return f"(SELECT COALESCE(MAX(seq), 0) + 1 FROM {table})"


@compiles(NextSeq, "postgresql")
def _next_seq_postgresql(element: NextSeq, compiler: Any, **kw: Any) -> str:
    return f"nextval('{sequence_name(element.table_name)}')"
