"""Settings from the environment, overridable in code, with secrets kept out of reprs."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from storage_core.errors import ValidationError

# The one masker lives in storage_core.masking; re-exported here for existing callers.
from storage_core.masking import mask_text as mask_text
from storage_core.masking import mask_url as mask_url
from storage_core.masking import url_passwords
from storage_core.validation import DEFAULT_MAX_PAYLOAD_BYTES

if TYPE_CHECKING:
    from storage_core.options import BackendOptions

DEFAULT_BACKEND = "sqlalchemy"
DEFAULT_DATABASE_URL = "sqlite:///app.db"


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


POSTGRES_VARIABLES = (
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_SERVER_NAME",
    "POSTGRES_SERVER_PORT",
    "POSTGRES_DB",
)


def database_url_from_env(env: Mapping[str, str]) -> str:
    """DATABASE_URL, else a PostgreSQL URL from POSTGRES_*, else the SQLite default."""
    if env.get("DATABASE_URL"):
        return env["DATABASE_URL"]
    user, server = env.get("POSTGRES_USER"), env.get("POSTGRES_SERVER_NAME")
    given = sorted(n for n in POSTGRES_VARIABLES if env.get(n))
    missing = [n for n in ("POSTGRES_USER", "POSTGRES_SERVER_NAME") if not env.get(n)]
    if given and missing:  # a half-configured PostgreSQL must not quietly become SQLite
        raise ValidationError(
            "POSTGRES_*",
            f"{', '.join(given)} set but {' and '.join(missing)} missing; set "
            "POSTGRES_USER and POSTGRES_SERVER_NAME (or DATABASE_URL), or unset POSTGRES_*",
        )
    if user and server:
        password = env.get("POSTGRES_PASSWORD", "")
        auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
        port = env.get("POSTGRES_SERVER_PORT", "5432")
        db = env.get("POSTGRES_DB", "postgres")
        return f"postgresql+psycopg2://{auth}@{server}:{port}/{db}"
    return DEFAULT_DATABASE_URL


#: The `STORAGE_*` variables the framework itself reads; each backend declares its own
#: (`storage_core.options`), and any other `STORAGE_*` variable gets a warning.
FRAMEWORK_ENV = (
    "STORAGE_BACKEND",
    "STORAGE_MAX_PAYLOAD_BYTES",
    "STORAGE_PLUGINS",
    "STORAGE_DISABLE_PLUGINS",
)


@dataclass(frozen=True)
class Settings:
    """What a backend is built from: the framework's own settings, the URL and the
    backend's options.

    `url` and `options` hold what code gave (`open_storage(backend, url, **options)`,
    `--url`) until the registry resolves them against the selected backend's declared
    options (`storage_core.options.BackendOptions.resolve`): then `url` is the URL the
    backend opens (from code, else its URL variable, else its default) and `options`
    holds every declared option, parsed. `declared` is that declaration.
    """

    backend: str = DEFAULT_BACKEND
    url: str | None = field(default=None, repr=False)
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    plugins_allow: tuple[str, ...] | None = None
    plugins_block: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    declared: BackendOptions | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """The framework settings from the environment; `overrides` set fields, and any
        other keyword is a backend option (as in `open_storage`)."""
        env = dict(os.environ if env is None else env)
        settings = cls(
            backend=env.get("STORAGE_BACKEND") or DEFAULT_BACKEND,
            max_payload_bytes=_int_env(env, "STORAGE_MAX_PAYLOAD_BYTES", DEFAULT_MAX_PAYLOAD_BYTES),
            plugins_allow=_list_env(env, "STORAGE_PLUGINS"),
            plugins_block=_list_env(env, "STORAGE_DISABLE_PLUGINS") or (),
            env=env,
        )
        given = {k: v for k, v in overrides.items() if v is not None}
        fields = {k: given.pop(k) for k in list(given) if k in _FIELDS}
        if given:
            fields["options"] = {**fields.get("options", {}), **given}
        return replace(settings, **fields) if fields else settings

    def option(self, name: str, env_name: str | None = None, default: Any = None) -> Any:
        """A backend option: from code (`options`), else the environment, else default.
        Once resolved, `options` holds every declared option, so `option(name)` is enough."""
        if name in self.options and self.options[name] is not None:
            return self.options[name]
        if env_name and self.env.get(env_name) not in (None, ""):
            return self.env[env_name]
        return default

    @property
    def secrets(self) -> list[str]:
        """Values that must never be printed, for masking free text: the declared secret
        options of the selected backend, and the password of the URL and of any URL
        given as an option (e.g. read replicas)."""
        secret_names = self.declared.secret_names if self.declared else frozenset()
        found = [str(v) for k, v in self.options.items() if v and k in secret_names]
        texts = [self.url or ""]
        for value in self.options.values():
            texts += [str(v) for v in value] if isinstance(value, tuple) else [str(value)]
        for text in texts:
            found += url_passwords(text)
        return found

    def __repr__(self) -> str:
        return f"Settings(backend={self.backend!r}, url={mask_url(self.url)!r})"


_FIELDS = frozenset(f.name for f in fields(Settings))
