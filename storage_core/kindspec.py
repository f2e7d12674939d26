"""What a kind of record is (`KindSpec`, `FieldType`) and the registry of declared kinds.

Both the nine did:webvh kinds and an application's own are registered here, through
`storage_core.declare.record_kind`; backends and validation read only specs, so any
declared kind is stored like a built-in one.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any, ClassVar, Generic, Protocol, TypeVar, overload

from storage_core.errors import ValidationError


class FieldType(Enum):
    KEY = "key"  # non-empty, indexed string; the record's identity
    INDEXED_STR = "indexed string"  # a string that is indexed (length-limited)
    STR = "string"  # unlimited text
    OPT_STR = "string or None"  # unlimited text or None
    BOOL = "bool"
    INT = "integer"  # 64-bit signed
    FLOAT = "float"  # finite, 64-bit
    DATETIME = "datetime"  # timezone-aware, stored in UTC
    LIST = "JSON array"
    DICT = "JSON object"
    JSON = "JSON value"
    STR_DICT = "object of strings"

    @property
    def is_json(self) -> bool:
        """Stored as a JSON document (a JSON column in SQL, inside the value in Askar)."""
        return self in _JSON_FIELD_TYPES


_JSON_FIELD_TYPES = frozenset({FieldType.LIST, FieldType.DICT, FieldType.JSON, FieldType.STR_DICT})
#: Field types a kind may index (filter on, tag in Askar, make unique): equality on them
#: is the same on every backend (not floats: -0.0 == 0.0 in SQL, not as Askar tags).
INDEXABLE = frozenset(
    {FieldType.KEY, FieldType.INDEXED_STR, FieldType.BOOL, FieldType.INT, FieldType.DATETIME}
)


class Record(Protocol):
    """What every record type is: a dataclass with the optimistic-concurrency counter."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    @property
    def record_version(self) -> int: ...


R = TypeVar("R", bound=Record)  # the record type of one kind


@dataclass(frozen=True, slots=True)
class KindSpec(Generic[R]):
    """One kind of record; `KindSpec[LogEntry]` lets a type checker follow the record type
    through `get_record(spec, ...)` and the backends."""

    name: str
    record: type[R]
    key: str
    table: str
    category: str  # the Askar category the askar backend writes
    field_types: dict[str, FieldType]
    filterable: tuple[str, ...]  # indexed in SQL, tags in Askar; the key first
    timestamps: bool
    #: Fields besides OPT_STR and JSON ones that may hold None.
    optional: frozenset[str] = frozenset()
    #: Field tuples no two records may share (records with a None among them never clash).
    unique: tuple[tuple[str, ...], ...] = ()
    #: The largest field this kind stores, in bytes; None: the settings' max_payload_bytes.
    max_payload_bytes: int | None = None
    #: Fields holding datetimes: DATETIME ones, then the timestamps (computed).
    datetime_fields: tuple[str, ...] = field(init=False, repr=False, compare=False)
    #: Filterable string fields (the key, indexed strings): validation's fast path for
    #: the common filter, one plain string on one of them (computed).
    text_filters: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        declared = tuple(n for n, t in self.field_types.items() if t is FieldType.DATETIME)
        stamps = ("created_at", "updated_at") if self.timestamps else ()
        object.__setattr__(self, "datetime_fields", (*declared, *stamps))
        text = (FieldType.KEY, FieldType.INDEXED_STR)
        object.__setattr__(
            self,
            "text_filters",
            frozenset(n for n in self.filterable if self.field_types.get(n) in text),
        )

    @property
    def data_fields(self) -> tuple[str, ...]:
        """Every caller-settable field, key first."""
        return tuple(self.field_types)

    @property
    def all_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self.record))

    def nullable(self, name: str) -> bool:
        """True when the field may hold None."""
        ftype = self.field_types.get(name)
        return ftype in (FieldType.OPT_STR, FieldType.JSON) or name in self.optional

    def key_of(self, record: R) -> str:
        key: str = getattr(record, self.key)
        return key

    def __repr__(self) -> str:
        return f"KindSpec({self.name!r})"


class KindRegistry:
    """Every declared kind, by name and by record type (thread-safe registration)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_name: dict[str, KindSpec[Any]] = {}
        self.by_record: dict[type[Any], KindSpec[Any]] = {}

    def add(self, spec: KindSpec[Any], same_shape: Any) -> KindSpec[Any]:
        """Register `spec`; a kind of that name already registered is returned when
        `same_shape(old, new)` finds nothing different (it raises otherwise)."""
        with self._lock:
            old = self.by_name.get(spec.name)
            if old is not None:
                same_shape(old, spec)
                return old
            for other in self.by_name.values():
                for attr in ("table", "category"):
                    if getattr(other, attr) == getattr(spec, attr):
                        raise ValidationError(
                            "kind",
                            f"{spec.name!r} uses {attr} {getattr(spec, attr)!r}, which kind "
                            f"{other.name!r} already uses",
                        )
            if spec.record in self.by_record:
                raise ValidationError(
                    "kind",
                    f"{spec.record.__name__} is already the record of kind "
                    f"{self.by_record[spec.record].name!r}",
                )
            self.by_name[spec.name] = spec
            self.by_record[spec.record] = spec
            return spec


KIND_REGISTRY = KindRegistry()


@overload
def spec_for(kind: KindSpec[R]) -> KindSpec[R]: ...
@overload
def spec_for(kind: str) -> KindSpec[Any]: ...
def spec_for(kind: str | KindSpec[Any]) -> KindSpec[Any]:
    """Resolve a kind name (or a spec) to its spec, with a clear error for unknown names."""
    if isinstance(kind, KindSpec):
        return kind
    try:
        return KIND_REGISTRY.by_name[kind]
    except (KeyError, TypeError):
        known = ", ".join(KIND_REGISTRY.by_name)
        raise ValidationError("kind", f"unknown kind {kind!r}; known: {known}") from None


def registered_kinds() -> dict[str, KindSpec[Any]]:
    """Every declared kind by name, the built-in ones first, in declaration order."""
    return dict(KIND_REGISTRY.by_name)
