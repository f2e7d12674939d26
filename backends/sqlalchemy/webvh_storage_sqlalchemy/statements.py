"""Prebuilt SQL for one kind: built once per backend, reused on every call so the hot
paths only bind parameters (SQLAlchemy's compiled cache does the rest), plus the
row -> record conversion."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Table,
    Text,
    bindparam,
    cast,
    delete,
    func,
    select,
    type_coerce,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.types import NullType

from storage_core.kinds import KindSpec

_DIALECT_INSERT = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def dialect_insert(dialect: str) -> Any:
    """The INSERT with ON CONFLICT support for this dialect."""
    try:
        return _DIALECT_INSERT[dialect]
    except KeyError:
        from storage_core.errors import UnsupportedOperationError

        raise UnsupportedOperationError(
            f"the sqlalchemy backend supports sqlite and postgresql, not {dialect!r}"
        ) from None


class KindStatements:
    """Everything a backend call needs for one kind, compiled-cache friendly."""

    def __init__(self, spec: KindSpec, table: Table, dialect: str) -> None:
        self.spec = spec
        self.table = table
        self.record_type = spec.record
        self.fields: tuple[str, ...] = spec.all_fields
        self.columns = [table.c[name] for name in self.fields]
        self.key_column = table.c[spec.key]
        self.seq = table.c.seq
        self.version = table.c.record_version
        insert = dialect_insert(dialect)
        by_key = self.key_column == bindparam("key")

        self.get = select(*self.columns).where(by_key)
        self.get_version = select(self.version).where(by_key)
        self.delete = delete(table).where(by_key)
        # seq is left out: its column default (NextSeq) numbers the row on INSERT.
        self.insert = insert(table)
        self.count = select(func.count()).select_from(table)

        # bulk: write every field as given; an existing row keeps only its seq.
        bulk = insert(table)
        self.bulk_upsert = bulk.on_conflict_do_update(
            index_elements=[self.key_column],
            set_={name: bulk.excluded[name] for name in self.fields if name != spec.key},
        )
        # upsert: replace data fields, keep created_at and seq, bump record_version.
        upsert = insert(table)
        replaced = [n for n in spec.data_fields if n != spec.key]
        if spec.timestamps:
            replaced.append("updated_at")
        set_: dict[str, Any] = {name: upsert.excluded[name] for name in replaced}
        set_["record_version"] = self.version + 1
        self.upsert = upsert.on_conflict_do_update(
            index_elements=[self.key_column], set_=set_
        ).returning(*self.columns)
        self.insert_if_absent = (
            insert(table)
            .on_conflict_do_nothing(index_elements=[self.key_column])
            .returning(*self.columns)
        )

        # the same SELECT as driver SQL, for the SQLite read fast path (fastread.py)
        self.get_sql: str | None = None
        self.bulk_upsert_sql: str | None = None
        self.to_raw_params: Any = None
        self.from_raw_row: Any = None
        # Columns for streaming: on SQLite untyped (the driver's raw values), so a page of
        # rows is fetched undecoded and each row is converted only when it is yielded
        # (decoding 500 JSON logs up front costs ~3x more: allocation and GC).
        self.stream_columns: list[Any] = self.columns
        self.insert_sql: str | None = None
        self.pg_insert_sql = None
        self.pg_bulk_upsert: tuple[str, str] | None = None  # (SQL, VALUES template)
        self.to_pg_params: Any = None
        self.stream_record: Any = self.to_record
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect

            from webvh_storage_sqlalchemy.fastread import param_converter, row_converter

            self.get_sql = str(self.get.compile(dialect=sqlite_dialect()))
            self.from_raw_row = row_converter(spec, self.fields)
            self.stream_columns = [type_coerce(c, NullType()).label(c.name) for c in self.columns]
            self.stream_record = self.from_raw_row
            compiled = self.bulk_upsert.compile(
                dialect=sqlite_dialect(), column_keys=list(self.fields)
            )
            assert tuple(compiled.positiontup or ()) == self.fields
            self.bulk_upsert_sql = compiled.string
            self.to_raw_params = param_converter(spec, self.fields)
            compiled = self.insert.compile(dialect=sqlite_dialect(), column_keys=list(self.fields))
            assert tuple(compiled.positiontup or ()) == self.fields
            self.insert_sql = compiled.string  # create on the DBAPI connection
        elif dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import psycopg2 as pg_dialect

            from webvh_storage_sqlalchemy.fastread import (
                JSON_TYPES,
                json_text_converter,
                param_converter,
                pg_row_converter,
                utc_timestamp,
            )

            # get by key on a DBAPI connection (fastread.ReadConnections), pyformat SQL
            self.get_sql = str(self.get.compile(dialect=pg_dialect.dialect()))
            self.from_raw_row = pg_row_converter(spec, self.fields)
            # bulk: the same INSERT ... ON CONFLICT for psycopg2's execute_values (many
            # rows per statement; SQLAlchemy ran it as one round trip per row).
            sql = self.bulk_upsert.compile(
                dialect=pg_dialect.dialect(), column_keys=list(self.fields)
            ).string
            head, _, rest = sql.partition(" VALUES (")
            template, _, tail = rest.partition(") ON CONFLICT ")
            # positional placeholders (rows are lists in field order)
            assert re.findall(r"%\((\w+)\)s", template) == list(self.fields), sql
            template = re.sub(r"%\(\w+\)s", "%s", template)
            self.pg_bulk_upsert = (f"{head} VALUES %s ON CONFLICT {tail}", f"({template})")
            self.to_pg_params = param_converter(spec, self.fields, utc_timestamp)
            # create: the same INSERT, positional, one autocommit statement
            sql = self.insert.compile(
                dialect=pg_dialect.dialect(), column_keys=list(self.fields)
            ).string
            assert re.findall(r"%\((\w+)\)s", sql) == list(self.fields), sql
            self.pg_insert_sql: str | None = re.sub(r"%\(\w+\)s", "%s", sql)
            # psycopg2 decodes `json` for a whole fetchmany batch: fetch JSON as text
            # (json::text is the stored text) and decode it per row when yielded.

            self.stream_columns = [
                cast(c, Text).label(c.name) if spec.field_types.get(c.name) in JSON_TYPES else c
                for c in self.columns
            ]
            self.stream_record = json_text_converter(spec, self.fields)

    # --- rows and records ---------------------------------------------------------------
    def to_record(self, row: Sequence[Any]) -> Any:
        return self.record_type(**dict(zip(self.fields, row, strict=False)))

    def params(self, record: Any) -> dict[str, Any]:
        return {name: getattr(record, name) for name in self.fields}

    def data_params(self, record: Any) -> dict[str, Any]:
        """Fields an upsert replaces (no key, created_at or version)."""
        out = {n: getattr(record, n) for n in self.spec.data_fields if n != self.spec.key}
        if self.spec.timestamps:
            out["updated_at"] = record.updated_at
        return out

    def where(self, filters: Mapping[str, tuple[Any, ...]]) -> list[ColumnElement[bool]]:
        """`col = v` for one allowed value, `col IN (...)` for several."""
        conditions = []
        for name, values in filters.items():
            column = self.table.c[name]
            conditions.append(column == values[0] if len(values) == 1 else column.in_(values))
        return conditions

    def listing(self, filters: Mapping[str, tuple[Any, ...]]) -> Any:
        return select(*self.columns).where(*self.where(filters)).order_by(self.seq)
