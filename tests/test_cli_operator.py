"""`storage-core` as an operator meets it: the real console script in a subprocess, each
mistake answered by one line on stderr, no traceback, documented exit status."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from storage_core import open_storage
from storage_core.cli import main

SCRIPT = Path(sys.executable).with_name("storage-core")


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STORAGE_", "DATABASE_", "POSTGRES_", "ASKAR_"))
    }
    return {**env, **extra}


def run_cli(
    *args: str, cwd: Path, stdin: int | None = subprocess.DEVNULL, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        cwd=cwd,
        env=_env(**env),
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_line_error(run: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert run.returncode == 2, (run.returncode, run.stdout, run.stderr)
    assert "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("storage-core: error:"), lines
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def provisioned(tmp_path: Path, name: str = "store.db") -> str:
    url = f"sqlite:///{tmp_path}/{name}"
    with open_storage("sqlalchemy", url) as storage:
        storage.init_db()
        storage.create_task("t1", "sync_records", "started")
    return url


def test_version_prints_the_installed_version(tmp_path: Path) -> None:
    from importlib.metadata import version

    run = run_cli("--version", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"storage-core (webvh-storage) {version('webvh-storage')}"


def test_a_non_integer_pool_size_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    run = run_cli("info", cwd=tmp_path, STORAGE_POOL_SIZE="abc")
    assert_one_line_error(run, "STORAGE_POOL_SIZE", "must be an integer", "'abc'")


@pytest.mark.parametrize(
    ("args", "env", "setting"),
    [
        (("info", "--url", "not a url"), {}, "url:"),
        (("info",), {"DATABASE_URL": "not a url"}, "DATABASE_URL:"),
        (("init-db",), {"DATABASE_URL": "::"}, "DATABASE_URL:"),
    ],
)
def test_a_bad_url_is_one_line_naming_where_it_came_from(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], setting: str
) -> None:
    run = run_cli(*args, cwd=tmp_path, **env)
    assert_one_line_error(run, setting, "is not a database URL")
    assert list(tmp_path.iterdir()) == []


def test_half_configured_postgres_is_one_line_naming_the_missing_variables(
    tmp_path: Path,
) -> None:
    run = run_cli("info", cwd=tmp_path, POSTGRES_USER="app", POSTGRES_PASSWORD="hunter2")
    assert_one_line_error(run, "POSTGRES_SERVER_NAME", "missing")
    assert "hunter2" not in run.stderr
    assert not (tmp_path / "app.db").exists()  # no quiet fall-back to SQLite


def test_info_on_a_path_that_does_not_exist_says_so_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "app.db"
    run = run_cli("info", "--url", f"sqlite:///{missing}", cwd=tmp_path)
    assert_one_line_error(run, f"no database at {missing}", "nothing was created")
    assert list(tmp_path.iterdir()) == []
    # the default location, from the environment, and the Askar backend alike
    run = run_cli("info", cwd=tmp_path)
    assert_one_line_error(run, "no database at app.db")
    run = run_cli("info", "--backend", "askar", cwd=tmp_path, ASKAR_DB="sqlite://askar.db")
    assert_one_line_error(run, "no database at askar.db")
    assert list(tmp_path.iterdir()) == []


def test_info_on_an_empty_database_says_it_is_not_provisioned(tmp_path: Path) -> None:
    (tmp_path / "empty.db").touch()
    run = run_cli("info", "--url", f"sqlite:///{tmp_path}/empty.db", cwd=tmp_path)
    assert_one_line_error(run, "has no storage schema yet", "init-db")


def test_info_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    """`storage-core info | head`: the reader is gone before we write."""
    url = provisioned(tmp_path)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        run = subprocess.run(
            [str(SCRIPT), "info", "--url", url],
            env=_env(),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert run.returncode == 141
    assert run.stderr == ""


def test_info_piped_into_head_prints_the_first_line(tmp_path: Path) -> None:
    url = provisioned(tmp_path)
    run = subprocess.run(
        f"'{SCRIPT}' info --url '{url}' | head -n 1",
        shell=True,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.stdout.split() == ["backend", "sqlalchemy"]
    assert run.stderr == ""


def test_recreate_without_a_terminal_needs_yes(tmp_path: Path) -> None:
    url = provisioned(tmp_path)
    run = run_cli("init-db", "--recreate", "--url", url, cwd=tmp_path)
    assert_one_line_error(run, "--yes")
    with open_storage("sqlalchemy", url) as storage:
        assert storage.count_records("task") == 1  # nothing deleted
    run = run_cli("init-db", "--recreate", "--yes", "--url", url, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    with open_storage("sqlalchemy", url) as storage:
        assert storage.count_records("task") == 0


@pytest.mark.parametrize(("answer", "status", "left"), [("no", 1, 1), ("yes", 0, 0)])
def test_recreate_on_a_terminal_asks(tmp_path: Path, answer: str, status: int, left: int) -> None:
    url = provisioned(tmp_path)
    main_fd, terminal_fd = pty.openpty()
    try:
        os.write(main_fd, f"{answer}\n".encode())
        run = run_cli("init-db", "--recreate", "--url", url, cwd=tmp_path, stdin=terminal_fd)
    finally:
        os.close(terminal_fd)
        os.close(main_fd)
    assert run.returncode == status, run.stderr
    assert "deletes every record of the sqlalchemy store" in run.stderr
    assert "Traceback" not in run.stderr
    with open_storage("sqlalchemy", url) as storage:
        assert storage.count_records("task") == left


def test_errors_mask_the_password_of_an_unreachable_server(tmp_path: Path) -> None:
    url = "postgresql+psycopg2://postgres:hunter2@127.0.0.1:1/nowhere"
    run = run_cli("info", "--url", url, cwd=tmp_path, STORAGE_CONNECT_TIMEOUT="2")
    assert_one_line_error(run)
    assert "hunter2" not in run.stderr + run.stdout


# --- in-process: the paths a subprocess cannot reach -------------------------------------
class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_closed_at_the_recreate_prompt_declines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-D at "Type 'yes'": declined (exit 1), nothing deleted."""
    url = f"sqlite:///{tmp_path}/app.db"
    monkeypatch.setenv("DATABASE_URL", url)
    assert main(["init-db"]) == 0
    with open_storage("sqlalchemy", url) as storage:
        storage.create_task("t1", "sync", "started")
    monkeypatch.setattr(sys, "stdin", _Terminal(""))
    assert main(["init-db", "--recreate"]) == 1
    assert "not confirmed" in capsys.readouterr().err
    with open_storage("sqlalchemy", url) as storage:
        assert storage.get_task("t1") is not None


def test_a_command_of_a_blocked_plugin_names_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STORAGE_DISABLE_PLUGINS", "webvh-storage-migrate")
    assert main(["migrate-askar", "--to", f"sqlite:///{tmp_path}/x.db"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install" in err[0] and "migrate-askar" in err[0], err


def test_a_broken_environment_still_masks_the_postgres_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Settings cannot be read at all (a bad framework variable): the error line still
    masks POSTGRES_PASSWORD, wherever it would appear."""
    monkeypatch.setenv("STORAGE_MAX_PAYLOAD_BYTES", "lots-s3cr3t-pw")
    monkeypatch.setenv("POSTGRES_PASSWORD", "s3cr3t-pw")
    assert main(["info"]) == 2
    err = capsys.readouterr().err
    assert "STORAGE_MAX_PAYLOAD_BYTES" in err and "s3cr3t-pw" not in err, err
