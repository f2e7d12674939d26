"""Settings from the environment, overridable in code, with secrets kept out of reprs."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

from storage_core.errors import ValidationError

# The one masker lives in storage_core.masking; re-exported here for existing callers.
from storage_core.masking import mask_text as mask_text
from storage_core.masking import mask_url as mask_url
from storage_core.masking import url_passwords
from storage_core.validation import DEFAULT_MAX_PAYLOAD_BYTES

DEFAULT_BACKEND = "sqlalchemy"
DEFAULT_DATABASE_URL = "sqlite:///app.db"
_SECRET_OPTION = re.compile(r"(key|pass|secret|token)", re.IGNORECASE)


def _int_env(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValidationError(name, f"must be an integer, got {raw!r}") from None


def _list_env(env: Mapping[str, str], name: str) -> tuple[str, ...] | None:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return None  # unset and empty both mean "no list"
    return tuple(p.strip() for p in raw.split(",") if p.strip())


def database_url_from_env(env: Mapping[str, str]) -> str:
    """DATABASE_URL, else a PostgreSQL URL from POSTGRES_*, else the SQLite default."""
    if env.get("DATABASE_URL"):
        return env["DATABASE_URL"]
    user, server = env.get("POSTGRES_USER"), env.get("POSTGRES_SERVER_NAME")
    if user and server:
        password = env.get("POSTGRES_PASSWORD", "")
        auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
        port = env.get("POSTGRES_SERVER_PORT", "5432")
        db = env.get("POSTGRES_DB", "postgres")
        return f"postgresql+psycopg2://{auth}@{server}:{port}/{db}"
    return DEFAULT_DATABASE_URL


@dataclass(frozen=True)
class Settings:
    """What a backend is built from.

    `url` is the URL given in code (`open_storage(..., url)`, `--url`): when set, the
    backend opens it instead of the one its own environment variables name.
    `env_sql_url` is the SQL database URL the environment names (DATABASE_URL, else
    POSTGRES_*, else sqlite:///app.db): what the SQL backend opens when `url` is None.
    """

    backend: str = DEFAULT_BACKEND
    url: str | None = field(default=None, repr=False)
    env_sql_url: str = field(default=DEFAULT_DATABASE_URL, repr=False)
    pool_size: int = 10
    max_overflow: int = 20
    pool_timeout: float = 30.0
    connect_timeout: float = 10.0
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    plugins_allow: tuple[str, ...] | None = None
    plugins_block: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = dict(os.environ if env is None else env)
        settings = cls(
            backend=env.get("STORAGE_BACKEND") or DEFAULT_BACKEND,
            env_sql_url=database_url_from_env(env),
            pool_size=_int_env(env, "STORAGE_POOL_SIZE", 10),
            max_overflow=_int_env(env, "STORAGE_MAX_OVERFLOW", 20),
            pool_timeout=float(_int_env(env, "STORAGE_POOL_TIMEOUT", 30)),
            connect_timeout=float(_int_env(env, "STORAGE_CONNECT_TIMEOUT", 10)),
            max_payload_bytes=_int_env(env, "STORAGE_MAX_PAYLOAD_BYTES", DEFAULT_MAX_PAYLOAD_BYTES),
            plugins_allow=_list_env(env, "STORAGE_PLUGINS"),
            plugins_block=_list_env(env, "STORAGE_DISABLE_PLUGINS") or (),
            env=env,
        )
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(settings, **given) if given else settings

    def option(self, name: str, env_name: str | None = None, default: Any = None) -> Any:
        """A backend option: from code (`options`), else the environment, else default."""
        if name in self.options and self.options[name] is not None:
            return self.options[name]
        if env_name and self.env.get(env_name) not in (None, ""):
            return self.env[env_name]
        return default

    @property
    def secrets(self) -> list[str]:
        """Values that must never be printed, for masking free text: secret-looking
        options, POSTGRES_PASSWORD and URL passwords. A backend adds the secrets of its
        own environment variables (e.g. ASKAR_KEY) through `StorageBackend.secrets`."""
        found = [str(v) for k, v in self.options.items() if v and _SECRET_OPTION.search(k)]
        if self.env.get("POSTGRES_PASSWORD"):
            found.append(self.env["POSTGRES_PASSWORD"])
        for url in (self.url, self.env_sql_url):
            found += url_passwords(url)
        return found

    def __repr__(self) -> str:
        url = mask_url(self.url or self.env_sql_url)
        return f"Settings(backend={self.backend!r}, url={url!r}, pool_size={self.pool_size})"
