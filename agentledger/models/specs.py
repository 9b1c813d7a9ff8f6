"""Model specs (``provider:model``), sampling parameters, and where each provider lives.

A model is named ``provider:model`` (``openai:gpt-4o-mini``, ``anthropic:claude-sonnet-4-5``,
``mock:echo``) or given as a mapping ``{provider, name, temperature, ...}`` in YAML. Every
sampling parameter is range-checked with an error naming the flag or key. ``endpoint``
resolves a spec to a base URL and API key (from the spec, then the environment); a real
provider without a key is an error before anything runs.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentledger.errors import ModelConfigError
from agentledger.eventstore.redaction import MASK

Provider = Literal["openai", "anthropic", "mock"]
PROVIDERS: tuple[str, ...] = ("openai", "anthropic", "mock")
MOCK_MODELS: tuple[str, ...] = ("echo", "scripted")
DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
MOCK_BASE_URL = "http://mock.agentledger.invalid/v1"
MOCK_API_KEY = "mock-no-key-needed"

# name -> (flag, low, high): the documented ranges of the OpenAI chat API.
SAMPLING_RANGES: dict[str, tuple[str, float, float]] = {
    "temperature": ("--temperature", 0.0, 2.0),
    "top_p": ("--top-p", 0.0, 1.0),
    "presence_penalty": ("--presence-penalty", -2.0, 2.0),
    "frequency_penalty": ("--frequency-penalty", -2.0, 2.0),
}


class ModelSpec(BaseModel):
    """A model to call and how: provider, model name, sampling parameters, endpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Provider
    name: str = Field(min_length=1)
    temperature: float | None = None
    top_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    max_tokens: int | None = Field(default=None, gt=0)
    base_url: str | None = None
    """An OpenAI-compatible endpoint to use instead of the provider's own."""
    api_key: str | None = None
    """A key given in config; masked in every recorded snapshot, the environment is the
    better place for it."""
    replies: list[str] = Field(default_factory=list)
    """``mock:scripted`` only: the replies, the n-th for the n-th assistant turn."""

    @property
    def label(self) -> str:
        """``provider:model``."""
        return f"{self.provider}:{self.name}"

    def sampling(self) -> dict[str, Any]:
        """The sampling parameters that are set, as chat-completion request fields."""
        fields = (*SAMPLING_RANGES, "max_tokens")
        return {k: getattr(self, k) for k in fields if getattr(self, k) is not None}

    def with_overrides(self, **values: Any) -> ModelSpec:
        """A copy with the given (non-None) fields replaced and re-validated."""
        changed = {k: v for k, v in values.items() if v is not None}
        if not changed:
            return self
        return check_spec(self.model_copy(update=changed), None)


def check_sampling(name: str, value: float | None, where: str | None = None) -> None:
    """Raise ``ModelConfigError`` when a sampling parameter is outside its range."""
    if value is None or name not in SAMPLING_RANGES:
        return
    flag, low, high = SAMPLING_RANGES[name]
    if not low <= value <= high:
        raise ModelConfigError(
            f"{where or flag} {value:g} is out of range: {name} must be between "
            f"{low:g} and {high:g}"
        )


def check_spec(spec: ModelSpec, where: str | None) -> ModelSpec:
    """Range-check ``spec``'s sampling parameters and its mock options. ``where`` names the
    config key; None means the values came from flags, which errors then name."""
    for name in SAMPLING_RANGES:
        check_sampling(name, getattr(spec, name), f"{where} {name}" if where else None)
    where = where or "--model"
    if spec.provider == "mock" and spec.name not in MOCK_MODELS:
        raise ModelConfigError(
            f"{where}: unknown mock model {spec.name!r}; mock models are "
            f"{', '.join(MOCK_MODELS)} (e.g. mock:echo)"
        )
    if spec.replies and spec.label != "mock:scripted":
        raise ModelConfigError(f"{where}: 'replies' is only for mock:scripted")
    if spec.label == "mock:scripted" and not spec.replies:
        raise ModelConfigError(f"{where}: mock:scripted needs 'replies' (a list of answers)")
    return spec


def _provider(text: str, where: str) -> str:
    if text in PROVIDERS:
        return text
    near = difflib.get_close_matches(text, PROVIDERS, n=1, cutoff=0.5)
    hint = f"did you mean '{near[0]}'? " if near else ""
    raise ModelConfigError(
        f"{where}: unknown provider {text!r}; {hint}providers are {', '.join(PROVIDERS)}"
    )


