"""Settings come from the environment and from code, each backend's options are
declared once (`storage_core.options`) and parsed, validated and masked from that."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from aries_askar import Store

from storage_core.cli import main as cli_main
from storage_core.config import Settings, database_url_from_env, mask_text, mask_url
from storage_core.errors import ValidationError
from storage_core.manager import open_storage
from storage_core.options import UnknownSettingWarning, settings_report
from storage_core.plugins import get_registry


def resolved(env: dict[str, str], **overrides: object) -> Settings:
    """What the selected backend is built from: the settings resolved by the registry."""
    return get_registry().resolve(Settings.from_env(env, **overrides))


def test_defaults_are_sqlalchemy_on_local_sqlite_file():
    s = resolved({})
    assert s.backend == "sqlalchemy"
    assert s.url == "sqlite:///app.db"
    assert (s.option("pool_size"), s.option("max_overflow")) == (10, 20)
    assert s.option("pool_timeout") == 30.0


def test_database_url_wins_over_postgres_parts():
    env = {"DATABASE_URL": "sqlite:///x.db", "POSTGRES_USER": "u", "POSTGRES_SERVER_NAME": "h"}
    assert database_url_from_env(env) == "sqlite:///x.db"
    assert resolved(env).url == "sqlite:///x.db"


def test_postgres_url_is_built_from_parts_with_quoting():
    env = {
        "POSTGRES_USER": "web vh",
        "POSTGRES_PASSWORD": "p@ss:w/rd",
        "POSTGRES_SERVER_NAME": "db.local",
        "POSTGRES_SERVER_PORT": "6543",
        "POSTGRES_DB": "didwebvh",
    }
    url = "postgresql+psycopg2://web%20vh:p%40ss%3Aw%2Frd@db.local:6543/didwebvh"
    assert database_url_from_env(env) == url
    assert resolved(env).url == url


def test_code_overrides_environment():
    env = {"STORAGE_BACKEND": "askar", "STORAGE_POOL_SIZE": "7"}
    s = resolved(env, backend="sqlalchemy", pool_size=3)
    assert (s.backend, s.option("pool_size")) == ("sqlalchemy", 3)
    assert resolved({"STORAGE_POOL_SIZE": "7"}).option("pool_size") == 7


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"STORAGE_POOL_SIZE": "ten"}, "STORAGE_POOL_SIZE"),
        ({"STORAGE_POOL_TIMEOUT": "soon"}, "STORAGE_POOL_TIMEOUT"),
        ({"STORAGE_SQLITE_SYNCHRONOUS": "sometimes"}, "STORAGE_SQLITE_SYNCHRONOUS"),
        ({"STORAGE_BACKEND": "askar", "ASKAR_KEY_METHOD": "rot13"}, "ASKAR_KEY_METHOD"),
    ],
)
def test_bad_environment_value_names_the_variable(env: dict[str, str], field: str):
    with pytest.raises(ValidationError) as err:
        resolved(env)
    assert err.value.field == field


def test_bad_code_value_names_the_option():
    with pytest.raises(ValidationError) as err:
        resolved({}, pool_size="abc")
    assert err.value.field == "pool_size"
    assert "must be an integer, got 'abc'" in str(err.value)


@pytest.mark.parametrize(
    ("backend", "typo", "accepted"),
    [
        ("sqlalchemy", "pool_sise", "pool_size"),
        ("askar", "key_metod", "key_method"),
        ("memory", "size", "none"),
    ],
)
def test_unknown_option_is_an_error_naming_it_and_the_accepted_ones(
    backend: str, typo: str, accepted: str, tmp_path: Path
):
    """Issue 16: `open_storage("sqlalchemy", url, pool_sise=5)` was silently ignored."""
    url = {"sqlalchemy": f"sqlite:///{tmp_path}/s.db", "askar": f"sqlite://{tmp_path}/a.db"}
    with pytest.raises(ValidationError) as err:
        open_storage(backend, url.get(backend), **{typo: 5})
    assert err.value.field == typo
    assert f"not an option of the {backend!r} backend" in str(err.value)
    assert accepted in str(err.value)
    assert list(tmp_path.iterdir()) == []  # nothing opened, nothing created


def test_environment_only_parts_are_not_keywords():
    with pytest.raises(ValidationError, match="postgres_password"):
        resolved({}, postgres_password="x")


def test_unknown_storage_variable_warns_and_known_ones_do_not():
    with pytest.warns(UnknownSettingWarning, match="STORAGE_POOL_SISE"):
        resolved({"STORAGE_POOL_SISE": "5"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # another backend's variable is known, not a typo
        resolved({"STORAGE_BACKEND": "askar", "STORAGE_SQL_ECHO": "true", "OTHER_VAR": "x"})


def test_repr_shows_only_the_selected_backends_url():
    """Issue 20: with STORAGE_BACKEND=redis, DATABASE_URL appeared in repr(Settings)."""
    env = {"STORAGE_BACKEND": "redis", "DATABASE_URL": "postgresql://u:hunter2@db.local/x"}
    text = repr(Settings.from_env(env))
    assert "db.local" not in text and "app.db" not in text
    assert "redis" in text


def test_secrets_are_the_declared_ones():
    env = {
        "POSTGRES_USER": "u",
        "POSTGRES_SERVER_NAME": "h",
        "POSTGRES_PASSWORD": "pg-pw",
        "ASKAR_KEY": "askar-k3y",
        "ASKAR_KEY_METHOD": "raw",
    }
    sql = resolved(env)
    assert "pg-pw" in sql.secrets and "askar-k3y" not in sql.secrets
    askar = resolved({**env, "STORAGE_BACKEND": "askar"})
    assert "askar-k3y" in askar.secrets and "pg-pw" not in askar.secrets
    for s in (sql, askar):
        assert "pg-pw" not in repr(s) and "askar-k3y" not in repr(s)


def test_report_shows_the_selected_backends_settings_masked():
    env = {"STORAGE_BACKEND": "askar", "ASKAR_KEY": "askar-k3y", "ASKAR_KEY_METHOD": "raw"}
    report = settings_report(resolved({**env, "DATABASE_URL": "sqlite:///sql.db"}))
    assert report == {
        "url": "sqlite://askar.db",
        "key": "***",
        "key_method": "raw",
        "profile": None,
    }


def test_plugin_lists_parse():
    s = Settings.from_env({"STORAGE_PLUGINS": "a, b", "STORAGE_DISABLE_PLUGINS": "c"})
    assert s.plugins_allow == ("a", "b")
    assert s.plugins_block == ("c",)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg2://user:hunter2@host:5432/db",
        "postgres://user:hunter2@host/db?max_connections=4",
        "postgres://user@host/db?admin_account=a&admin_password=hunter2",
    ],
)
def test_mask_url_hides_passwords(url):
    masked = mask_url(url)
    assert "hunter2" not in masked
    assert "***" in masked


def test_mask_text_hides_given_secrets_and_url_passwords():
    text = "failed at sqlite://x with key hunter2 via postgres://u:pw1@h/db"
    masked = mask_text(text, ["hunter2"])
    assert "hunter2" not in masked and "pw1" not in masked


def test_settings_repr_hides_url_password_and_options():
    s = resolved(
        {"STORAGE_BACKEND": "askar", "ASKAR_KEY_METHOD": "raw"},
        url="postgres://u:hunter2@h/db",
        key="k3y-s3cret",
    )
    assert "hunter2" not in repr(s)
    assert "k3y-s3cret" not in repr(s)
    assert {"hunter2", "k3y-s3cret"} <= set(s.secrets)


def test_list_options_and_their_url_passwords():
    env = {"DATABASE_READ_URLS": "postgresql://r:pw-one@r1/db, postgresql://r:pw-two@r2/db"}
    s = resolved(env)
    assert s.option("read_urls") == ("postgresql://r:pw-one@r1/db", "postgresql://r:pw-two@r2/db")
    assert {"pw-one", "pw-two"} <= set(s.secrets)
    assert settings_report(s)["read_urls"] == [
        "postgresql://r:***@r1/db",
        "postgresql://r:***@r2/db",
    ]
    assert resolved({}, read_urls=["sqlite:///a.db"]).option("read_urls") == ("sqlite:///a.db",)
    with pytest.raises(ValidationError, match="must be a list of strings"):
        resolved({}, read_urls=5)


def test_boolean_and_number_options():
    s = resolved({"STORAGE_REPLICA_MAX_LAG": "2.5"})
    assert s.option("replica_max_lag") == 2.5
    for bad in (True, "2 seconds"):
        with pytest.raises(ValidationError, match="replica_max_lag: must be a"):
            resolved({}, replica_max_lag=bad)


def test_info_shows_only_the_selected_backends_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """Issue 20: `info` shows the selected backend's settings, secrets masked, and none
    of another backend's (DATABASE_URL with an Askar store)."""
    monkeypatch.setenv("STORAGE_BACKEND", "askar")
    monkeypatch.setenv("ASKAR_DB", f"sqlite://{tmp_path}/a.db")
    monkeypatch.setenv("ASKAR_KEY_METHOD", "raw")
    key = Store.generate_raw_key()
    monkeypatch.setenv("ASKAR_KEY", key)
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:hunter2@sql-host/db")
    assert cli_main(["init-db"]) == 0
    assert cli_main(["info", "--json"]) == 0
    out = capsys.readouterr().out
    info = json.loads(out[out.index("{") :])
    assert info["settings"] == {
        "url": f"sqlite://{tmp_path}/a.db",
        "key": "***",
        "key_method": "raw",
        "profile": None,
    }
    assert "sql-host" not in out and key not in out and "pool_size" not in out
