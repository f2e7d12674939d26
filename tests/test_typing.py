"""What a user's type checker sees: records with their fields, the manager's calls typed
by record, `engine` and `get_session()` typed by SQLAlchemy (mypy --strict, as in CI).

Each check runs mypy in a subprocess on a small piece of user code, so it tests the
package as installed (its py.typed and its annotations), not this repository's config.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("mypy")

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

USER_CODE = """
from typing import Any

from sqlalchemy import Engine, text

from storage_core import LogEntry, StorageManager, open_storage
from storage_core.kinds import LOG_ENTRY

storage: StorageManager = open_storage("sqlalchemy", "sqlite:///:memory:")
entry = LogEntry(scid="s", did="d", domain="x", namespace="n", identifier="i", logs=[])
created: LogEntry = storage.create_record(entry)
reveal_type(storage.get_log_entry("s"))
reveal_type(storage.get_record(LOG_ENTRY, "s"))
reveal_type(storage.list_records(LOG_ENTRY))
reveal_type(storage.stream_records(LOG_ENTRY))
reveal_type(storage.update_log_entry("s", deactivated=True))
found = storage.get_log_entry("s")
if found is not None:
    logs: list[Any] = found.logs
engine: Engine = storage.engine
with storage.get_session() as session:
    reveal_type(session)
    session.execute(text("SELECT 1"))
"""


def mypy(tmp_path: Path, code: str) -> tuple[int, str]:
    """Run mypy --strict on `code` as a user's module; its exit status and output."""
    module = tmp_path / "user_code.py"
    module.write_text(textwrap.dedent(code))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file=",  # the user's settings, not this repository's
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            "--no-error-summary",
            str(module),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    return result.returncode, result.stdout + result.stderr


def revealed(output: str) -> list[str]:
    return re.findall(r'Revealed type is "([^"]*)"', output)


def test_user_code_type_checks_with_precise_types(tmp_path: Path) -> None:
    status, output = mypy(tmp_path, USER_CODE)
    assert status == 0, output
    assert " error: " not in output, output
    assert revealed(output) == [
        "storage_core.records.LogEntry | None",
        "storage_core.records.LogEntry | None",
        "list[storage_core.records.LogEntry]",
        "typing.Generator[storage_core.records.LogEntry, None, None]",
        "storage_core.records.LogEntry | None",
        "sqlalchemy.orm.session.Session",
    ]


def test_the_checker_sees_record_fields_and_their_types(tmp_path: Path) -> None:
    """Wrong field types and missing None checks are reported, so the clean run above
    means the fields are seen (a record the checker cannot see accepts anything)."""
    status, output = mypy(
        tmp_path,
        """
        from storage_core import LogEntry, open_storage

        LogEntry(scid=1, did="d", domain="x", namespace="n", identifier="i", logs=[])
        LogEntry(scid="s", did="d", domain="x", namespace="n", identifier="i", logz=[])
        open_storage().get_task("t").status
        """,
    )
    assert status == 1, output
    assert 'Argument "scid" to "LogEntry" has incompatible type "int"' in output, output
    assert 'Unexpected keyword argument "logz" for "LogEntry"' in output, output
    assert 'Item "None" of "Task | None" has no attribute "status"' in output, output


def test_readme_examples_type_check(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    status, output = mypy(tmp_path, "\n".join(blocks[:2]))
    assert status == 0, output
