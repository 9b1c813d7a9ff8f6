"""The one redaction policy: secrets are scrubbed before anything is stored or shown.

``EventStore.append`` (and import) pass every payload and metadata document through a
``Redactor``; nothing reaches the database any other way, so reports, exports and
transcripts (projections of the log) hold none either; console and log lines are scrubbed
with ``scrub_known`` (every secret any redactor of this process learned). A value is masked
when:

- its key names a secret: a key whose words (split on ``_`` and ``-``, case ignored)
  include ``token``, ``secret``, ``password``/``passwd``/``pwd``, ``credential(s)``,
  ``cookie``, ``authorization`` or ``passphrase``, or the pairs ``api key``, ``access key``,
  ``private key``, ``secret key``, ``session token``/``session key``/``session id`` as a
  cookie (``sessionid``), ``client secret``; plus the field names a user configures.
  (``tokens``, plural, is left alone: token counts are in every model response.)
- it is a ``Bearer``/``Basic`` credential, or a URL query parameter that carries a key;
- it contains a secret value registered at run time (provider keys, configured keys, the
  credentials agents' own clients send), whatever its length: values of 4 or more
  characters are masked wherever they appear in any text, shorter ones where a whole value
  equals them.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Iterable
from typing import Any

import orjson

MASK = "***"

# Words of a key (lower-cased, split on '_' and '-') that make its value a secret.
SECRET_WORDS = frozenset(
    {
        "token",
        "secret",
        "password",
        "passwd",
        "pwd",
        "credential",
        "credentials",
        "cookie",
        "authorization",
        "apikey",
        "sessionid",
        "passphrase",
    }
)
# Adjacent word pairs that do (``aws_secret_access_key``: access key).
SECRET_PAIRS = frozenset(
    {
        ("api", "key"),
        ("access", "key"),
        ("private", "key"),
        ("secret", "key"),
        ("session", "token"),
        ("session", "key"),
        ("client", "secret"),
        ("auth", "key"),
    }
)
# Keys whose values are always secrets.
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
MARKER_WORDS = (
    rb"key|auth|passw|pwd|secret|token(?!s)|cookie|bearer|basic |sig|credential|session|passphrase"
)
"""What a key or text must contain to be looked at for secrets (``_MARKERS`` is these,
grouped by first letter: the same matches, about a quarter sooner)."""
_MARKERS = re.compile(
    rb"k(?:ey)|a(?:uth)|p(?:assw|wd|assphrase)|s(?:ecret|ig|ession)|t(?:oken(?!s))"
    rb"|c(?:ookie|redential)|b(?:earer|asic )"
)
# A credential after "Bearer"/"Basic": 8+ token characters with a digit, punctuation or an
# inner capital, so prose ("basic questions") is left alone while keys and base64 are not.
_BEARER = re.compile(
    r"\b((?i:bearer|basic))\s+(?=[A-Za-z]*[0-9._~+/=-]|[A-Za-z][a-z]*[A-Z])"
    r"[A-Za-z0-9._~+/=-]{8,}"
)
_QUERY_SECRET = re.compile(
    r"(?i)([?&](?:api[_-]?key|key|token|access_token|secret|password|sig|signature)=)[^&#\s\"']+"
)
_MIN_SUBSTRING_LEN = 4
"""Registered secrets at least this long are masked inside any text; shorter ones (which
would mask ordinary words) where a whole value equals them."""
_KNOWN: set[str] = set()
_KNOWN_LOCK = threading.Lock()


def scrub_known(text: str) -> str:
    """``text`` with every secret any redactor of this process has learned masked: for
    console and log lines, which do not pass through a store."""
    with _KNOWN_LOCK:
        known = sorted(_KNOWN, key=len, reverse=True)
    for secret in known:
        if len(secret) >= _MIN_SUBSTRING_LEN and secret in text:
            text = text.replace(secret, MASK)
    return _QUERY_SECRET.sub(
        lambda m: f"{m.group(1)}{MASK}", _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)
    )


def _json_string(value: str) -> str:
    """``value`` as its JSON string literal (quotes included): a whole value in a document."""
    return orjson.dumps(value).decode()


def _normal(key: str) -> str:
    return key.lower().replace("-", "_")


class Redactor:
    """Masks secrets in JSON-like documents. Thread-safe; secrets may be added at run time."""

    def __init__(self, fields: Iterable[str] = (), secrets: Iterable[str] = ()) -> None:
        self._fields = frozenset(_normal(f) for f in fields)
        variants = sorted({v for f in self._fields for v in (f, f.replace("_", "-"))})
        self._field_words = tuple(v.encode() for v in variants)
        """The configured field names as they may appear (lower case) in an encoding."""
        self._secrets: tuple[str, ...] = ()
        self._short: frozenset[str] = frozenset()
        """Registered secrets too short to mask inside text: masked as whole values."""
        self._short_markers: re.Pattern[bytes] | None = None
        self._secret_words: tuple[bytes, ...] = ()
        self._lock = threading.Lock()
        for value in secrets:
            self.add_secret(value)

    @property
    def fields(self) -> frozenset[str]:
        """Configured extra field names (normalised)."""
        return self._fields

    def add_secret(self, value: str | None) -> None:
        """Mask every later occurrence of ``value`` (an api key, say) wherever it appears."""
        if not value or not value.strip() or value == MASK:
            return
        with _KNOWN_LOCK:
            _KNOWN.add(value)
        if len(value) < _MIN_SUBSTRING_LEN:
            with self._lock:
                self._short = self._short | {value}
                # A whole JSON string value: the quotes around its encoding.
                self._short_markers = re.compile(
                    b"|".join(re.escape(_json_string(s).encode()) for s in sorted(self._short))
                )
            return
        with self._lock:
            if value not in self._secrets:
                # Longest first, so a key containing another key is masked whole.
                self._secrets = tuple(sorted((*self._secrets, value), key=len, reverse=True))
                self._secret_words = tuple(secret.encode() for secret in self._secrets)

    def is_secret_key(self, key: str) -> bool:
        """Whether a value stored under ``key`` must be masked."""
        norm = _normal(key)
        if norm in SECRET_KEYS or norm in self._fields or norm.endswith(SECRET_SUFFIXES):
            return True
        words = [w for w in re.split(r"[_\s.]+", norm) if w]
        if any(w in SECRET_WORDS for w in words):
            return True
        return any(pair in SECRET_PAIRS for pair in itertools.pairwise(words))

    def needs_scrub(self, encoded: bytes) -> bool:
        """Fast pre-check on a JSON encoding: False means ``scrub`` would change nothing."""
        lowered = encoded.lower()
        if _MARKERS.search(lowered):
            return True
        if any(variant in lowered for variant in self._field_words):
            return True
        short = self._short_markers
        if short is not None and short.search(encoded):
            return True
        return any(secret in encoded for secret in self._secret_words)

    def scrub(self, value: Any) -> Any:
        """A copy of ``value`` with every secret masked (the input is not modified)."""
        if isinstance(value, dict):
            scrubbed = {}
            for k, v in value.items():
                if self.is_secret_key(str(k)) and v not in (None, ""):
                    if isinstance(v, str) and len(v) >= 8 and not any(c.isspace() for c in v):
                        # A credential-like value: masked anywhere it reappears later too
                        # (short or spaced values would mask ordinary text).
                        self.add_secret(v)
                    scrubbed[k] = MASK
                else:
                    scrubbed[k] = self.scrub(v)
            return scrubbed
        if isinstance(value, list | tuple):
            return [self.scrub(v) for v in value]
        if isinstance(value, str):
            return MASK if value in self._short else self.scrub_text(value)
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
