"""Prebuilt SQL for one kind: built once per backend, reused on every call so the hot
paths only bind parameters (SQLAlchemy's compiled cache does the rest), plus the
row -> record conversion. The driver-level SQL and converters come from the dialect."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from itertools import chain
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    Table,
    and_,
    bindparam,
    delete,
    false,
    literal,
    literal_column,
    or_,
    select,
    update,
)

from storage_core.kinds import KindSpec
from storage_core.ordering import OrderBy
from webvh_storage_sqlalchemy.dialects import Dialect
from webvh_storage_sqlalchemy.models import key_conflict_target
from webvh_storage_sqlalchemy.rows import ValuesToParams

#: An update's driver SQL, its changed fields in SET order, and their converter.
_Update = tuple[str, tuple[str, ...], ValuesToParams]

#: Distinct filter shapes (fields and number of values) whose count and list SQL is kept
#: per kind.
_SHAPES_KEPT = 256


class KindStatements:
    """Everything a backend call needs for one kind, compiled-cache friendly."""

    def __init__(self, spec: KindSpec[Any], table: Table, dialect: Dialect) -> None:
        self.spec = spec
        self.table = table
        self.record_type = spec.record
        self.fields: tuple[str, ...] = spec.all_fields
        self.columns = [table.c[name] for name in self.fields]
        self.key_column = table.c[spec.key]
        self.seq = table.c.seq
        self.version = table.c.record_version
        self._placeholder = dialect.placeholder
        self._quoted = {c.name: dialect.quote(c.name) for c in table.c}
        self._count_from = f"SELECT count(*) FROM {dialect.quote(table.name)}"
        self._count_sql: dict[tuple[tuple[str, int], ...], str] = {}
        self._list_sql: dict[tuple[tuple[str, int], ...], str] = {}
        self._no_limit = dialect.no_limit
        columns = ", ".join(self._quoted[name] for name in self.fields)
        self._list_from = f"SELECT {columns} FROM {dialect.quote(table.name)}"
        self._list_order = f" ORDER BY {self._quoted['seq']} LIMIT {dialect.placeholder}"
        self._list_order += f" OFFSET {dialect.placeholder}"
        self._dialect = dialect
        #: filterable datetime fields: their values as the driver's timestamp parameter
        self._filter_params = {
            n: dialect.timestamp_param for n in spec.datetime_fields if n in spec.filterable
        }
        self._update_sql: dict[tuple[tuple[str, ...], bool], _Update] = {}
        by_key = self.key_column == bindparam("key")

        self.get = select(*self.columns).where(by_key)
        self.get_version = select(self.version).where(by_key)
        self.delete = delete(table).where(by_key)
        #: the key's unique index, as ON CONFLICT names it (models.key_conflict_target)
        self.key_conflict = key_conflict_target(table, dialect.name)
        # seq is left out: its column default (NextSeq) numbers the row on INSERT.
        self.insert = dialect.insert(table)
        # bulk: write every field as given; an existing row keeps only its seq.
        bulk = dialect.insert(table)
        self.bulk_upsert = bulk.on_conflict_do_update(
            index_elements=self.key_conflict,
            set_={name: bulk.excluded[name] for name in self.fields if name != spec.key},
        )
        # upsert: replace data fields, keep created_at and seq, bump record_version.
        upsert = dialect.insert(table)
        replaced = [n for n in spec.data_fields if n != spec.key]
        if spec.timestamps:
            replaced.append("updated_at")
        set_: dict[str, Any] = {name: upsert.excluded[name] for name in replaced}
        set_["record_version"] = self.version + 1
        self.upsert = upsert.on_conflict_do_update(
            index_elements=self.key_conflict, set_=set_
        ).returning(*self.columns)
        self.insert_if_absent = (
            dialect.insert(table)
            .on_conflict_do_nothing(index_elements=self.key_conflict)
            .returning(*self.columns)
        )

        # The same statements as driver SQL, for the fast paths (connections.py).
        self.get_sql = dialect.compile(self.get, ("key",))
        self.insert_sql = dialect.compile(self.insert, self.fields)
        self.bulk_upsert_sql = dialect.compile(self.bulk_upsert, self.fields)
        self.to_params = dialect.param_converter(spec, self.fields)
        self.from_row = dialect.row_converter(spec, self.fields)
        self.stream_columns = dialect.stream_columns(spec, self.columns)
        self.stream_record = dialect.stream_converter(spec, self.fields)

    # --- rows and records ---------------------------------------------------------------
    def to_record(self, row: Sequence[Any]) -> Any:
        """A row of SQLAlchemy's typed `columns` -> record."""
        return self.record_type(**dict(zip(self.fields, row, strict=False)))

    def params(self, record: Any) -> dict[str, Any]:
        return {name: getattr(record, name) for name in self.fields}

    def data_params(self, record: Any) -> dict[str, Any]:
        """Fields an upsert replaces (no key, created_at or version)."""
        out = {n: getattr(record, n) for n in self.spec.data_fields if n != self.spec.key}
        if self.spec.timestamps:
            out["updated_at"] = record.updated_at
        return out

    def versioned_update(self, values: dict[str, Any], expected_version: int | None) -> Any:
        """UPDATE ... SET values, record_version + 1 WHERE key = :key [AND version =
        expected] RETURNING the row: the conditional write both faces run in a
        transaction when the fast path found nothing to update, and upsert's
        expected-version replace."""
        stmt = update(self.table).where(self.key_column == bindparam("key"))
        if expected_version is not None:
            stmt = stmt.where(self.version == expected_version)
        values = {**values, "record_version": self.version + 1}
        return stmt.values(values).returning(*self.columns)

    def changes_at(self, changes: dict[str, Any], now: datetime) -> dict[str, Any]:
        """An update's SET values: the changes, and updated_at for kinds with timestamps."""
        return {**changes, "updated_at": now} if self.spec.timestamps else dict(changes)

    def where(self, filters: Mapping[str, tuple[Any, ...]]) -> list[ColumnElement[bool]]:
        """`col = v` for one allowed value, `col IN (...)` for several."""
        conditions = []
        for name, values in filters.items():
            column = self.table.c[name]
            conditions.append(column == values[0] if len(values) == 1 else column.in_(values))
        return conditions

    def count_sql(self, filters: Mapping[str, tuple[Any, ...]]) -> tuple[str, list[Any]]:
        """count(*) with the filters as driver SQL and its parameters: an index lookup,
        several times cheaper than SQLAlchemy's layers around it (and than compiling it)."""
        shape = _shape(filters)
        sql = self._count_sql.get(shape)
        if sql is None:
            sql = self._count_from + self._where(shape)
            if len(self._count_sql) < _SHAPES_KEPT:
                self._count_sql[shape] = sql
        return sql, self._values(filters)

    def list_sql(
        self, filters: Mapping[str, tuple[Any, ...]], limit: int | None, offset: int
    ) -> tuple[str, list[Any]]:
        """A page in list order as driver SQL and its parameters: on the (field, seq)
        indexes the rows come in order from the index, and skipping SQLAlchemy's
        Connection and Result layers is most of what is left to gain."""
        shape = _shape(filters)
        sql = self._list_sql.get(shape)
        if sql is None:
            sql = self._list_from + self._where(shape) + self._list_order
            if len(self._list_sql) < _SHAPES_KEPT:
                self._list_sql[shape] = sql
        params = self._values(filters)
        params += (self._no_limit if limit is None else limit, offset)
        return sql, params

    def _values(self, filters: Mapping[str, tuple[Any, ...]]) -> list[Any]:
        if not self._filter_params:
            return _values(filters)
        params: list[Any] = []
        for name, values in filters.items():
            convert = self._filter_params.get(name)
            params += values if convert is None else map(convert, values)
        return params

    def _where(self, shape: tuple[tuple[str, int], ...]) -> str:
        mark = self._placeholder
        where = []
        for name, n in shape:
            column = self._quoted[name]
            if n == 1:
                where.append(f"{column} = {mark}")
            else:
                where.append(f"{column} IN ({', '.join([mark] * n)})")
        return f" WHERE {' AND '.join(where)}" if where else ""

    # --- order_by (storage_core.ordering): SQLAlchemy Core, off the default fast path ---
    def _order_column(self, name: str) -> ColumnElement[Any]:
        """The column to sort on: strings by code point, which PostgreSQL needs told
        (COLLATE "C"; its default collation may be a locale's); SQLite compares code
        points already."""
        column: ColumnElement[Any] = self.table.c[name]
        collation = self._dialect.code_point_collation
        if collation is not None and isinstance(self.table.c[name].type, String):
            column = column.collate(collation)
        return column

    def ordered(
        self,
        filters: Mapping[str, tuple[Any, ...]],
        order: OrderBy,
        after: tuple[Any, int] | None = None,
    ) -> Select[Any]:
        """Matching rows (every field, then seq) in `order`, seq breaking ties (NULLs
        last ascending, first descending on every database); with `after` (a record and
        its seq), only the rows that come after it: the keyset page of a stream."""
        clauses: list[ColumnElement[Any]] = []
        for key in order:
            column = self._order_column(key.field)
            clauses.append(
                column.desc().nulls_first() if key.descending else column.asc().nulls_last()
            )
        stmt = select(*self.columns, self.seq).where(*self.where(filters))
        if after is not None:
            stmt = stmt.where(self._after(order, *after))
        return stmt.order_by(*clauses, self.seq)

    def _after(self, order: OrderBy, record: Any, seq: int) -> ColumnElement[bool]:
        """Rows after `record` in `order`: (k1 beyond v1) OR (k1 = v1 AND k2 beyond v2)
        ... OR (every k equal AND seq > its seq)."""
        ties: list[ColumnElement[bool]] = []
        options: list[ColumnElement[bool]] = []
        for key in order:
            column = self._order_column(key.field)
            raw = getattr(record, key.field)
            # bound as the column's type: SQLAlchemy refuses `column > True` as such
            value = None if raw is None else literal(raw, self.table.c[key.field].type)
            if key.descending:  # NULLs first, then values falling
                beyond = column.is_not(None) if value is None else column < value
            else:  # values rising, then NULLs
                beyond = false() if value is None else or_(column > value, column.is_(None))
            options.append(and_(*ties, beyond))
            ties.append(column.is_(None) if value is None else column == value)
        options.append(and_(*ties, self.seq > seq))
        return or_(*options)

    def update_sql(
        self, changes: Mapping[str, Any], now: datetime, key: str, expected_version: int | None
    ) -> tuple[str, list[Any]]:
        """`UPDATE ... SET changed fields (and updated_at), record_version + 1 WHERE key
        [AND record_version = expected] RETURNING every column` as driver SQL, and its
        parameters. One statement, one round trip."""
        shape = (tuple(changes), expected_version is not None)
        found = self._update_sql.get(shape)
        if found is None:
            found = self._update_statement(*shape)
            if len(self._update_sql) < _SHAPES_KEPT:
                self._update_sql[shape] = found
        sql, order, to_params = found
        params = to_params([changes[name] for name in order] + [now] * self.spec.timestamps)
        params.append(key)
        if expected_version is not None:
            params.append(expected_version)
        return sql, params

    def _update_statement(self, fields: tuple[str, ...], versioned: bool) -> _Update:
        # SQLAlchemy writes SET in the table's column order, whatever order it was given
        order = tuple(c.name for c in self.table.c if c.name in fields)
        written = [*order, "updated_at"] if self.spec.timestamps else list(order)
        stmt = update(self.table).where(self.key_column == bindparam("key"))
        if versioned:
            stmt = stmt.where(self.version == bindparam("expected"))
        values: dict[str, Any] = {name: bindparam(f"new_{name}") for name in written}
        values["record_version"] = self.version + literal_column("1")  # not a parameter
        returning = stmt.values(values).returning(*self.columns)
        params = (*(f"new_{name}" for name in written), "key", *(("expected",) * versioned))
        sql = self._dialect.compile(returning, params)
        return sql, order, self._dialect.values_converter(self.spec, written)


def _shape(filters: Mapping[str, tuple[Any, ...]]) -> tuple[tuple[str, int], ...]:
    return tuple(zip(filters, map(len, filters.values()), strict=True))


def _values(filters: Mapping[str, tuple[Any, ...]]) -> list[Any]:
    return list(chain.from_iterable(filters.values()))
