"""Settings come from the environment, and secrets never show in reprs."""

from __future__ import annotations

import pytest

from storage_core.config import Settings, database_url_from_env, mask_text, mask_url
from storage_core.errors import ValidationError


def test_defaults_are_sqlalchemy_on_local_sqlite_file():
    s = Settings.from_env({})
    assert s.backend == "sqlalchemy"
    assert s.env_sql_url == "sqlite:///app.db"
    assert (s.pool_size, s.max_overflow) == (10, 20)


def test_database_url_wins_over_postgres_parts():
    env = {"DATABASE_URL": "sqlite:///x.db", "POSTGRES_USER": "u", "POSTGRES_SERVER_NAME": "h"}
    assert database_url_from_env(env) == "sqlite:///x.db"


def test_postgres_url_is_built_from_parts_with_quoting():
    env = {
        "POSTGRES_USER": "web vh",
        "POSTGRES_PASSWORD": "p@ss:w/rd",
        "POSTGRES_SERVER_NAME": "db.local",
        "POSTGRES_SERVER_PORT": "6543",
        "POSTGRES_DB": "didwebvh",
    }
    assert (
        database_url_from_env(env)
        == "postgresql+psycopg2://web%20vh:p%40ss%3Aw%2Frd@db.local:6543/didwebvh"
    )


def test_code_overrides_environment():
    s = Settings.from_env({"STORAGE_BACKEND": "askar"}, backend="sqlalchemy", pool_size=3)
    assert (s.backend, s.pool_size) == ("sqlalchemy", 3)


def test_bad_integer_names_the_variable():
    with pytest.raises(ValidationError, match="STORAGE_POOL_SIZE"):
        Settings.from_env({"STORAGE_POOL_SIZE": "ten"})


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
    s = Settings.from_env(
        {"DATABASE_URL": "postgresql://u:hunter2@h/db", "ASKAR_KEY": "k3y-s3cret"},
        options={"key": "k3y-s3cret"},
    )
    assert "hunter2" not in repr(s)
    assert "k3y-s3cret" not in repr(s)
    assert {"hunter2", "k3y-s3cret"} <= set(s.secrets)
