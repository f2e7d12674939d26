"""Secrets stay secret: database passwords and the Askar key appear nowhere a log
collector, an error tracker or a terminal could pick them up, and store files are
readable by their owner only.

Everything a caller can see is gathered - log records of every logger at every level
(SQLAlchemy's engine logger included), str/repr of errors and of their whole
__cause__/__context__ chain, formatted tracebacks, reprs of the manager, settings and
backend, `info()`, and the CLI's stdout/stderr - and searched for each secret, in the
form written in the URL and URL-decoded.

Reproduce: `uv run pytest tests/test_reliability_secrets.py -q`
"""

from __future__ import annotations

import logging
import os
import stat
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from storage_core import StorageManager, open_storage
from storage_core.cli import main as cli_main
from storage_core.config import Settings
from storage_core.errors import ConflictError, StorageError
from tests.pg import require_pg

PASSWORD = "Sup3r/S3cret:pw@x"  # characters that need URL-encoding, too
PASSWORD_IN_URL = quote(PASSWORD, safe="")
SECRETS = (PASSWORD, PASSWORD_IN_URL, "Sup3r")


def secret_free(text: str, secrets: tuple[str, ...] = SECRETS) -> bool:
    return not any(secret in text for secret in secrets)


def error_texts(exc: BaseException) -> Iterator[str]:
    """str, repr and args of the error and of every exception chained to it (even a
    suppressed __context__ stays reachable from the object), plus the traceback."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield str(current)
        yield repr(current)
        yield from (repr(arg) for arg in current.args)
        stack += [current.__cause__, current.__context__]
    yield "".join(traceback.format_exception(exc))


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record of every logger, down to level 1 (Askar's TRACE is 5)."""
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(1)
    for name in ("sqlalchemy.engine", "sqlalchemy.pool", "alembic", "aries_askar"):
        logging.getLogger(name).setLevel(1)
    caplog.set_level(1)
    try:
        yield caplog
    finally:
        root.setLevel(old_level)
        for name in ("sqlalchemy.engine", "sqlalchemy.pool", "alembic", "aries_askar"):
            logging.getLogger(name).setLevel(logging.NOTSET)


def logged_text(caplog: pytest.LogCaptureFixture) -> str:
    parts = []
    for record in caplog.records:
        parts.append(record.getMessage())
        parts.append(repr(record.args))
        if record.exc_info and record.exc_info[1] is not None:
            parts.extend(error_texts(record.exc_info[1]))
    return "\n".join(parts)


def exercise(manager: StorageManager) -> list[str]:
    """Normal use plus a conflict; returns every text the caller got to see."""
    seen = [repr(manager), str(manager), repr(manager.settings), repr(manager.backend)]
    manager.init_db(recreate=True)
    manager.create_task("t1", "type", "started", {"p": 1})
    manager.update_task("t1", status="done")
    seen += [repr(manager.get_task("t1")), repr(manager.get_tasks())]
    try:
        manager.update_task("t1", expected_version=1, status="stale")
    except ConflictError as exc:
        seen += list(error_texts(exc))
    seen.append(repr(manager.info()))
    seen.append(repr(manager.backend.describe()))
    return seen


def pg_urls(pg_server: Any) -> tuple[str, str]:
    """(SQLAlchemy URL, Askar URI) with a password; trust auth ignores it."""
    require_pg(pg_server)
    sql_db = pg_server.create_database("webvh_rel_secret")
    askar_db = pg_server.create_database("webvh_rel_secret_askar")
    auth = f"postgres:{PASSWORD_IN_URL}@127.0.0.1:5432"
    return (
        f"postgresql+psycopg2://{auth}/{sql_db}",
        f"postgres://{auth}/{askar_db}?max_connections=2",
    )


UNREACHABLE_SQL = f"postgresql+psycopg2://postgres:{PASSWORD_IN_URL}@127.0.0.1:1/db"
UNREACHABLE_ASKAR = f"postgres://postgres:{PASSWORD_IN_URL}@127.0.0.1:1/db?connect_timeout=2"


