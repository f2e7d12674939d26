"""Opening, provisioning and securing an Askar store.

Kept apart from the record operations: this is where existing data is either kept
(open) or dropped (recreate), and where a new SQLite file is made owner-only.

Every worker of a server opens the store at start-up, so opening (which provisions a
missing store) and recreating are serialised between processes: a flock on
`<file>.lock` beside a SQLite store, a transaction-level advisory lock on PostgreSQL
(provisioning.py). Whoever waited then finds the store in place and just opens it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

from storage_core.errors import BackendUnavailableError
from storage_core.filelock import FileLock
from webvh_storage_askar.config import AskarConfig
from webvh_storage_askar.errors import Code, code_of
from webvh_storage_askar.provisioning import PostgresLock

OWNER_ONLY = 0o600
_SQLITE_SIDE_FILES = ("", "-wal", "-shm", "-journal")


async def open_store(store_cls: Any, config: AskarConfig, *, recreate: bool = False) -> Any:
    """Open the store, creating it when missing; `recreate` drops all data first.

    `store_cls` is `aries_askar.Store`, passed in by the backend (the one module that
    imports aries_askar). An existing store is opened with `Store.open` so its data is
    never touched; `Store.provision` runs only for a new (or recreated) store. Returns
    a store whose profile (if configured) exists.
    """
    async with _exclusive(config):
        return await _open_store(store_cls, config, recreate=recreate)


@contextlib.asynccontextmanager
async def _exclusive(config: AskarConfig) -> AsyncIterator[None]:
    """Held while the store is opened or provisioned; waits in a worker thread so the
    backend's event loop keeps running."""
    if config.in_memory:  # private to this instance
        yield
        return
    path = config.sqlite_path
    lock: FileLock | PostgresLock
    if path is None:
        lock = PostgresLock(config)
        await _waiting_aside(lock)
    else:
        lock = FileLock(path)
        try:
            await _waiting_aside(lock)
        except OSError as exc:
            raise _unavailable(path, exc) from None
    try:
        yield
    finally:
        lock.release()


class _Lock(Protocol):
    def acquire(self) -> object: ...

    def release(self) -> None: ...


async def _waiting_aside(lock: _Lock) -> None:
    """`lock.acquire()` on a thread of its own, joined when done (not the loop's
    executor, whose idle threads would outlive the backend's close). A caller cancelled
    while waiting never holds it: the lock is released as soon as it is acquired."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:  # on the loop's thread
        if done.cancelled():
            if error is None:
                lock.release()
        elif error is None:
            done.set_result(None)
        else:
            done.set_exception(error)

    def run() -> None:
        error: BaseException | None = None
        try:
            lock.acquire()
        except BaseException as exc:  # handed to the waiting coroutine
            error = exc
        try:
            loop.call_soon_threadsafe(settle, error)
        except RuntimeError:  # the loop is gone: nobody will use the lock
            if error is None:
                lock.release()

    thread = threading.Thread(target=run, name="askar-provision-lock", daemon=True)
    thread.start()
    await done  # cancelled: the thread ends on its own once acquire() returns
    thread.join()


async def _open_store(store_cls: Any, config: AskarConfig, *, recreate: bool) -> Any:
    path = config.sqlite_path
    if path is not None:
        if recreate:
            # Askar's own recreate deletes and re-creates the file with the umask's
            # mode; removing it here lets the new file be created owner-only below.
            _remove_sqlite_files(path)
        if _is_new_file(path):
            _create_owner_only(path)
            store = await _provision(store_cls, config, recreate=False)
        else:
            store = await store_cls.open(config.uri, config.key_method, config.key)
        restrict_file_mode(path)
    elif recreate or config.in_memory:
        store = await _provision(store_cls, config, recreate=recreate)
    else:
        store = await _open_or_provision_postgres(store_cls, config)
    try:
        await ensure_profile(store, config.profile)
    except BaseException:
        await store.close()
        raise
    return store


async def _open_or_provision_postgres(store_cls: Any, config: AskarConfig) -> Any:
    try:
        return await store_cls.open(config.uri, config.key_method, config.key)
    except Exception as exc:  # an AskarError; _means_missing reads its code
        if not _means_missing(exc):
            raise
    return await _provision(store_cls, config, recreate=False)


async def _provision(store_cls: Any, config: AskarConfig, *, recreate: bool) -> Any:
    return await store_cls.provision(
        config.uri, config.key_method, config.key, profile=config.profile, recreate=recreate
    )


def _means_missing(exc: BaseException) -> bool:
    """Store.open failed because there is no store yet (not because of a bad key):
    a missing database, or an empty one without Askar's tables."""
    code = code_of(exc)
    if code == Code.NOT_FOUND:
        return True
    text = str(exc).lower()
    return code == Code.BACKEND and ("does not exist" in text or "no such table" in text)


async def ensure_profile(store: Any, profile: str | None) -> None:
    """Create the configured profile in an existing store that lacks it."""
    if profile and profile not in await store.list_profiles():
        await store.create_profile(profile)


def _is_new_file(path: Path) -> bool:
    """No database yet: the file is missing or empty (SQLite treats both as new)."""
    try:
        return path.stat().st_size == 0
    except FileNotFoundError:
        return True
    except OSError as exc:  # e.g. a parent that is a regular file
        raise _unavailable(path, exc) from None


def _create_owner_only(path: Path) -> None:
    """Create the database file empty with mode 0600 before SQLite opens it, so it is
    never readable by others (SQLite gives -wal/-shm the database file's mode)."""
    try:
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, OWNER_ONLY))
        os.chmod(path, OWNER_ONLY)
    except OSError as exc:
        raise _unavailable(path, exc) from None


def _unavailable(path: Path, exc: OSError) -> BackendUnavailableError:
    return BackendUnavailableError(
        f"cannot open or create the Askar store file {str(path)!r}: {exc.strerror or exc}"
    )


def _remove_sqlite_files(path: Path) -> None:
    for suffix in _SQLITE_SIDE_FILES:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            path.with_name(path.name + suffix).unlink()


def restrict_file_mode(path: Path) -> None:
    """chmod 0600 the database file and its -wal/-shm/-journal companions if present."""
    for suffix in _SQLITE_SIDE_FILES:
        side = path.with_name(path.name + suffix)
        with contextlib.suppress(FileNotFoundError):
            os.chmod(side, OWNER_ONLY)
