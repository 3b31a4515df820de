"""Model backends behind one call: ``create_backend(config).chat(messages, tools, settings)``.

- ``openai``: any OpenAI-compatible server (OpenAI, vLLM, SGLang, Ollama, LM Studio, ...)
- ``transformers``: a model loaded in-process (a VLM with its processor, or a text LM / GGUF file)

With ``config.replay_cache`` set, the backend is wrapped in an on-disk
reply cache (``.cache_stats()`` counts hits and misses).
"""

from __future__ import annotations

from typing import Callable

from agent.backends.base import Backend, BackendError
from agent.backends.config import BackendConfig
from sleuth.errors import ConfigError

__all__ = ["Backend", "BackendConfig", "BackendError", "available_backends", "create_backend", "register_backend"]


def _openai(config: BackendConfig) -> Backend:
    from agent.backends.openai_backend import OpenAIBackend

    return OpenAIBackend(config)


def _transformers(config: BackendConfig) -> Backend:
    # Imported lazily: torch and transformers take seconds to import.
    from agent.backends.transformers_backend import TransformersBackend

    return TransformersBackend(config)


_REGISTRY: dict[str, Callable[[BackendConfig], Backend]] = {
    "openai": _openai,
    "transformers": _transformers,
}


def register_backend(name: str, factory: Callable[[BackendConfig], Backend]) -> None:
    """Add a backend kind (``factory(config) -> Backend``)."""
    _REGISTRY[name] = factory


def available_backends() -> list[str]:
    return sorted(_REGISTRY)


def create_backend(config: BackendConfig) -> Backend:
    """The backend ``config`` describes, wrapped in the replay cache when ``config.replay_cache`` is set."""
    try:
        factory = _REGISTRY[config.backend]
    except KeyError:
        raise ConfigError(
            f"unknown backend {config.backend!r}; available: {', '.join(available_backends())}"
        ) from None
    backend = factory(config)
    if config.replay_cache is not None:
        from agent.backends.replay import ReplayBackend

        backend = ReplayBackend(backend, config.replay_cache)
    return backend
