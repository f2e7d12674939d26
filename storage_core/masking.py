"""The one masker: credentials out of any text before it is printed, logged or raised.

Two layers, because a secret can reach text in two ways:

- Shapes (`mask_url`): anything that looks like credentials in a URL, parsed or not. A
  typo (`postgres//user:pw@host/db`, `postgres:/user:pw@host`), a raw space or `@` in
  the password, or a URL inside a longer message are all masked; so is a `password=`
  style option. Over-masking is accepted: a message losing a few characters is better
  than one holding a password.
- Known values (`mask_text`): every secret the settings and backends know (URL passwords
  found by `url_passwords`, pass keys, POSTGRES_PASSWORD), raw and URL-decoded, replaced
  wherever they appear, whatever surrounds them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, unquote

MASK = "***"

#: `user:password@host` after `//` (or a single `/`) with or without a scheme. The
#: password runs to the last `@` before the host, so it may hold spaces and `@`; the
#: host is what follows up to whitespace, with no further `@` in it.
_URL_USERINFO = re.compile(
    r"(?P<head>(?:[A-Za-z][\w+.-]*:?)?//?[^\s/@:'\"]*:)"
    r"(?P<pw>[^\n]*?)"
    r"(?P<at>@)(?=[^\s@]*(?:\s|$))"
)
#: `user:password@host` with no slashes before it (a URL with its scheme cut off).
_BARE_USERINFO = re.compile(
    r"(?P<head>(?<![\w.+%/-])[\w.+%-]+:)(?P<pw>[^\s@/:'\"]+)(?P<at>@)(?=[\w.-]+(?:[:/?\s'\"]|$))"
)
#: `password=...` in a query string, a DSN or a libpq keyword list.
_OPTION_SECRET = re.compile(
    r"(?P<head>\b(?:admin_)?(?:pass(?:word)?|pwd|pass_key|passkey|secret|token)\s*[=:]\s*)"
    r"(?P<pw>'[^'\n]*'|\"[^\"\n]*\"|[^&\s'\",;)]+)",
    re.IGNORECASE,
)


def _masked_group(match: re.Match[str]) -> str:
    """The match with its `pw` group replaced; an empty password stays empty."""
    if not match.group("pw"):
        return match.group(0)
    start, end = match.span("pw")
    base = match.start(0)
    text = match.group(0)
    return text[: start - base] + MASK + text[end - base :]


def mask_url(url: str | None) -> str | None:
    """`url` (or any text holding URLs) with every credential shape replaced by ***."""
    if url is None:
        return None
    for pattern in (_URL_USERINFO, _BARE_USERINFO, _OPTION_SECRET):
        url = pattern.sub(_masked_group, url)
    return url


def url_passwords(text: str | None) -> list[str]:
    """The passwords `mask_url` would hide in `text`, raw and URL-decoded, so they can be
    masked as known secrets wherever else they appear (e.g. a driver's message quoting
    just the password)."""
    found: list[str] = []
    for pattern in (_URL_USERINFO, _BARE_USERINFO, _OPTION_SECRET):
        for match in pattern.finditer(text or ""):
            password = match.group("pw").strip("'\"")
            if password:
                found += [password, unquote(password)]
    return list(dict.fromkeys(found))


def mask_text(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every given secret (raw, URL-encoded and URL-decoded) and every
    credential shape replaced by ***. Longest first, so a secret containing another is
    masked whole."""
    known: set[str] = set()
    for secret in secrets:
        if secret:
            known.update(f for f in (secret, unquote(secret), quote(secret, safe="")) if f)
    for secret in sorted(known, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return mask_url(text) or ""
