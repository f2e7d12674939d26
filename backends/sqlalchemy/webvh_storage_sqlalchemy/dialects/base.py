"""What one database does differently, as one class per dialect (in the spirit of Django's
backends/<vendor>/operations.py): how its engine is made, the driver-level fast paths
(their SQL, parameters, rows and bulk writes), how a stream reads and what flush() does.

The backend and statements.py ask the dialect instead of testing its name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from sqlalchemy import Column, ColumnElement, Connection, Engine, Row, Table, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.engine import Dialect as SQLAlchemyDialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from storage_core.codec import loads
from storage_core.config import Settings
from storage_core.encoded import dumps_str
from storage_core.errors import ValidationError
from storage_core.kinds import FieldType, KindSpec
from storage_core.validation import Filters
from webvh_storage_sqlalchemy.rows import (
    Converter,
    RecordToParams,
    RowToRecord,
    ValuesToParams,
    params_builder,
    record_builder,
    values_builder,
)

if TYPE_CHECKING:  # these modules import this one
    from webvh_storage_sqlalchemy.connections import Connections
    from webvh_storage_sqlalchemy.statements import KindStatements

Echo = bool | Literal["debug"]
#: INSERT with ON CONFLICT: the dialect's own Insert construct.
Insert = sqlite.Insert | postgresql.Insert


class DriverConnection(Protocol):
    """A pooled connection lent to a fast path. Each statement commits on its own,
    except between the dialect's BEGIN and COMMIT (Connections.transaction)."""

    def execute(self, sql: str, params: Sequence[Any]) -> None: ...

    def fetch_one(self, sql: str, params: Sequence[Any]) -> Sequence[Any] | None: ...

    def fetch_all(self, sql: str, params: Sequence[Any]) -> Sequence[Sequence[Any]]:
        """Every row, the statement run to its end (a write's RETURNING commits then)."""
        ...

    def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...


