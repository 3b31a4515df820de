"""Agent strategies, registered by name: ``get_strategy("planner")``; see ``agent.strategies.base``."""

from agent.strategies import captions, confidence, planner  # noqa: F401  (the built-in strategies register themselves)
from agent.strategies.base import REGISTRY, Strategy, register_strategy
from sleuth.errors import ConfigError


def strategy_names() -> list[str]:
    return sorted(REGISTRY)


def get_strategy(name: str) -> Strategy:
    """The strategy registered as ``name``."""
    try:
        return REGISTRY[name]()
    except KeyError:
        raise ConfigError(f"unknown agent strategy {name!r}; choose one of: {', '.join(strategy_names())}") from None


__all__ = ["Strategy", "get_strategy", "register_strategy", "strategy_names"]
