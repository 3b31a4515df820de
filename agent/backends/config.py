"""How to reach a model: one pydantic config, filled from flags, environment or a run's config.json."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from agent.backends.base import GenerationSettings
from sleuth.redact import redact

# Header names whose values are credentials: recorded as "***" in run configs.
_SECRET_HEADER_WORDS = ("auth", "key", "token", "secret", "cookie", "password")


class BackendConfig(BaseModel):
    """Which backend and model to use and how to talk to it.

    ``base_url`` and ``api_key`` fall back to ``OPENAI_BASE_URL`` and
    ``OPENAI_API_KEY`` when not given. The API key never appears in
    ``public_dict()``, ``repr`` or logs, nor do credentials in ``base_url``
    (``http://user:pass@host``) in ``public_dict()``.
    """

    model_config = ConfigDict(extra="forbid")

    backend: Literal["openai", "transformers"] = "openai"
    model: str = Field(description="served model name (openai) or hub name / local dir / .gguf file (transformers)")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1")
    api_key: SecretStr | None = Field(None, description="empty is fine for local servers")
    headers: dict[str, str] = Field(default_factory=dict, description="extra HTTP headers sent with every request")

    temperature: float | None = Field(0.0, description="None: do not send (server default)")
    max_tokens: int | None = Field(1024, ge=1, description="None: do not send (server default)")
    timeout_s: float = Field(120.0, gt=0, description="deadline for one whole request (connect, wait, read the reply)")
    max_retries: int = Field(4, ge=0, description="retries after the first attempt on 429, 5xx, timeouts, drops")
    retry_base_delay_s: float = Field(1.0, ge=0, description="first backoff delay; doubles each retry, with jitter")
    retry_max_delay_s: float = Field(30.0, ge=0, description="cap on one backoff delay (Retry-After is honoured)")

    tool_mode: Literal["auto", "native", "text"] = Field(
        "auto", description="native tool calls, the JSON text protocol, or auto (native, text if the server refuses)"
    )
    image_max_side: int | None = Field(768, ge=16, description="longest image side callers encode frames at")
    image_detail: Literal["auto", "low", "high"] | None = Field(None, description="image detail hint for the server")
    replay_cache: Path | None = Field(None, description="directory of cached replies; hits skip the model")
    prices_file: Path | None = Field(None, description="JSON price table overriding the built-in one")

    device: str = Field("auto", description="transformers: auto (GPU when available), cpu, cuda, cuda:1, mps")
    dtype: str = Field("auto", description="transformers: auto, float32, bfloat16, float16")

    @field_validator("model")
    @classmethod
    def _model_not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("a model name is required (--model)")
        return value

    @field_validator("base_url")
    @classmethod
    def _url_has_scheme(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"base URL {value!r} must start with http:// or https://")
        return value

    @model_validator(mode="before")
    @classmethod
    def _environment_defaults(cls, data: Any) -> Any:
        # Resolved once here so that the run's config records the endpoint actually used.
        if isinstance(data, dict) and data.get("backend", "openai") == "openai":
            data = dict(data)
            if data.get("base_url") is None and os.environ.get("OPENAI_BASE_URL"):
                data["base_url"] = os.environ["OPENAI_BASE_URL"]
            if data.get("api_key") is None and os.environ.get("OPENAI_API_KEY") is not None:
                data["api_key"] = os.environ["OPENAI_API_KEY"]
        return data

    def generation_settings(self) -> GenerationSettings:
        return GenerationSettings(temperature=self.temperature, max_tokens=self.max_tokens, timeout_s=self.timeout_s)

    def public_dict(self) -> dict[str, Any]:
        """Everything needed to reproduce the run, minus secrets (for config.json and traces)."""
        data = self.model_dump(mode="json", exclude={"api_key"})
        data["base_url"] = redact(self.base_url) if self.base_url else self.base_url
        data["api_key_set"] = bool(self.api_key and self.api_key.get_secret_value())
        data["headers"] = {
            name: ("***" if any(w in name.lower() for w in _SECRET_HEADER_WORDS) else value)
            for name, value in self.headers.items()
        }
        return data

    def api_key_value(self) -> str | None:
        return self.api_key.get_secret_value() if self.api_key is not None else None