class Dialect(ABC):
    name: ClassVar[str]
    #: SQLAlchemy's dialect for the driver, positional parameters: compiles fast-path SQL.
    compiler: SQLAlchemyDialect
    #: The one DBAPI driver the fast paths are written for.
    driver: ClassVar[str]
    #: Positional parameter marker of that driver.
    placeholder: ClassVar[str]
    #: The LIMIT parameter that means "no limit".
    no_limit: ClassVar[int | None]
    #: Opens a write transaction on a driver connection.
    begin_sql: ClassVar[str] = "BEGIN"
    #: The collation that sorts strings by code point (`order_by`), None when the
    #: database's comparison does already.
    code_point_collation: ClassVar[str | None] = None
    #: Capabilities (storage_core.interface.Capability) the backend lacks here.
    lacks: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, url: URL, settings: Settings) -> None:
        self.url = url
        self.settings = settings
        self.echo = echo_option(settings)
        #: Held around every use of a connection; only one shared connection needs it.
        self.lock: AbstractContextManager[Any] = nullcontext()

    # --- the engine --------------------------------------------------------------------
    @abstractmethod
    def create_engine(self) -> Engine:
        """The store's one engine: one pool of at most pool_size + max_overflow."""

    def engine_args(self) -> dict[str, Any]:
        """Arguments every dialect's create_engine() passes."""
        return {"echo": self.echo, "json_serializer": dumps_str, "json_deserializer": loads}

    def pool_args(self) -> dict[str, Any]:
        return {
            "pool_size": self.settings.option("pool_size"),
            "max_overflow": self.settings.option("max_overflow"),
            "pool_timeout": self.settings.option("pool_timeout"),
            # the most recently used connection first: its caches are warm, and the ones
            # a burst opened stay idle (PostgreSQL may close them; checkout notices)
            "pool_use_lifo": True,
        }

    @abstractmethod
    def without_transaction(self, conn: Connection) -> AbstractContextManager[None]:
        """Make a fresh Connection run each statement on its own, without BEGIN (reads,
        and the fast paths while someone observes the engine), until the block ends."""

    def writes(self, engine: Engine) -> Engine:
        """`engine` for SQLAlchemy write transactions."""
        return engine

    @abstractmethod
    def insert(self, table: Table) -> Insert:
        """INSERT with ON CONFLICT support."""

    # --- driver-level fast paths ---------------------------------------------------------
    def compile(self, statement: ClauseElement, params: Sequence[str]) -> str:
        """`statement` as driver SQL with positional parameters in `params` order."""
        compiled = statement.compile(dialect=self.compiler, column_keys=list(params))
        if not isinstance(compiled, SQLCompiler) or tuple(compiled.positiontup or ()) != tuple(
            params
        ):
            raise AssertionError(f"parameters of {compiled.string} are not {params}")
        return compiled.string

    def quote(self, identifier: str) -> str:
        return self.compiler.identifier_preparer.quote(identifier)

    @abstractmethod
    def lend(self, dbapi_connection: Any) -> DriverConnection:
        """Prepare a connection just taken from the pool for a fast path."""

    def read_one(
        self, dbapi_connection: Any, sql: str, params: Sequence[Any]
    ) -> Sequence[Any] | None:
        """lend(dbapi_connection).fetch_one(sql, params) in one call: the path of a read
        by key, where every Python call shows (a dialect may write it out)."""
        return self.lend(dbapi_connection).fetch_one(sql, params)

    def reusable(self, dbapi_connection: Any) -> bool:
        """Undo lend(); False when the connection must be thrown away instead."""
        return True

    def closed_by_server(self, dbapi_connection: Any) -> bool:
        """True for an idle connection the server is known to have closed (checked
        whenever a connection leaves the pool; must not cost a round trip)."""
        return False

    @staticmethod
    @abstractmethod
    def read_column(name: str, ftype: FieldType | None) -> Converter | None:
        """How this driver's value of a field becomes the record's (None: as it is)."""

    @staticmethod
    @abstractmethod
    def timestamp_param(value: datetime | None) -> Any:
        """A record's timestamp as this driver's parameter."""

    def row_converter(self, spec: KindSpec[Any], fields: Sequence[str]) -> RowToRecord:
        """A driver row of `fields` -> record."""
        return record_builder(spec, fields, self.read_column)

    def param_converter(self, spec: KindSpec[Any], fields: Sequence[str]) -> RecordToParams:
        """A record -> the driver parameters of `fields`."""
        return params_builder(spec, fields, self.timestamp_param)

    def values_converter(self, spec: KindSpec[Any], fields: Sequence[str]) -> ValuesToParams:
        """Values of `fields` -> their driver parameters."""
        return values_builder(spec, fields, self.timestamp_param)

    @abstractmethod
    def bulk_upsert(
        self, conn: DriverConnection, statements: KindStatements, records: Sequence[Any]
    ) -> None:
        """Write `records` with the kind's bulk upsert, inside the caller's transaction."""

    # --- streams -----------------------------------------------------------------------
    def stream_columns(
        self, spec: KindSpec[Any], columns: Sequence[Column[Any]]
    ) -> list[ColumnElement[Any]]:
        """The columns a stream selects (each row is converted only when yielded)."""
        return list(columns)

    @abstractmethod
    def stream_converter(self, spec: KindSpec[Any], fields: Sequence[str]) -> RowToRecord:
        """A row of stream_columns() -> record."""

    def stream(
        self,
        connections: Connections,
        statements: KindStatements,
        filters: Filters,
        batch_size: int,
    ) -> Iterator[Any]:
        """Matching records in insertion order, as keyset pages (`seq > last ORDER BY seq
        LIMIT batch`), each read on a pooled connection that goes straight back (a lost
        one is replaced and the page read again). Nothing is held between pages: the
        caller may write while iterating, and an iterator dropped anywhere (even in a
        reference cycle the garbage collector reaches late) pins no connection. seq only
        grows, so no record is served twice, and the stream ends only on a short page."""
        st = statements
        page = (
            select(*st.stream_columns, st.seq)
            .where(*st.where(filters), st.seq > bindparam("after"))
            .order_by(st.seq)
            .limit(batch_size)
        )
        to_record = st.stream_record
        after = 0
        while True:
            rows = connections.sql_read(_page_reader(page, after))
            for row in rows:
                yield to_record(row)
            if len(rows) < batch_size:
                return
            after = rows[-1][-1]

    # --- maintenance -------------------------------------------------------------------
    @abstractmethod
    def flush(self, connections: Connections) -> None:
        """Make every committed write durable in the database file."""


def _page_reader(page: Any, after: int) -> Callable[[Connection], Sequence[Row[Any]]]:
    def read(conn: Connection) -> Sequence[Row[Any]]:
        return conn.execute(page, {"after": after}).all()

    return read


def echo_option(settings: Settings) -> Echo:
    """SQLAlchemy's echo: option `echo` or STORAGE_SQL_ECHO (true, false or "debug")."""
    raw = settings.option("echo")
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    if text == "debug":
        return "debug"
    raise ValidationError("echo", "must be true, false or 'debug'")
