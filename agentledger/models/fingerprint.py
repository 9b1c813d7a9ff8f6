"""Canonical model requests: the fingerprint replay matches on, and the first difference.

A request is canonicalised as its endpoint plus its JSON body with keys sorted and the
fields below removed. Two requests with the same fingerprint ask the model the same thing.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

# Body fields that do not change what the model is asked, so they must not break a match:
#   user, safety_identifier, prompt_cache_key: end-user / abuse / cache routing tags
#   metadata, store: whether and how OpenAI keeps the completion on its side
#   service_tier: which capacity pool serves the call, not what it answers
NON_SEMANTIC_FIELDS = frozenset(
    {"user", "safety_identifier", "prompt_cache_key", "metadata", "store", "service_tier"}
)


def endpoint_of(path: str) -> str:
    """The API operation of a URL path: ``/v1/chat/completions`` -> ``chat/completions``.

    The base URL (host, ``/v1``, a proxy prefix) is transport, not meaning."""
    for operation in ("chat/completions", "completions", "embeddings", "responses"):
        if path.rstrip("/").endswith("/" + operation) or path.strip("/") == operation:
            return operation
    return path.strip("/").rsplit("/", 1)[-1] or "/"


def canonical_request(endpoint: str, body: Any) -> dict[str, Any]:
    """What a request asks, without its non-semantic fields."""
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k not in NON_SEMANTIC_FIELDS}
    return {"endpoint": endpoint, "body": body}


def fingerprint(endpoint: str, body: Any) -> str:
    """sha256 of the canonical request's sorted-key JSON."""
    encoded = orjson.dumps(canonical_request(endpoint, body), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(encoded).hexdigest()


def first_difference(recorded: Any, actual: Any, path: str = "") -> str | None:
    """JSON path of the first field where two canonical requests differ (``messages[1].
    content``), or None when they are equal. Keys are compared in sorted order."""
    if isinstance(recorded, dict) and isinstance(actual, dict):
        for key in sorted(set(recorded) | set(actual)):
            where = f"{path}.{key}" if path else str(key)
            if key not in recorded or key not in actual:
                return where
            found = first_difference(recorded[key], actual[key], where)
            if found is not None:
                return found
        return None
    if isinstance(recorded, list) and isinstance(actual, list):
        for index, (left, right) in enumerate(zip(recorded, actual, strict=False)):
            found = first_difference(left, right, f"{path}[{index}]")
            if found is not None:
                return found
        if len(recorded) != len(actual):
            return f"{path}[{min(len(recorded), len(actual))}]"
        return None
    if type(recorded) is not type(actual) or recorded != actual:
        return path or "(root)"
    return None
