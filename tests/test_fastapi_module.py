"""storage_core.fastapi: the lifespan opens, provisions and closes the store; the
dependency hands it to handlers; storage errors become problem responses that say what
went wrong without leaking how. Errors come from real stores (SQLite files, a dead
PostgreSQL port), not from stand-ins."""

from __future__ import annotations

import gc
import importlib
import json
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Body, FastAPI

from storage_core import (
    AsyncStorageManager,
    BackendUnavailableError,
    StorageError,
    open_async_storage,
)
from storage_core.errors import StorageIOError
from storage_core.fastapi import (
    PROBLEM_JSON,
    Storage,
    attach_storage,
    get_storage,
    install_error_handlers,
    storage_lifespan,
)
from tests.conftest import ROOT
from tests.test_typing import mypy

SECRET = "s3cr3t-pa55"
JSON = {"content-type": "application/json"}


def client_for(app: FastAPI) -> httpx.AsyncClient:
    # raise_app_exceptions=False: the server's answer to an unhandled exception is what
    # we check, as a client sees it (Starlette re-raises it after answering, for logs).
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def tasks_app(**lifespan_options: Any) -> FastAPI:
    """Routes that run real storage calls, so each error is the store's own."""
    app = FastAPI(lifespan=storage_lifespan(**lifespan_options))
    install_error_handlers(app, retry_after=7)

    @app.post("/tasks/{task_id}", status_code=201)
    async def create(task_id: str, storage: Storage) -> dict[str, Any]:
        task = await storage.create_task(task_id, "sync", "new")
        return {"task_id": task.task_id, "record_version": task.record_version}

    @app.put("/tasks/{task_id}")
    async def update(
        task_id: str, version: int, storage: Storage, expected_version: int | None = None
    ) -> dict[str, Any]:
        """`version` is what the client claims (in If-Match or ?expected_version=) or
        what the server read for it (a plain query parameter): same call, other status."""
        task = await storage.update_task(task_id, expected_version=version, status="done")
        return {"record_version": None if task is None else task.record_version}

    @app.get("/tasks/{task_id}")
    async def read(task_id: str, storage: Storage) -> dict[str, Any]:
        task = await storage.get_task(task_id)
        return {"status": None if task is None else task.status}

    @app.get("/io-error")
    async def io_error() -> None:
        raise StorageIOError("disk full writing /var/lib/webvh/store.db")

    @app.get("/bug")
    async def bug() -> None:
        raise RuntimeError(f"password={SECRET} at postgresql://u:{SECRET}@db/x")

    return app


@pytest.fixture
async def sqlite_app(tmp_path: Path) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = tasks_app(storage=open_async_storage("sqlalchemy", f"sqlite:///{tmp_path}/t.db"))
    async with app.router.lifespan_context(app), client_for(app) as client:
        yield app, client


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["type"] == "about:blank" and body["status"] == status
    return dict(body)


# --- lifespan and dependency ------------------------------------------------------------
async def test_lifespan_provisions_at_start_and_closes_at_shutdown(tmp_path: Path) -> None:
    storage = open_async_storage("sqlalchemy", f"sqlite:///{tmp_path}/life.db")
    app = tasks_app(storage=storage)
    async with app.router.lifespan_context(app), client_for(app) as client:
        assert app.state.storage is storage
        created = await client.post("/tasks/t1")  # the schema exists: provisioned
        assert created.status_code == 201 and created.json()["record_version"] == 1
    assert app.state.storage is None
    with pytest.raises(BackendUnavailableError, match="closed"):
        await storage.get_task("t1")


