"""FastAPI glue every server on this library writes by hand: open and provision the store
in the application's lifespan, hand it to handlers as a dependency, and turn storage
errors into HTTP answers that say what went wrong without leaking how.

    from storage_core.fastapi import Storage, install_error_handlers, storage_lifespan

    app = FastAPI(lifespan=storage_lifespan())  # AsyncStorageManager() from the environment
    install_error_handlers(app)

    @app.get("/tasks/{task_id}")
    async def task(task_id: str, storage: Storage) -> dict[str, str]: ...

A server under concurrent load wants `storage_lifespan(freeze_gc=True)` (`frozen_gc`: the
garbage collector's full collections then skip what start-up built).

Error mapping (`install_error_handlers`); every body is an RFC 9457 problem document
(`application/problem+json`: `type`, `title`, `status`, `detail`):

- `ValidationError`, and FastAPI's own `RequestValidationError` (a path, query or body
  parameter of the wrong type): 422, with `field` naming the bad input.
- `DuplicateRecordError`: 409.
- `ConflictError`: 412 when the request carried a precondition (an `If-Match` header or
  an `expected_version` query parameter), since the client's own condition failed; else
  409 (a read-modify-write the server did on the client's behalf lost a race; retry).
  Both carry `current_version`.
- `BackendUnavailableError`: 503 with `Retry-After`.
- any other `StorageError` or exception: 500 with a fixed body (no message, no
  traceback: those may name hosts, paths or values); logged server-side.

Needs the `fastapi` extra: `pip install 'webvh-storage[fastapi]'`.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager, nullcontext
from typing import Annotated, Any

from storage_core.async_manager import AsyncStorageManager
from storage_core.errors import (
    BackendUnavailableError,
    ConflictError,
    DuplicateRecordError,
    StorageError,
    ValidationError,
)
from storage_core.install_hints import missing_module_hint

try:
    from fastapi import Depends, FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
except ModuleNotFoundError as exc:
    raise ImportError(missing_module_hint("fastapi"), name="fastapi") from exc

__all__ = [
    "PRECONDITION_HEADER",
    "PRECONDITION_QUERY",
    "PROBLEM_JSON",
    "Storage",
    "attach_storage",
    "frozen_gc",
    "get_storage",
    "install_error_handlers",
    "storage_lifespan",
]

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
#: What makes a request conditional, so that a ConflictError answers 412, not 409.
PRECONDITION_HEADER = "if-match"
PRECONDITION_QUERY = "expected_version"
#: Seconds a client is told to wait after a 503 (`Retry-After`), unless configured.
DEFAULT_RETRY_AFTER = 5

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


@asynccontextmanager
async def attach_storage(
    app: FastAPI, storage: AsyncStorageManager | None = None, *, provision: bool = True
) -> AsyncIterator[AsyncStorageManager]:
    """Open `storage` (default: the process-wide `AsyncStorageManager()` from the
    environment), provision it once (`provision=False` when a deploy step runs
    `storage-core db upgrade`), keep it on `app.state.storage` for `get_storage`, and
    close it when the block ends. For use inside an application's own lifespan:

        @asynccontextmanager
        async def lifespan(app):
            async with attach_storage(app) as storage:
                ...  # the app's own start-up, with the store ready
                yield

    The store is first used here, in the server's event loop: stores bound to one loop
    (Askar's native async face) then serve every request of that loop. The process-wide
    instance is forgotten at shutdown (`AsyncStorageManager.reset()`), so a new lifespan
    (a test's second app, a reload) builds a fresh one."""
    process_wide = storage is None
    store = AsyncStorageManager() if storage is None else storage
    try:
        if provision:
            await store.provision()
        app.state.storage = store
        yield store
    finally:
        app.state.storage = None
        if process_wide and AsyncStorageManager._instance is store:
            await AsyncStorageManager.reset()
        else:
            await store.aclose()


@contextmanager
def frozen_gc() -> Iterator[None]:
    """Move every object alive now out of the cyclic garbage collector's reach
    (`gc.collect()`, then `gc.freeze()`) for the block; unfrozen at its end unless
    something was frozen before (a pre-fork server's own freeze stays).

    Why a server wants it: after start-up a process holds ~120k long-lived objects
    (FastAPI, pydantic, SQLAlchemy, the drivers: classes, functions, module dicts), and
    under concurrent requests every full collection walks them all, 60-120 ms in one
    go on the event loop (benchmarks/README.md, "Server"). Many requests in flight keep
    their objects alive across awaits, so they are promoted and full collections come
    every few hundred requests. Frozen, a full collection walks only what was created
    since. Process-wide, hence opt-in; the cost: a frozen object that later becomes
    cyclic garbage is not collected while frozen (start-up's objects rarely do)."""
    already = gc.get_freeze_count() > 0
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        if not already:
            gc.unfreeze()


def storage_lifespan(
    storage: AsyncStorageManager | Callable[[], AsyncStorageManager] | None = None,
    *,
    provision: bool = True,
    lifespan: Lifespan | None = None,
    freeze_gc: bool = False,
) -> Lifespan:
    """A lifespan for `FastAPI(lifespan=...)`: `attach_storage` around the app's own
    `lifespan` (which then runs with the store ready and ends before it closes).

    `storage` is a store, a factory called at each start-up (so the configuration is read
    when the server starts, not when the module is imported), or None for the
    process-wide `AsyncStorageManager()`. `freeze_gc`: serve inside `frozen_gc()`, entered
    once the store is provisioned and the app's own start-up has run (so what they
    imported and built is frozen too)."""

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        store = storage() if callable(storage) else storage
        async with (
            attach_storage(app, store, provision=provision),
            nullcontext() if lifespan is None else lifespan(app),
        ):
            with frozen_gc() if freeze_gc else nullcontext():
                yield

    return run


async def get_storage(request: Request) -> AsyncStorageManager:
    """The dependency: the store the lifespan attached to the application. A coroutine
    on purpose: FastAPI runs a plain `def` dependency on its thread pool, one thread
    hop per request (under 200 concurrent requests that hop cost the async API most of
    its throughput and held the loop up to 100 ms: benchmarks/README.md, "Server")."""
    storage = getattr(request.app.state, "storage", None)
    if not isinstance(storage, AsyncStorageManager):
        raise RuntimeError(
            "no storage attached to the application: create it with "
            "FastAPI(lifespan=storage_lifespan()) or use attach_storage in its lifespan"
        )
    return storage


#: Annotate a handler parameter with it: `async def h(storage: Storage)`.
Storage = Annotated[AsyncStorageManager, Depends(get_storage)]


def is_conditional(request: Request) -> bool:
    """Did the client state which version it expected (If-Match / ?expected_version=)?"""
    return PRECONDITION_HEADER in request.headers or PRECONDITION_QUERY in request.query_params


def problem(
    status: int, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """An RFC 9457 problem document."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def problem_for(exc: Exception, request: Request, retry_after: int) -> JSONResponse:
    """The HTTP answer for an exception a handler let through (see the module's table).
    Only messages the library builds from the caller's own input reach the body."""
    if isinstance(exc, ValidationError):
        return problem(422, "Invalid input", str(exc), field=exc.field)
    if isinstance(exc, RequestValidationError):
        # FastAPI's own checks of the declared parameters: the first one that failed,
        # named as the client wrote it (`expected_version`, `body`), without its value.
        first = exc.errors()[0] if exc.errors() else {}
        where = [str(part) for part in first.get("loc", ())]
        if first.get("type") == "json_invalid" or len(where) < 2:
            field = where[0] if where else "request"  # the body as a whole
        else:
            field = ".".join(where[1:])  # past "query" / "path" / "body"
        return problem(422, "Invalid input", f"{field}: {first.get('msg', 'invalid')}", field=field)
    if isinstance(exc, DuplicateRecordError):
        return problem(409, "Already exists", str(exc))
    if isinstance(exc, ConflictError):
        if is_conditional(request):
            return problem(412, "Precondition failed", str(exc), current_version=exc.actual)
        return problem(409, "Conflict", str(exc), current_version=exc.actual)
    if isinstance(exc, BackendUnavailableError):
        logger.warning("storage unavailable: %s", exc)  # masked by the library
        return problem(
            503,
            "Storage unavailable",
            "the storage backend cannot be reached; retry later",
            headers={"Retry-After": str(retry_after)},
        )
    if isinstance(exc, StorageError):
        logger.error("storage error on %s %s: %s", request.method, request.url.path, exc)
    else:
        logger.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path)
    return problem(500, "Internal server error", "the server could not complete the request")


def install_error_handlers(app: FastAPI, *, retry_after: int = DEFAULT_RETRY_AFTER) -> None:
    """Map every `StorageError`, and any other exception, to a problem response.
    `retry_after` is the `Retry-After` (seconds) sent with 503."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        return problem_for(exc, request, retry_after)

    app.add_exception_handler(StorageError, handle)
    app.add_exception_handler(RequestValidationError, handle)
    app.add_exception_handler(Exception, handle)
