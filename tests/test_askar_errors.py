"""webvh_storage_askar.errors: each AskarError becomes the storage_core error a caller
can act on (retry later, fix the store, or neither), on one line, with secrets masked.

The errors come from real aries-askar calls, except the two shapes it cannot produce on
demand (a "lost" error, an empty message), which are built as the AskarError the
wrapper raises in those cases.
"""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest
from aries_askar import AskarError, AskarErrorCode, Store  # type: ignore[import-untyped]

from storage_core.errors import (
    BackendUnavailableError,
    DuplicateRecordError,
    StorageError,
    StorageIOError,
)
from webvh_storage_askar.errors import Code, code_of, is_code, is_lost, translate

STORE = "sqlite://store.db"


async def raised_by(call: Awaitable[Any]) -> AskarError:
    with pytest.raises(AskarError) as caught:
        await call
    return caught.value


def test_codes_mirror_aries_askar() -> None:
    """errors.py may not import aries_askar, so its copy of the codes must match."""
    for code in Code:
        assert AskarErrorCode(code.value).name == code.name


async def test_a_missing_store_path_means_the_store_is_unavailable(tmp_path: Path) -> None:
    key = Store.generate_raw_key()
    uri = f"sqlite://{tmp_path}/no-such-dir/store.db"
    exc = await raised_by(Store.open(uri, "raw", key))
    assert is_code(exc, Code.NOT_FOUND)

    error = translate(exc, [key], action="open", store=uri)

    assert type(error) is BackendUnavailableError
    assert str(error) == f"open on Askar store {uri} failed: {exc}"
    assert key not in str(error)


@pytest.mark.parametrize(
    ("uri_template", "method", "key", "code"),
    [
        ("bogus://{dir}/store", "raw", None, Code.UNSUPPORTED),
        ("sqlite://{dir}/store.db", "kdf:argon2i:bogus", "pass phrase", Code.UNSUPPORTED),
        ("sqlite://{dir}/store.db", "raw", "not-a-raw-key", Code.INPUT),
    ],
    ids=["unknown-scheme", "unknown-key-derivation", "malformed-raw-key"],
)
async def test_a_store_refusing_its_settings_is_an_io_error(
    tmp_path: Path, uri_template: str, method: str, key: str | None, code: Code
) -> None:
    key = key or Store.generate_raw_key()
    uri = uri_template.format(dir=tmp_path)
    exc = await raised_by(Store.provision(uri, method, key, recreate=True))
    assert is_code(exc, code)

    error = translate(exc, [key], action="provision", store=uri)

    assert type(error) is StorageIOError
    assert str(error).startswith(f"provision on Askar store {uri} failed: ")
    assert key not in str(error)


async def test_a_two_line_message_is_kept_on_one_line() -> None:
    """Askar writes 'what failed\\nCaused by: why'; log lines need both, on one line."""
    exc = await raised_by(Store.open("sqlite://:memory:", "raw", Store.generate_raw_key()))
    what, why = str(exc).splitlines()
    assert why.startswith("Caused by:")

    error = translate(exc, [], action="open", store="sqlite://:memory:")

    assert type(error) is BackendUnavailableError
    assert str(error) == f"open on Askar store sqlite://:memory: failed: {what} ({why})"


def test_a_secret_inside_the_message_is_masked() -> None:
    exc = AskarError(AskarErrorCode.BACKEND, "cannot connect as admin:hunter2-secret")
    error = translate(exc, ["hunter2-secret"], action="open", store=STORE)
    assert type(error) is BackendUnavailableError
    assert "hunter2-secret" not in str(error)
    assert "cannot connect as admin:" in str(error)


def test_a_lost_error_that_persists_asks_for_a_retry_later() -> None:
    """Code SUCCESS with no message: aries-askar failed and dropped the reason. The
    backend re-runs such a call; when every re-run is lost too, this is what remains."""
    exc = AskarError(AskarErrorCode.SUCCESS, "")
    assert is_lost(exc)

    error = translate(exc, [], action="create did_log", store=STORE, kind="did_log", key="k")

    assert type(error) is BackendUnavailableError  # not a DuplicateRecordError, not a crash
    assert "without a reason from aries-askar" in str(error)
    assert "nothing was written" in str(error)
    assert str(error).startswith(f"create did_log on Askar store {STORE} failed")


def test_a_real_failure_is_never_taken_for_a_lost_one() -> None:
    assert not is_lost(AskarError(AskarErrorCode.DUPLICATE, "Duplicate entry"))
    assert not is_lost(ValueError("no code at all"))
    error = translate(
        AskarError(AskarErrorCode.DUPLICATE, "Duplicate entry"),
        [],
        action="create",
        store=STORE,
        kind="did_log",
        key="k",
    )
    assert isinstance(error, DuplicateRecordError)


def test_an_empty_message_names_the_exception_class() -> None:
    exc = AskarError(AskarErrorCode.UNEXPECTED, "  \n ")
    error = translate(exc, [], action="scan", store=STORE)
    assert type(error) is StorageError
    assert str(error) == f"scan on Askar store {STORE} failed: AskarError"


@pytest.mark.parametrize(
    "exc",
    [SystemExit("stop"), SystemExit(["not", "a", "number"])],
    ids=["text-code", "list-code"],
)
def test_an_exception_whose_code_is_not_a_number_has_no_askar_code(exc: BaseException) -> None:
    """`code` means something else on other exceptions; reading it must not raise."""
    assert code_of(exc) is None
    assert not is_lost(exc)
    error = translate(exc, [], action="get", store=STORE)
    assert type(error) is StorageError