# --- passwords in database URLs ----------------------------------------------------------


@pytest.mark.timeout(60)
def test_url_passwords_never_reach_logs_reprs_info_or_errors(pg_server, all_logs):
    sql_url, askar_uri = pg_urls(pg_server)
    seen: list[str] = []
    for backend, url in (("sqlalchemy", sql_url), ("askar", askar_uri)):
        with open_storage(backend, url) as manager:
            seen += exercise(manager)
    for backend, url in (("sqlalchemy", UNREACHABLE_SQL), ("askar", UNREACHABLE_ASKAR)):
        timeout = {"connect_timeout": 2} if backend == "sqlalchemy" else {}  # Askar: in the URL
        manager = StorageManager(Settings.from_env(backend=backend, url=url, **timeout))
        seen += [repr(manager), repr(manager.settings), repr(manager.backend)]
        with pytest.raises(StorageError) as failure:
            manager.init_db()
        seen += list(error_texts(failure.value))
        with pytest.raises(StorageError) as failure:
            manager.get_task("t1")
        seen += list(error_texts(failure.value))
        assert manager.health_check() is False
        manager.close()
    leaks = [text for text in seen if not secret_free(text)]
    assert leaks == [], leaks[:3]
    assert all_logs.records, "logging was not captured at all"
    assert secret_free(logged_text(all_logs)), "a password was logged"


@pytest.mark.timeout(60)
def test_passwords_from_the_environment_are_masked_too(pg_server, monkeypatch, all_logs):
    """POSTGRES_PASSWORD (URL built from parts) and DATABASE_URL, as deployments use."""
    require_pg(pg_server)
    db = pg_server.create_database("webvh_rel_secret_env")
    monkeypatch.setenv("POSTGRES_USER", "postgres")
    monkeypatch.setenv("POSTGRES_PASSWORD", PASSWORD)
    monkeypatch.setenv("POSTGRES_SERVER_NAME", "127.0.0.1")
    monkeypatch.setenv("POSTGRES_DB", db)
    seen: list[str] = []
    with StorageManager(Settings.from_env()) as manager:
        seen += exercise(manager)
    monkeypatch.setenv("POSTGRES_SERVER_PORT", "1")
    monkeypatch.setenv("STORAGE_CONNECT_TIMEOUT", "2")
    with StorageManager(Settings.from_env()) as manager, pytest.raises(StorageError) as failure:
        manager.get_task("x")
    seen += list(error_texts(failure.value))
    leaks = [text for text in seen if not secret_free(text)]
    assert leaks == [], leaks[:3]
    assert secret_free(logged_text(all_logs))


@pytest.mark.timeout(60)
def test_cli_output_and_errors_hide_passwords(pg_server, capsys, all_logs):
    sql_url, askar_uri = pg_urls(pg_server)
    outputs = []
    for backend, url in (("sqlalchemy", sql_url), ("askar", askar_uri)):
        for argv in (
            ["init-db", "--backend", backend, "--url", url, "--info"],
            ["info", "--backend", backend, "--url", url],
            ["info", "--backend", backend, "--url", url, "--json"],
        ):
            assert cli_main(argv) == 0, argv
            outputs.append(capsys.readouterr())
    for backend, url in (("sqlalchemy", UNREACHABLE_SQL), ("askar", UNREACHABLE_ASKAR)):
        for argv in (
            ["info", "--backend", backend, "--url", url],
            ["init-db", "--backend", backend, "--url", url],
        ):
            assert cli_main(argv) != 0, argv
            captured = capsys.readouterr()
            assert "error" in captured.err, captured
            outputs.append(captured)
    assert cli_main(["backends"]) == 0
    outputs.append(capsys.readouterr())
    for captured in outputs:
        assert secret_free(captured.out + captured.err), captured
    assert any("***" in c.out for c in outputs), "the masked URL is still shown"
    assert secret_free(logged_text(all_logs))


# --- the Askar key -------------------------------------------------------------------------


@pytest.fixture
def askar_key() -> str:
    from aries_askar import Store

    return Store.generate_raw_key()


