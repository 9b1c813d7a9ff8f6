"""The one place where secrets are scrubbed from event data before it is stored.

``EventStore.append`` (and import) pass every payload and metadata document through a
``Redactor``; nothing reaches the database any other way. A value is masked when its key
names a secret (authorization headers, api keys, passwords, tokens, cookies, plus the
field names a user configures), when it is a ``Bearer`` credential, when it is a URL query
parameter that carries a key, or when it contains a secret value registered at run time
(the api keys agentledger itself was handed).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any

MASK = "***"

# Keys (lower-cased, '-' read as '_') whose values are always secrets.
SECRET_KEYS = frozenset(
    {
        "authorization",
        "proxy_authorization",
        "api_key",
        "apikey",
        "x_api_key",
        "password",
        "passwd",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "auth_token",
        "bearer_token",
        "cookie",
        "set_cookie",
        "private_key",
    }
)
# A key ending in one of these (``openai_api_key``, ``db_password``) is a secret too.
SECRET_SUFFIXES = (
    "_api_key",
    "_apikey",
    "_password",
    "_secret",
    "_access_token",
    "_refresh_token",
    "_auth_token",
    "_private_key",
)
# Cheap pre-check on the lower-cased JSON: no match means nothing needs scrubbing. Broad on
# purpose (``key`` covers api_key, x-api-key, key=...): a false hit only costs a walk.
# ``tokens`` (plural) is left out: token counts are in every model response, never secrets.
_MARKERS = re.compile(rb"key|auth|passw|secret|token(?!s)|cookie|bearer|basic |sig")
# A credential after "Bearer"/"Basic": 8+ token characters with a digit, punctuation or an
# inner capital, so prose ("basic questions") is left alone while keys and base64 are not.
_BEARER = re.compile(
    r"\b((?i:bearer|basic))\s+(?=[A-Za-z]*[0-9._~+/=-]|[A-Za-z][a-z]*[A-Z])"
    r"[A-Za-z0-9._~+/=-]{8,}"
)
_QUERY_SECRET = re.compile(
    r"(?i)([?&](?:api[_-]?key|key|token|access_token|secret|password|sig|signature)=)[^&#\s\"']+"
)
_MIN_SECRET_LEN = 8  # shorter registered values would mask ordinary text


def _normal(key: str) -> str:
    return key.lower().replace("-", "_")


class Redactor:
    """Masks secrets in JSON-like documents. Thread-safe; secrets may be added at run time."""

    def __init__(self, fields: Iterable[str] = (), secrets: Iterable[str] = ()) -> None:
        self._fields = frozenset(_normal(f) for f in fields)
        variants = sorted({v for f in self._fields for v in (f, f.replace("_", "-"))})
        self._field_markers = (
            re.compile(b"(?i)" + b"|".join(re.escape(v.encode()) for v in variants))
            if variants
            else None
        )
        self._secrets: tuple[str, ...] = ()
        self._secret_markers: re.Pattern[bytes] | None = None
        self._lock = threading.Lock()
        for value in secrets:
            self.add_secret(value)

    @property
    def fields(self) -> frozenset[str]:
        """Configured extra field names (normalised)."""
        return self._fields

    def add_secret(self, value: str | None) -> None:
        """Mask every later occurrence of ``value`` (an api key, say) wherever it appears."""
        if not value or len(value) < _MIN_SECRET_LEN:
            return
        with self._lock:
            if value not in self._secrets:
                # Longest first, so a key containing another key is masked whole.
                self._secrets = tuple(sorted((*self._secrets, value), key=len, reverse=True))
                self._secret_markers = re.compile(
                    b"|".join(re.escape(secret.encode()) for secret in self._secrets)
                )

    def is_secret_key(self, key: str) -> bool:
        """Whether a value stored under ``key`` must be masked."""
        norm = _normal(key)
        return norm in SECRET_KEYS or norm in self._fields or norm.endswith(SECRET_SUFFIXES)

    def needs_scrub(self, encoded: bytes) -> bool:
        """Fast pre-check on a JSON encoding: False means ``scrub`` would change nothing."""
        if _MARKERS.search(encoded.lower()):
            return True
        if self._field_markers is not None and self._field_markers.search(encoded):
            return True
        secrets = self._secret_markers
        return secrets is not None and secrets.search(encoded) is not None

    def scrub(self, value: Any) -> Any:
        """A copy of ``value`` with every secret masked (the input is not modified)."""
        if isinstance(value, dict):
            return {
                k: (MASK if self.is_secret_key(str(k)) and v not in (None, "") else self.scrub(v))
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.scrub(v) for v in value]
        if isinstance(value, str):
            return self.scrub_text(value)
        return value

    def scrub_text(self, text: str) -> str:
        """Mask secrets inside free text: registered values, bearer credentials, URL keys."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        if "earer" in text or "asic" in text:
            text = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)
        if "=" in text:
            text = _QUERY_SECRET.sub(lambda m: f"{m.group(1)}{MASK}", text)
        return text
