"""What a call cost, from token usage and a small price table.

Prices are USD per 1M tokens (input, output). Dated snapshots such as
``gpt-4o-2024-08-06`` use their family's price.
A model without a known price costs ``None`` ("unknown"), never zero:
local servers are free to run but not free of compute, and a silent zero
would make a paid model look free.

Override or extend the table with a JSON file, passed as ``--prices`` or
the ``SLEUTH_PRICES`` environment variable::

    {"my-model": {"input": 0.5, "output": 1.5}, "gpt-4o": [2.5, 10]}
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.backends.base import Usage
from sleuth.errors import ConfigError

PRICES_ENV = "SLEUTH_PRICES"
_SNAPSHOT_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{4}|latest)$")


class Price(BaseModel):
    model_config = ConfigDict(frozen=True)

    input: float = Field(ge=0, description="USD per 1M prompt tokens")
    output: float = Field(ge=0, description="USD per 1M completion tokens")

    def cost(self, usage: Usage) -> float:
        return (usage.prompt_tokens * self.input + usage.completion_tokens * self.output) / 1_000_000


# OpenAI list prices (standard tier), USD per 1M tokens.
BUILTIN_PRICES: dict[str, Price] = {
    "gpt-4o": Price(input=2.50, output=10.00),
    "gpt-4o-mini": Price(input=0.15, output=0.60),
    "gpt-4.1": Price(input=2.00, output=8.00),
    "gpt-4.1-mini": Price(input=0.40, output=1.60),
    "gpt-4.1-nano": Price(input=0.10, output=0.40),
    "gpt-5": Price(input=1.25, output=10.00),
    "gpt-5-mini": Price(input=0.25, output=2.00),
    "gpt-5-nano": Price(input=0.05, output=0.40),
    "o3": Price(input=2.00, output=8.00),
    "o3-mini": Price(input=1.10, output=4.40),
    "o4-mini": Price(input=1.10, output=4.40),
}


def _parse_price(model: str, value: object, source: Path) -> Price:
    try:
        if isinstance(value, (list, tuple)) and len(value) == 2:
            return Price(input=value[0], output=value[1])
        if isinstance(value, dict):
            return Price.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"price file {source}: model {model!r}: {first['msg']}") from None
    raise ConfigError(f'price file {source}: model {model!r}: expected {{"input": X, "output": Y}} or [X, Y]')


@lru_cache(maxsize=16)
def load_price_file(path: Path) -> dict[str, Price]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"price file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"price file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"price file {path} must be a JSON object mapping model names to prices")
    return {str(model): _parse_price(str(model), value, path) for model, value in data.items()}


def price_table(prices_file: Path | None = None) -> dict[str, Price]:
    """The built-in table, overridden by ``SLEUTH_PRICES`` and then by ``prices_file``."""
    table = dict(BUILTIN_PRICES)
    env_file = os.environ.get(PRICES_ENV)
    if env_file:
        table.update(load_price_file(Path(env_file)))
    if prices_file is not None:
        table.update(load_price_file(Path(prices_file)))
    return table


def lookup_price(model: str, table: dict[str, Price]) -> Price | None:
    name = model.strip()
    if name.startswith("openai/"):  # routers such as OpenRouter prefix the provider
        name = name[len("openai/") :]
    if name in table:
        return table[name]
    # Dated snapshots only ("gpt-4o-mini-2024-07-18" -> "gpt-4o-mini"): other suffixes
    # (gpt-4o-audio-preview, gpt-4o-realtime) are different products with different prices.
    snapshot = _SNAPSHOT_SUFFIX.sub("", name)
    return table.get(snapshot) if snapshot != name else None


def cost_usd(model: str, usage: Usage, prices_file: Path | None = None) -> float | None:
    """USD for one call, or None when the model's price is unknown."""
    price = lookup_price(model, price_table(prices_file))
    return None if price is None else price.cost(usage)
