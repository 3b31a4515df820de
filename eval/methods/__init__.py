"""Methods, registered by name: ``create_method("uniform", parts)``; see ``eval.methods.base``."""

from eval.methods import agent, uniform  # noqa: F401  (the built-in methods register themselves)
from eval.methods.base import (
    REGISTRY,
    Method,
    MethodFailure,
    MethodOutcome,
    MethodParts,
    register_method,
)
from sleuth.errors import ConfigError


def method_names() -> list[str]:
    return sorted(REGISTRY)


def create_method(name: str, parts: MethodParts) -> Method:
    """The method registered as ``name``, built from ``parts``."""
    try:
        factory = REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; choose one of: {', '.join(method_names())}") from None
    return factory(parts)


__all__ = [
    "Method", "MethodFailure", "MethodOutcome", "MethodParts", "create_method", "method_names", "register_method",
]