async def test_without_a_store_the_process_wide_one_is_built_at_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The environment is read when the server starts (not at import), and the
    process-wide instance is forgotten at shutdown so the next start builds a new one."""
    await AsyncStorageManager.reset()
    app = tasks_app()
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/env.db")
    async with app.router.lifespan_context(app), client_for(app) as client:
        first = app.state.storage
        assert first is AsyncStorageManager() and first.backend_name == "sqlalchemy"
        assert (await client.post("/tasks/t1")).status_code == 201
    assert (tmp_path / "env.db").exists()
    with pytest.raises(BackendUnavailableError):
        await first.get_task("t1")

    monkeypatch.setenv("STORAGE_BACKEND", "askar")
    monkeypatch.setenv("ASKAR_DB", f"sqlite://{tmp_path}/env-askar.db")
    async with app.router.lifespan_context(app), client_for(app) as client:
        assert app.state.storage is not first and app.state.storage.backend_name == "askar"
        assert (await client.get("/tasks/t1")).json() == {"status": None}
    await AsyncStorageManager.reset()


async def test_a_factory_is_called_at_each_start_up(tmp_path: Path) -> None:
    opened: list[AsyncStorageManager] = []

    def factory() -> AsyncStorageManager:
        opened.append(open_async_storage("sqlalchemy", f"sqlite:///{tmp_path}/f.db"))
        return opened[-1]

    app = tasks_app(storage=factory)
    for _ in range(2):
        async with app.router.lifespan_context(app), client_for(app) as client:
            assert (await client.get("/tasks/x")).status_code == 200
    assert len(opened) == 2 and opened[0] is not opened[1]


async def test_the_apps_own_lifespan_runs_inside_with_the_store_ready(tmp_path: Path) -> None:
    events: list[str] = []

    @asynccontextmanager
    async def own(app: FastAPI) -> AsyncIterator[None]:
        storage = get_storage_from(app)
        await storage.create_task("warm-up", "boot", "done")  # provisioned already
        events.append("own start")
        yield
        await storage.update_task("warm-up", status="stopped")  # not closed yet
        events.append("own stop")

    storage = open_async_storage("sqlalchemy", f"sqlite:///{tmp_path}/own.db")
    app = FastAPI(lifespan=storage_lifespan(storage, lifespan=own))
    async with app.router.lifespan_context(app):
        events.append("serving")
    assert events == ["own start", "serving", "own stop"]
    async with open_async_storage("sqlalchemy", f"sqlite:///{tmp_path}/own.db") as check:
        task = await check.get_task("warm-up")
        assert task is not None and task.status == "stopped"


def get_storage_from(app: FastAPI) -> AsyncStorageManager:
    storage = app.state.storage
    assert isinstance(storage, AsyncStorageManager)
    return storage


async def test_attach_storage_composes_inside_a_hand_written_lifespan(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/attach.db"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with attach_storage(app, open_async_storage("sqlalchemy", url)) as storage:
            await storage.create_task("boot", "boot", "done")
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/boot")
    async def boot(storage: Storage) -> dict[str, Any]:
        task = await storage.get_task("boot")
        return {"status": None if task is None else task.status}

    async with app.router.lifespan_context(app), client_for(app) as client:
        assert (await client.get("/boot")).json() == {"status": "done"}


async def test_provision_false_leaves_the_schema_to_the_deploy_step(tmp_path: Path) -> None:
    app = tasks_app(
        storage=open_async_storage("sqlalchemy", f"sqlite:///{tmp_path}/np.db"), provision=False
    )
    async with app.router.lifespan_context(app), client_for(app) as client:
        # No schema: the store reports the missing table, which is not the client's fault.
        response = await client.post("/tasks/t1")
        assert response.status_code in (500, 503)
        assert "log_entries" not in response.text and "tasks" not in response.json()["detail"]


async def test_freeze_gc_freezes_what_start_up_built_while_serving_only(tmp_path: Path) -> None:
    """Opt-in: off by default (a library leaves process-wide GC alone); on, what the
    store and the app's own start-up built is frozen while serving, thawed at shutdown."""
    built: list[object] = []

    @asynccontextmanager
    async def own(app: FastAPI) -> AsyncIterator[None]:
        built.append(["made at start-up"])  # a list: always tracked by the collector
        yield

    url = f"sqlite:///{tmp_path}/gc.db"
    plain = FastAPI(lifespan=storage_lifespan(open_async_storage("sqlalchemy", url)))
    assert gc.get_freeze_count() == 0
    async with plain.router.lifespan_context(plain):
        assert gc.get_freeze_count() == 0

    app = tasks_app(storage=open_async_storage("sqlalchemy", url), lifespan=own, freeze_gc=True)
    async with app.router.lifespan_context(app), client_for(app) as client:
        frozen = gc.get_freeze_count()
        assert gc.is_tracked(built[0]) and frozen > 0
        assert not any(o is built[0] for o in gc.get_objects())  # out of every generation
        assert (await client.post("/tasks/t1")).status_code == 201  # still serves
        later = ["made while serving"]
        assert any(o is later for o in gc.get_objects())  # new objects: collected as usual
    assert gc.get_freeze_count() == 0


