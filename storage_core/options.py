"""Backend options, declared once by the plugin that registers the backend.

A plugin passes `BackendOptions` to `register(...)`: the environment variable that names
its store's URL, and each option with its type, default, environment variable and
whether it is secret. From that one declaration the framework

- parses and type-checks every value (from code, else the environment, else default),
  naming the keyword or variable at fault;
- refuses keywords the backend does not declare (`open_storage("sqlalchemy", url,
  pool_sise=5)` names `pool_sise` and the accepted ones);
- masks the declared secrets in every error, repr and report;
- lists the options (`storage-core backends --json`) and the selected backend's values
  (`storage-core info`).

The backend then reads its values with `settings.url` and `settings.option(name)`.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from storage_core.config import FRAMEWORK_ENV, Settings, mask_url
from storage_core.errors import ValidationError

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_TYPE_NAMES: dict[type, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    tuple: "list",
}


class UnknownSettingWarning(UserWarning):
    """A `STORAGE_*` environment variable that neither the framework nor any registered
    backend declares: most likely a typo, so its value is not used."""


@dataclass(frozen=True)
class Option:
    """One backend option.

    `name` is the keyword in code (`open_storage(backend, url, name=value)`); `env` the
    environment variable read when code does not give it. `type` is str, int, float,
    bool or tuple (a list of strings: a comma-separated variable, or a list/tuple in
    code); `choices` limits a str option to those values (matched case-insensitively).
    Passwords inside URL values are masked whatever the option.
    A `secret` option's value is masked everywhere. `env_only` options (e.g. the
    POSTGRES_* parts of a URL) are read from the environment and are not keywords.
    """

    name: str
    type: type = str
    default: Any = None
    env: str | None = None
    secret: bool = False
    help: str = ""
    choices: tuple[str, ...] = ()
    env_only: bool = False

    def parse(self, raw: Any, field: str) -> Any:
        """`raw` (code value or environment text) as this option's type; ValidationError
        naming `field` (the keyword or the variable) otherwise. Secrets are not echoed."""
        shown = "***" if self.secret else repr(raw)
        if self.type is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in _TRUE or text in _FALSE:
                return text in _TRUE
            raise ValidationError(field, f"must be true or false, got {shown}")
        if self.type is tuple:
            items = raw.split(",") if isinstance(raw, str) else raw
            if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
                raise ValidationError(field, f"must be a list of strings, got {shown}")
            return tuple(i.strip() for i in items if i.strip())
        if self.type in (int, float):
            if isinstance(raw, bool):
                raise ValidationError(field, f"must be {_a(_TYPE_NAMES[self.type])}, got {shown}")
            try:
                return self.type(raw.strip() if isinstance(raw, str) else raw)
            except (TypeError, ValueError):
                raise ValidationError(
                    field, f"must be {_a(_TYPE_NAMES[self.type])}, got {shown}"
                ) from None
        value = str(raw)
        if self.choices:
            by_folded = {c.lower(): c for c in self.choices}
            if value.strip().lower() not in by_folded:
                raise ValidationError(
                    field, f"must be one of {', '.join(self.choices)}, got {shown}"
                )
            return by_folded[value.strip().lower()]
        return value

    def describe(self) -> dict[str, Any]:
        """What `storage-core backends --json` lists (a secret default is masked)."""
        default = self.default
        if self.secret and default is not None:
            default = "***"
        return {
            "name": None if self.env_only else self.name,
            "type": _TYPE_NAMES.get(self.type, self.type.__name__),
            "default": default,
            "env": self.env,
            "secret": self.secret,
            "choices": list(self.choices) or None,
            "help": self.help,
        }


@dataclass(frozen=True)
class BackendOptions:
    """Everything a backend is configured with, declared in one place.

    `url_env` is the variable naming the store's URL and `url_default` what is opened
    when neither code nor it give one. `url_from_env`, when given, computes the URL from
    the environment instead (e.g. DATABASE_URL, else POSTGRES_*, else a default).
    """

    url_env: str | None = None
    url_default: str | None = None
    url_help: str = ""
    url_from_env: Callable[[Mapping[str, str]], str | None] | None = None
    options: tuple[Option, ...] = ()

    @property
    def keywords(self) -> tuple[str, ...]:
        """The option names accepted in code."""
        return tuple(o.name for o in self.options if not o.env_only)

    @property
    def env_names(self) -> frozenset[str]:
        """Every environment variable this backend reads."""
        names = {o.env for o in self.options if o.env}
        if self.url_env:
            names.add(self.url_env)
        return frozenset(names)

    @property
    def secret_names(self) -> frozenset[str]:
        return frozenset(o.name for o in self.options if o.secret)

    def resolve(self, settings: Settings) -> Settings:
        """`settings` with `url` and every declared option set to its parsed value.

        Idempotent: a backend may call it on settings the registry already resolved.
        """
        if settings.declared is self:
            return settings
        accepted = set(self.keywords)
        for name in settings.options:
            if name not in accepted:
                known = ", ".join(sorted(accepted)) or "none"
                problem = f"is not an option of the {settings.backend!r} backend"
                raise ValidationError(name, f"{problem} (accepted: {known})")
        values: dict[str, Any] = {}
        for opt in self.options:
            given = None if opt.env_only else settings.options.get(opt.name)
            raw_env = settings.env.get(opt.env) if opt.env else None
            if given is not None:
                values[opt.name] = opt.parse(given, opt.name)
            elif opt.env and raw_env not in (None, ""):
                values[opt.name] = opt.parse(raw_env, opt.env)
            else:
                values[opt.name] = opt.default
        return dataclasses.replace(settings, url=self._url(settings), options=values, declared=self)

    def _url(self, settings: Settings) -> str | None:
        if settings.url:
            return settings.url
        if self.url_from_env is not None:
            return self.url_from_env(settings.env) or self.url_default
        if self.url_env and settings.env.get(self.url_env):
            return settings.env[self.url_env]
        return self.url_default

    def describe(self) -> dict[str, Any]:
        """The declaration as data, for `storage-core backends --json`."""
        return {
            "url": {
                "env": self.url_env,
                "default": mask_url(self.url_default),
                "help": self.url_help,
            },
            "options": [o.describe() for o in self.options],
        }


#: What a plugin that declares nothing gets: no URL variable, no options.
NO_OPTIONS = BackendOptions()


def settings_report(settings: Settings) -> dict[str, Any]:
    """The selected backend's settings, secrets masked: what `storage-core info` shows."""
    report: dict[str, Any] = {"url": mask_url(settings.url)}
    declared = settings.declared
    if declared is None:
        return report
    for opt in declared.options:
        value = settings.options.get(opt.name)
        if opt.secret and value is not None:
            value = "***"
        elif isinstance(value, str):
            value = mask_url(value)
        elif isinstance(value, tuple):
            value = [mask_url(str(v)) for v in value]
        report[opt.env if opt.env_only and opt.env else opt.name] = value
    return report


def warn_unknown_env(env: Mapping[str, str], declared: Iterable[BackendOptions]) -> list[str]:
    """Warn (UnknownSettingWarning) about each `STORAGE_*` variable that neither the
    framework nor any registered backend reads; returns their names."""
    known: set[str] = set(FRAMEWORK_ENV)
    for options in declared:
        known |= options.env_names
    unknown = sorted(n for n in env if n.startswith("STORAGE_") and n not in known)
    for name in unknown:
        warnings.warn(
            f"{name} is set but no storage setting reads it (a typo?); known: "
            + ", ".join(sorted(k for k in known if k.startswith("STORAGE_"))),
            UnknownSettingWarning,
            stacklevel=3,
        )
    return unknown


def _a(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"