def parse_model(value: str | Mapping[str, Any], where: str = "--model") -> ModelSpec:
    """``provider:model`` or ``{provider, name, ...}`` as a validated ``ModelSpec``.

    ``where`` names the flag or config key in error messages."""
    if isinstance(value, str):
        provider, sep, name = value.strip().partition(":")
        if not sep or not provider or not name:
            raise ModelConfigError(
                f"{where} {value!r} must be provider:model, e.g. openai:gpt-4o-mini or mock:echo"
            )
        return check_spec(ModelSpec(provider=_provider(provider, where), name=name), where)  # type: ignore[arg-type]
    if not isinstance(value, Mapping):
        raise ModelConfigError(
            f"{where} must be provider:model or a mapping with provider and name, "
            f"not {type(value).__name__}"
        )
    data = dict(value)
    if "model" in data and "name" not in data:
        data["name"] = data.pop("model")
    if isinstance(data.get("name"), str) and ":" in data["name"] and "provider" not in data:
        data["provider"], _, data["name"] = data["name"].partition(":")
    if "provider" not in data:
        raise ModelConfigError(f"{where}: missing 'provider' ({', '.join(PROVIDERS)})")
    data["provider"] = _provider(str(data["provider"]), where)
    try:
        spec = ModelSpec.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(p) for p in error["loc"])
        if error["type"] == "extra_forbidden":
            valid = list(ModelSpec.model_fields)
            near = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
            hint = f"did you mean '{near[0]}'?" if near else f"valid keys: {', '.join(valid)}"
            raise ModelConfigError(f"{where}: unknown key '{key}'; {hint}") from None
        raise ModelConfigError(f"{where}: '{key}': {error['msg']}") from None
    return check_spec(spec, where)


def provider_keys(env: Mapping[str, str]) -> list[str]:
    """The provider API keys set in ``env``: secrets to mask wherever they turn up."""
    return [env[var] for var in _PROVIDER_KEYS.values() if env.get(var)]


def default_model(env: Mapping[str, str]) -> ModelSpec:
    """The model used when none is configured: OpenAI when a key is set, else ``mock:echo``
    so everything runs offline."""
    if env.get("OPENAI_API_KEY"):
        return ModelSpec(provider="openai", name=DEFAULT_OPENAI_MODEL)
    return ModelSpec(provider="mock", name="echo")


class Endpoint(BaseModel):
    """Where a provider is reached and with which key (never recorded)."""

    model_config = ConfigDict(frozen=True)

    base_url: str
    api_key: str


_PROVIDER_URLS = {
    "openai": ("OPENAI_BASE_URL", "https://api.openai.com/v1"),
    "anthropic": ("ANTHROPIC_BASE_URL", "https://api.anthropic.com/v1/"),
}
_PROVIDER_KEYS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


def key_variable(provider: str) -> str:
    """The environment variable holding ``provider``'s API key."""
    return _PROVIDER_KEYS.get(provider, "")


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "127.0.0.1", "::1")


def resolve_endpoint(
    spec: ModelSpec, env: Mapping[str, str], *, offline: bool = False, api_key: str | None = None
) -> Endpoint:
    """``offline_endpoint`` for a pure replay (no key needed), else ``endpoint``."""
    return offline_endpoint(spec) if offline else endpoint(spec, env, api_key=api_key)


def offline_endpoint(spec: ModelSpec) -> Endpoint:
    """An endpoint for a replay that never goes live: no key is needed or used."""
    if spec.provider == "mock":
        return Endpoint(base_url=MOCK_BASE_URL, api_key=MOCK_API_KEY)
    default_url = _PROVIDER_URLS[spec.provider][1]
    return Endpoint(base_url=spec.base_url or default_url, api_key="replay-offline-no-key")


def endpoint(spec: ModelSpec, env: Mapping[str, str], *, api_key: str | None = None) -> Endpoint:
    """Resolve the base URL and key of ``spec``: ``api_key`` (a flag), then the spec, then
    the provider's environment variable. A local server (localhost) needs no key."""
    if spec.provider == "mock":
        return Endpoint(base_url=MOCK_BASE_URL, api_key=MOCK_API_KEY)
    url_var, default_url = _PROVIDER_URLS[spec.provider]
    base_url = spec.base_url or env.get(url_var) or default_url
    key_var = _PROVIDER_KEYS[spec.provider]
    configured = spec.api_key if spec.api_key and spec.api_key != MASK else None
    key = api_key or configured or env.get(key_var)
    if not key:
        if _is_loopback(base_url):
            key = "local-no-key"
        else:
            raise ModelConfigError(
                f"model {spec.label} needs an API key: set {key_var} (or api_key in the "
                "model config); use mock:echo to run offline"
            )
    return Endpoint(base_url=base_url, api_key=key)