def test_askar_key_never_reaches_logs_reprs_info_or_errors(tmp_path, askar_key, all_logs):
    secrets = (askar_key,)
    url = f"sqlite://{tmp_path}/keyed.db"
    seen: list[str] = []
    with open_storage("askar", url, key_method="raw", key=askar_key) as manager:
        seen += exercise(manager)
        seen.append(repr(manager.backend.config))
    from aries_askar import Store

    with open_storage("askar", url, key_method="raw", key=Store.generate_raw_key()) as wrong:
        with pytest.raises(StorageError) as failure:
            wrong.get_task("t1")
        seen += list(error_texts(failure.value))
    with (
        open_storage(
            "askar", f"sqlite://{tmp_path}/no/such\0dir.db", key_method="raw", key=askar_key
        ) as broken,
        pytest.raises(StorageError) as failure,
    ):
        broken.init_db()
    seen += list(error_texts(failure.value))
    leaks = [text for text in seen if not secret_free(text, secrets)]
    assert leaks == [], leaks[:3]
    assert secret_free(logged_text(all_logs), secrets)


def test_cli_with_askar_key_in_the_environment(tmp_path, askar_key, monkeypatch, capsys):
    monkeypatch.setenv("ASKAR_KEY", askar_key)
    monkeypatch.setenv("ASKAR_KEY_METHOD", "raw")
    url = f"sqlite://{tmp_path}/cli.db"
    assert cli_main(["init-db", "--backend", "askar", "--url", url, "--info"]) == 0
    assert cli_main(["info", "--backend", "askar", "--url", url, "--json"]) == 0
    ok = capsys.readouterr()
    monkeypatch.setenv("ASKAR_KEY", askar_key[:-4] + "AAAA")  # wrong, but similar
    assert cli_main(["info", "--backend", "askar", "--url", url]) != 0
    failed = capsys.readouterr()
    assert "wrong Askar key" in failed.err
    for captured in (ok, failed):
        text = captured.out + captured.err
        assert askar_key not in text and askar_key[:-4] not in text, text


