"""The model flags every command shares (``sleuth ask``, ``sleuth eval``, ...).

Declare them with these aliases and their ``DEFAULT_*`` values, then build
the config with ``backend_config_from_cli``::

    @app.command()
    def ask(
        question: str,
        backend: BackendOpt = DEFAULT_BACKEND,
        model: ModelOpt = None,
        base_url: BaseUrlOpt = None,
        api_key: ApiKeyOpt = None,
        header: HeaderOpt = None,
        temperature: TemperatureOpt = DEFAULT_TEMPERATURE,
        max_tokens: MaxTokensOpt = DEFAULT_MAX_TOKENS,
        timeout: TimeoutOpt = DEFAULT_TIMEOUT,
        max_retries: MaxRetriesOpt = DEFAULT_MAX_RETRIES,
        tool_mode: ToolModeOpt = DEFAULT_TOOL_MODE,
        image_max_side: ImageMaxSideOpt = DEFAULT_IMAGE_MAX_SIDE,
        image_detail: ImageDetailOpt = None,
        replay_cache: ReplayCacheOpt = None,
        prices: PricesOpt = None,
        device: DeviceOpt = DEFAULT_DEVICE,
        dtype: DtypeOpt = DEFAULT_DTYPE,
    ):
        config = backend_config_from_cli(backend=backend, model=model, base_url=base_url, ...)

``--temperature none`` and ``--max-tokens none`` leave the field out of the
request (the server's default).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import typer
from pydantic import ValidationError

from agent.backends.config import BackendConfig
from sleuth.errors import ConfigError

PANEL = "Model"

DEFAULT_BACKEND = "openai"
DEFAULT_TEMPERATURE = 0.0
DEFAULT_MAX_TOKENS = 1024
DEFAULT_TIMEOUT = 120.0
DEFAULT_MAX_RETRIES = 4
DEFAULT_TOOL_MODE = "auto"
DEFAULT_IMAGE_MAX_SIDE = 768
DEFAULT_DEVICE = "auto"
DEFAULT_DTYPE = "auto"

_NONE_WORDS = ("none", "default", "server")


def _optional_float(value: Any) -> float | None:
    if value is None or isinstance(value, (int, float)):
        return value
    if value.strip().lower() in _NONE_WORDS:
        return None
    try:
        return float(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a number or 'none'") from None


def _optional_int(value: Any) -> int | None:
    if value is None or isinstance(value, int):
        return value
    if value.strip().lower() in _NONE_WORDS:
        return None
    try:
        return int(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an integer or 'none'") from None


BackendOpt = Annotated[
    Literal["openai", "transformers"],
    typer.Option("--backend", envvar="SLEUTH_BACKEND", rich_help_panel=PANEL,
                 help="openai: any OpenAI-compatible server; transformers: load the model in this process."),
]
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", envvar="SLEUTH_MODEL", metavar="NAME|PATH", rich_help_panel=PANEL,
                 help="Model name on the server, or (transformers) a hub name, local folder or .gguf file."),
]
BaseUrlOpt = Annotated[
    str | None,
    typer.Option("--base-url", envvar="OPENAI_BASE_URL", metavar="URL", rich_help_panel=PANEL,
                 help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 (vLLM) or http://localhost:11434/v1 (Ollama)."),
]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option("--api-key", envvar="OPENAI_API_KEY", show_default=False, metavar="KEY", rich_help_panel=PANEL,
                 help="API key; may be empty for local servers. Never written to run files."),
]
HeaderOpt = Annotated[
    list[str] | None,
    typer.Option("--header", "-H", metavar="'NAME: VALUE'", rich_help_panel=PANEL,
                 help="Extra HTTP header 'Name: value' (repeatable)."),
]
TemperatureOpt = Annotated[
    float | None,
    typer.Option("--temperature", parser=_optional_float, metavar="FLOAT|none", envvar="SLEUTH_TEMPERATURE",
                 rich_help_panel=PANEL, help="Sampling temperature; 'none' leaves it to the server."),
]
MaxTokensOpt = Annotated[
    int | None,
    typer.Option("--max-tokens", parser=_optional_int, metavar="INT|none", envvar="SLEUTH_MAX_TOKENS",
                 rich_help_panel=PANEL, help="Most tokens per reply; 'none' leaves it to the server."),
]
TimeoutOpt = Annotated[
    float,
    typer.Option("--timeout", min=0.001, envvar="SLEUTH_TIMEOUT", rich_help_panel=PANEL,
                 help="Seconds to wait for one reply before retrying."),
]
MaxRetriesOpt = Annotated[
    int,
    typer.Option("--max-retries", min=0, envvar="SLEUTH_MAX_RETRIES", rich_help_panel=PANEL,
                 help="Retries on rate limits, server errors, timeouts and dropped connections."),
]
ToolModeOpt = Annotated[
    Literal["auto", "native", "text"],
    typer.Option("--tool-mode", envvar="SLEUTH_TOOL_MODE", rich_help_panel=PANEL,
                 help="native tool calls, a JSON text protocol, or auto (native; text if the server refuses tools)."),
]
ImageMaxSideOpt = Annotated[
    Optional[int],
    typer.Option("--image-max-side", min=16, envvar="SLEUTH_IMAGE_MAX_SIDE", rich_help_panel=PANEL,
                 show_default=False,
                 help="Longest side, in pixels, of frames sent to a model. Default: in eval, the benchmark "
                 "protocol's size for every method (MMR-V: full frames); in ask and demo, 768."),
]
ImageDetailOpt = Annotated[
    Literal["auto", "low", "high"] | None,
    typer.Option("--image-detail", envvar="SLEUTH_IMAGE_DETAIL", rich_help_panel=PANEL,
                 help="Image detail hint sent with each frame (OpenAI: low = 85 tokens per image)."),
]
ReplayCacheOpt = Annotated[
    Path | None,
    typer.Option("--replay-cache", envvar="SLEUTH_REPLAY_CACHE", metavar="DIR", file_okay=False, rich_help_panel=PANEL,
                 help="Folder of cached replies: identical requests are answered from it, offline and free."),
]
PricesOpt = Annotated[
    Path | None,
    typer.Option("--prices", envvar="SLEUTH_PRICES", metavar="FILE", dir_okay=False, rich_help_panel=PANEL,
                 help='JSON price table, USD per 1M tokens: {"model": {"input": 2.5, "output": 10}}.'),
]
DeviceOpt = Annotated[
    str,
    typer.Option("--device", envvar="SLEUTH_DEVICE", metavar="DEVICE", rich_help_panel=PANEL,
                 help="transformers backend: auto (GPU when available), cpu, cuda, cuda:1, mps."),
]

DtypeOpt = Annotated[
    str,
    typer.Option("--dtype", envvar="SLEUTH_DTYPE", metavar="DTYPE", rich_help_panel=PANEL,
                 help="transformers backend: auto (bfloat16 on GPU, float32 on CPU), float32, bfloat16, float16."),
]


def parse_headers(values: list[str] | None) -> dict[str, str]:
    """``["Name: value", ...]`` -> ``{"Name": "value"}``."""
    headers: dict[str, str] = {}
    for item in values or []:
        name, sep, value = item.partition(":")
        if not sep or not name.strip() or any(c.isspace() for c in name.strip()):
            raise ConfigError(f"header {item!r} must look like 'Name: value'")
        headers[name.strip()] = value.strip()
    return headers


def backend_config_from_cli(
    *,
    backend: str = DEFAULT_BACKEND,
    model: str | None,
    base_url: str | None = None,
    api_key: str | None = None,
    header: list[str] | None = None,
    temperature: float | None = DEFAULT_TEMPERATURE,
    max_tokens: int | None = DEFAULT_MAX_TOKENS,
    timeout: float = DEFAULT_TIMEOUT,
    max_retries: int = DEFAULT_MAX_RETRIES,
    tool_mode: str = DEFAULT_TOOL_MODE,
    image_max_side: int | None = DEFAULT_IMAGE_MAX_SIDE,
    image_detail: str | None = None,
    replay_cache: Path | None = None,
    prices: Path | None = None,
    device: str = DEFAULT_DEVICE,
    dtype: str = DEFAULT_DTYPE,
) -> BackendConfig:
    """A ``BackendConfig`` from the shared flags; bad values raise ``ConfigError`` with one line."""
    if not model or not model.strip():
        raise ConfigError("no model given: pass --model (or set SLEUTH_MODEL)")
    values: dict[str, Any] = {
        "backend": backend,
        "model": model,
        "base_url": base_url,
        "api_key": api_key,
        "headers": parse_headers(header),
        "temperature": temperature,
        "max_tokens": max_tokens,
        "timeout_s": timeout,
        "max_retries": max_retries,
        "tool_mode": tool_mode,
        "image_max_side": image_max_side,
        "image_detail": image_detail,
        "replay_cache": replay_cache,
        "prices_file": prices,
        "device": device,
        "dtype": dtype,
    }
    try:
        return BackendConfig(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "config"
        flag = {"timeout_s": "timeout", "prices_file": "prices"}.get(field, field).replace("_", "-")
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"--{flag}: {message}") from None