async def test_freeze_gc_leaves_a_freeze_made_before_it(tmp_path: Path) -> None:
    """A pre-fork server may have frozen its parent's objects: shutdown keeps them so."""
    gc.freeze()
    try:
        before = gc.get_freeze_count()
        app = tasks_app(
            storage=open_async_storage("sqlalchemy", f"sqlite:///{tmp_path}/pre.db"),
            freeze_gc=True,
        )
        async with app.router.lifespan_context(app):
            assert gc.get_freeze_count() >= before
        assert gc.get_freeze_count() >= before > 0
    finally:
        gc.unfreeze()


async def test_a_handler_without_the_lifespan_gets_a_500_not_a_crash() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/x")
    async def x(storage: Storage) -> None: ...

    async with client_for(app) as client:
        body = problem(await client.get("/x"), 500)
    assert body["detail"] == "the server could not complete the request"
    with pytest.raises(RuntimeError, match="storage_lifespan"):
        await get_storage(_request_for(app))


def _request_for(app: FastAPI) -> Any:
    from starlette.requests import Request

    return Request({"type": "http", "app": app, "headers": [], "method": "GET", "path": "/"})


# --- error mapping ----------------------------------------------------------------------
async def test_validation_error_is_422_naming_the_field(sqlite_app: Any) -> None:
    _, client = sqlite_app
    body = problem(await client.post("/tasks/a%00b"), 422)
    assert body["field"] == "task_id" and body["title"] == "Invalid input"
    assert "task_id" in body["detail"]


async def test_duplicate_is_409(sqlite_app: Any) -> None:
    _, client = sqlite_app
    assert (await client.post("/tasks/t1")).status_code == 201
    body = problem(await client.post("/tasks/t1"), 409)
    assert body["title"] == "Already exists" and "t1" in body["detail"]


async def test_conflict_is_412_with_a_precondition_else_409(sqlite_app: Any) -> None:
    """412 when the client stated the version it expected (If-Match, or the
    expected_version query parameter): its own precondition failed. Else 409: the server
    conditioned the write on what it had read, and someone wrote in between."""
    _, client = sqlite_app
    await client.post("/tasks/t1")
    assert (await client.put("/tasks/t1", params={"version": 1})).status_code == 200
    stale = {"version": 1}
    conditional = [
        await client.put("/tasks/t1", params=stale, headers={"If-Match": '"1"'}),
        await client.put("/tasks/t1", params={**stale, "expected_version": 1}),
    ]
    for response in conditional:
        body = problem(response, 412)
        assert body["title"] == "Precondition failed" and body["current_version"] == 2
    body = problem(await client.put("/tasks/t1", params=stale), 409)
    assert body["title"] == "Conflict" and body["current_version"] == 2
    assert (await client.get("/tasks/t1")).json() == {"status": "done"}


async def test_unreachable_database_is_503_with_retry_after() -> None:
    """A real outage: nothing listens on the port. 503, Retry-After, and a body that
    names neither host, port nor credentials."""
    storage = open_async_storage(
        "sqlalchemy", f"postgresql+psycopg2://u:{SECRET}@127.0.0.1:1/x", connect_timeout=2
    )
    app = tasks_app(storage=storage, provision=False)
    async with app.router.lifespan_context(app), client_for(app) as client:
        for response in (await client.get("/tasks/t1"), await client.post("/tasks/t1")):
            body = problem(response, 503)
            assert response.headers["retry-after"] == "7"
            assert body["title"] == "Storage unavailable"
            for leak in (SECRET, "127.0.0.1", "refused", "Traceback"):
                assert leak not in response.text