# --- file permissions ------------------------------------------------------------------------


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """umask 0: files get exactly the mode the code asks for, so nothing relies on a
    restrictive umask being set by the deployment."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _modes(directory: Path, name: str) -> dict[str, int]:
    return {
        p.name: stat.S_IMODE(p.stat().st_mode)
        for p in directory.iterdir()
        if p.name.startswith(name)
    }


@pytest.mark.parametrize(
    ("backend", "template"),
    [
        ("sqlalchemy", "sqlite:///{dir}/private.db"),
        ("sqlalchemy", "sqlite:///file:{dir}/private.db?mode=rwc&uri=true"),  # issue 15 #9
        ("sqlalchemy", "sqlite:///file://{dir}/private.db?uri=true"),
        ("askar", "sqlite://{dir}/private.db"),
    ],
)
def test_store_files_are_owner_only_including_wal_and_shm(
    backend, template, tmp_path, permissive_umask
):
    """The database and its -wal/-shm companions (which hold recent writes) are 0600,
    while the store is open and written to, and after it is closed and reopened, also
    when SQLite is given a `file:` URI that lets it create the file."""
    url = template.format(dir=tmp_path)
    with open_storage(backend, url) as manager:
        manager.init_db()
        manager.create_task("t", "type", "s")
        open_modes = _modes(tmp_path, "private.db")
        with open_storage(backend, url) as second:  # a second connection / process view
            second.get_task("t")
            open_modes |= _modes(tmp_path, "private.db")
    assert "private.db" in open_modes
    assert {"private.db-wal", "private.db-shm"} <= set(open_modes), open_modes
    assert set(open_modes.values()) == {0o600}, {k: oct(v) for k, v in open_modes.items()}
    with open_storage(backend, url) as manager:
        manager.init_db()
        manager.create_task("t2", "type", "s")
        assert set(_modes(tmp_path, "private.db").values()) == {0o600}


# --- credentials in URLs that do not parse ---------------------------------------------------

TYPO_SECRET = "Typ0Secr3tPw"
SPACE_SECRET = "sp ace Pw9"
#: URL shapes seen in the field that no URL parser reads as credentials: a missing
#: colon after the scheme, a single slash, a raw space or `@` in the password.
MALFORMED_URLS = {
    "sqlalchemy": [
        f"postgres//postgres:{TYPO_SECRET}@127.0.0.1:1/db",
        f"postgresql+psycopg2://postgres:{SPACE_SECRET}@127.0.0.1:1/db",
        f"postgresql+psycopg2:/postgres:{TYPO_SECRET}@127.0.0.1:1/db",
    ],
    "askar": [
        f"postgres//postgres:{TYPO_SECRET}@127.0.0.1:1/db",
        f"postgres://postgres:{SPACE_SECRET}@127.0.0.1:1/db?connect_timeout=1",
        f"postgres://postgres:{TYPO_SECRET}@x@127.0.0.1:1/db?connect_timeout=1",
    ],
}
MALFORMED_SECRETS = (TYPO_SECRET, SPACE_SECRET, "sp ace", quote(SPACE_SECRET))


@pytest.mark.timeout(120)
def test_credentials_in_malformed_urls_are_masked_everywhere(tmp_path, capsys, all_logs):
    """Issue 15 #3: every message, repr, log record (all loggers, DEBUG and below), CLI
    line and migration report/progress line produced for a malformed URL is searched
    for the password."""
    seen: list[str] = []
    for backend, urls in MALFORMED_URLS.items():
        for url in urls:
            settings = Settings.from_env(backend=backend, url=url, connect_timeout=1)
            seen.append(repr(settings))
            try:
                manager = StorageManager(settings)
            except StorageError as exc:  # refused while opening: the error is what shows
                seen += list(error_texts(exc))
                continue
            seen += [repr(manager), str(manager.masked_url), repr(manager.backend)]
            for call in (manager.init_db, lambda m=manager: m.get_task("t"), manager.info):
                try:
                    seen.append(repr(call()))
                except StorageError as exc:
                    seen += list(error_texts(exc))
            manager.close()
            for argv in (
                ["init-db", "--backend", backend, "--url", url, "--info"],
                ["info", "--backend", backend, "--url", url, "--json"],
            ):
                cli_main(argv)
                captured = capsys.readouterr()
                seen += [captured.out, captured.err]
    report = tmp_path / "report.json"
    for askar in MALFORMED_URLS["askar"]:
        target = f"sqlite:///{tmp_path}/target.db"
        cli_main(["migrate-askar", "--askar", askar, "--to", target, "--report", str(report)])
        captured = capsys.readouterr()
        seen += [captured.out, captured.err]
        if report.exists():
            seen.append(report.read_text())
    leaks = [text for text in seen if not secret_free(text, MALFORMED_SECRETS)]
    assert leaks == [], leaks[:3]
    assert any("***" in text for text in seen), "the masked URLs are still shown"
    assert secret_free(logged_text(all_logs), MALFORMED_SECRETS), "a password was logged"


_URL_SHAPES = [
    "postgres//u:{pw}@h/db",
    "postgres:/u:{pw}@h/db",
    "failed: connect to postgresql://u:{pw}@h:5432/db?sslmode=require (timeout)",
]
#: Without `//` before it, a password ends at a space, `@` or colon.
_BARE_SHAPES = ["u:{pw}@h/db", "host=h password={pw} user=u", "postgresql://h/db?password={pw}&x=1"]


@pytest.mark.parametrize(
    ("text", "pw"),
    [(t, pw) for t in _URL_SHAPES for pw in ("s3cret", "s p a c e", "at@sign", "colon:pw")]
    + [(t, "s3cret") for t in _BARE_SHAPES],
)
def test_mask_url_hides_credentials_in_any_url_shape(text, pw):
    from storage_core.masking import mask_url

    masked = mask_url(text.format(pw=pw)) or ""
    assert pw not in masked and "***" in masked, masked
