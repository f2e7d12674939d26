"""Askar connection settings: store URI, pass key, key method and profile.

The pass key and any password in the URI are secrets: they are kept out of `repr` and
every message is built from the masked URI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from storage_core.config import Settings
from storage_core.errors import ValidationError
from storage_core.masking import mask_url, url_passwords
from storage_core.options import BackendOptions, Option

DEFAULT_URI = "sqlite://askar.db"
#: Key methods aries-askar accepts; "none" is what did:webvh servers in the field use.
#: The one list: the migration's command line offers the same choices.
KEY_METHODS = ("none", "raw", "kdf:argon2i", "kdf:argon2i:mod", "kdf:argon2i:int")
_SCHEMES = ("sqlite", "postgres")

#: What the Askar backend is configured with (imported at plugin discovery: no aries-askar).
ASKAR_OPTIONS = BackendOptions(
    url_env="ASKAR_DB",
    url_default=DEFAULT_URI,
    url_help="the Askar store: sqlite://<file> or postgres://user:pass@host/db",
    options=(
        Option("key", env="ASKAR_KEY", secret=True, help="the store's pass key"),
        Option(
            "key_method",
            default="none",
            env="ASKAR_KEY_METHOD",
            choices=KEY_METHODS,
            help="how the pass key protects the store",
        ),
        Option("profile", env="ASKAR_PROFILE", help="Askar profile (default: the store's)"),
    ),
)


@dataclass(frozen=True)
class AskarConfig:
    uri: str = field(repr=False)
    key_method: str = "none"
    key: str | None = field(default=None, repr=False)
    profile: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> AskarConfig:
        """`settings.url`, else ASKAR_DB; ASKAR_KEY, ASKAR_KEY_METHOD, ASKAR_PROFILE (see
        ASKAR_OPTIONS)."""
        settings = ASKAR_OPTIONS.resolve(settings)  # a no-op on what the registry resolved
        key = settings.option("key")
        method = str(settings.option("key_method")).strip().lower()
        profile = settings.option("profile")
        return cls.checked(str(settings.url), method, None if key is None else str(key), profile)

    @classmethod
    def checked(
        cls, uri: str, key_method: str, key: str | None, profile: str | None
    ) -> AskarConfig:
        scheme = uri.partition("://")[0].lower() if "://" in uri else ""
        if scheme not in _SCHEMES:
            raise ValidationError(
                "ASKAR_DB",
                f"must be a sqlite:// or postgres:// URI, got {mask_url(uri)!r}",
            )
        if key_method not in KEY_METHODS:
            raise ValidationError(
                "ASKAR_KEY_METHOD", f"must be one of {', '.join(KEY_METHODS)}, got {key_method!r}"
            )
        if key_method == "none" and key:
            # Refuse rather than silently store data without the encryption asked for.
            raise ValidationError(
                "ASKAR_KEY", "is set but ASKAR_KEY_METHOD is 'none'; use 'raw' or 'kdf:argon2i'"
            )
        if key_method != "none" and not key:
            raise ValidationError("ASKAR_KEY", f"is required with key method {key_method!r}")
        return cls(uri=uri, key_method=key_method, key=key or None, profile=profile or None)

    @property
    def masked_uri(self) -> str:
        return mask_url(self.uri) or ""

    @property
    def secrets(self) -> list[str]:
        """Strings never to print: the pass key and the URI password."""
        found = [self.key] if self.key else []
        return found + url_passwords(self.uri)

    @property
    def is_sqlite(self) -> bool:
        return self.uri.lower().startswith("sqlite://")

    @property
    def in_memory(self) -> bool:
        return self.is_sqlite and self.sqlite_path is None

    @property
    def sqlite_path(self) -> Path | None:
        """The database file of a sqlite:// URI (None for :memory: and non-SQLite)."""
        if not self.is_sqlite:
            return None
        path = self.uri[len("sqlite://") :].partition("?")[0]
        if path in ("", ":memory:"):
            return None
        return Path(unquote(path))

    def __repr__(self) -> str:
        return (
            f"AskarConfig(uri={self.masked_uri!r}, key_method={self.key_method!r}, "
            f"profile={self.profile!r})"
        )