async def test_other_errors_are_500_and_leak_nothing(
    sqlite_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _, client = sqlite_app
    for path in ("/io-error", "/bug"):
        response = await client.get(path)
        body = problem(response, 500)
        assert body == {
            "type": "about:blank",
            "title": "Internal server error",
            "status": 500,
            "detail": "the server could not complete the request",
        }
        for leak in (SECRET, "Traceback", "RuntimeError", "StorageIOError", "/var/lib"):
            assert leak not in response.text
    # The operator's log has the store's (already masked) message; an exception of the
    # application's own is logged by name only here (the server logs its traceback).
    assert "storage error on GET /io-error: disk full writing /var/lib" in caplog.text
    assert "unhandled RuntimeError on GET /bug" in caplog.text
    assert SECRET not in "".join(r.getMessage() for r in caplog.records)


async def test_storage_errors_are_the_documented_classes() -> None:
    """The handler is registered for StorageError itself, so every subclass a backend
    adds later (PluginError, ...) is mapped too, never FastAPI's plain-text 500."""
    app = FastAPI()
    install_error_handlers(app)
    assert StorageError in app.exception_handlers and Exception in app.exception_handlers


def test_without_fastapi_the_import_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "fastapi.responses", None)
    monkeypatch.delitem(sys.modules, "storage_core.fastapi")
    with pytest.raises(ImportError, match=r"pip install 'webvh-storage\[fastapi\]'"):
        importlib.import_module("storage_core.fastapi")


# --- the README's "Async and FastAPI" examples run as written -----------------------------
README_BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def readme_block(marker: str) -> str:
    (block,) = [b for b in README_BLOCKS if marker in b]
    return block


async def test_readme_async_example_runs(tmp_path: Path, vectors_dir: Path) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(readme_block("async def publish("), "README.md", "exec"), namespace)
    logs = [json.loads(line) for line in (vectors_dir / "suite-basic-update" / "did.jsonl").open()]
    async with open_async_storage("askar", f"sqlite://{tmp_path}/readme.db") as storage:
        assert await namespace["publish"](storage, "QmS", "did:webvh:QmS:example.com", logs) == 1
        entry = await storage.get_log_entry("QmS")
        assert entry is not None and entry.record_version == 2 and entry.logs == logs


async def test_readme_fastapi_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/readme.db")
    await AsyncStorageManager.reset()
    namespace: dict[str, Any] = {}
    exec(compile(readme_block("storage_lifespan()"), "README.md", "exec"), namespace)
    app = namespace["app"]
    try:
        async with app.router.lifespan_context(app), client_for(app) as client:
            await app.state.storage.create_task("t1", "sync", "started")
            assert (await client.get("/tasks/t1")).json() == {"status": "started"}
            assert problem(await client.get("/tasks/a%00b"), 422)["field"] == "task_id"
    finally:
        await AsyncStorageManager.reset()


async def test_fastapis_own_parameter_checks_are_problems_naming_the_field() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.put("/items/{item_id}")
    async def put(item_id: int, proofs: Annotated[list[int], Body()], limit: int = 1) -> None: ...

    async with client_for(app) as client:
        for kwargs, field in (
            ({"url": "/items/x", "json": []}, "item_id"),
            ({"url": "/items/1", "json": [], "params": {"limit": "many"}}, "limit"),
            ({"url": "/items/1", "json": {"a": 1}}, "body"),
            ({"url": "/items/1", "json": [1, "two"]}, "1"),
            ({"url": "/items/1", "content": b"[1,", "headers": JSON}, "body"),
            ({"url": "/items/1"}, "body"),
        ):
            response = await client.put(**kwargs)
            body = problem(response, 422)
            assert body["field"] == field, (kwargs, body)
            assert body["detail"].startswith(f"{field}: ")


@pytest.mark.parametrize("marker", ["async def publish(", "storage_lifespan()"])
def test_readme_examples_type_check_strictly(tmp_path: Path, marker: str) -> None:
    """A server's own mypy --strict accepts the README's code (the `Storage` alias and
    the lifespan's types included)."""
    status, output = mypy(tmp_path, readme_block(marker))
    assert status == 0, output
