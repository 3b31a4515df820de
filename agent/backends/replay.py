"""An on-disk reply cache, so a finished run can be re-run or extended offline at no cost.

The key is the SHA-256 of everything that determines a reply: backend name,
model, messages (image bytes included, by their own SHA-256), tool schemas,
generation settings (minus the timeout, which does not change the answer)
and the backend's own request-shaping options. One JSON file per key,
written atomically, so concurrent workers and interrupted runs never leave
a half-written entry. A hit returns the stored reply with ``cached=True``;
its ``cost_usd`` and ``latency_s`` are those of the original call, so a
summary counts money actually spent as the cost of replies not cached.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agent.backends.base import Backend, BackendError, GenerationSettings, ImagePart, Message, Reply, ToolSpec
from sleuth.errors import ConfigError

log = logging.getLogger(__name__)

CACHE_FORMAT = 1


def _message_fingerprint(message: Message) -> dict[str, Any]:
    data = message.model_dump(mode="python", exclude={"content"})
    if isinstance(message.content, str):
        data["content"] = message.content
    else:
        parts = []
        for part in message.content:
            if isinstance(part, ImagePart):
                parts.append({
                    "type": "image",
                    "sha256": hashlib.sha256(part.jpeg).hexdigest(),
                    "width": part.width,
                    "height": part.height,
                    "detail": part.detail,
                    "label": part.label,
                })
            else:
                parts.append(part.model_dump(mode="json"))
        data["content"] = parts
    return data


def cache_key(
    backend: str,
    model: str,
    messages: list[Message],
    tools: list[ToolSpec] | None,
    settings: GenerationSettings,
    extra: dict[str, Any] | None = None,
) -> str:
    payload = {
        "format": CACHE_FORMAT,
        "backend": backend,
        "model": model,
        "messages": [_message_fingerprint(m) for m in messages],
        "tools": [t.model_dump(mode="json") for t in tools or []],
        "settings": settings.model_dump(mode="json", exclude={"timeout_s"}),
        "extra": extra or {},
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ReplayCache:
    """A directory of ``<key>.json`` replies."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"replay cache {self.directory} cannot be created: {exc.strerror or exc}") from None
        if not self.directory.is_dir():
            raise ConfigError(f"replay cache {self.directory} is not a directory")

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def get(self, key: str) -> Reply | None:
        path = self.path(key)
        try:
            return Reply.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValidationError, ValueError) as exc:
            # A damaged entry is a miss; the fresh reply overwrites it.
            log.warning("replay cache entry %s is unreadable (%s); calling the model", path, type(exc).__name__)
            return None

    def put(self, key: str, reply: Reply) -> None:
        data = reply.model_copy(update={"cached": False}).model_dump_json(indent=1)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{key[:16]}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(data)
            os.replace(tmp, self.path(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class ReplayBackend:
    """Wraps any backend: answers from the cache when it can, records every fresh reply."""

    def __init__(self, inner: Backend, directory: Path) -> None:
        self.inner = inner
        self.cache = ReplayCache(directory)
        self.name = inner.name
        self.model = inner.model
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    @property
    def supports_native_tools(self) -> bool:
        return bool(getattr(self.inner, "supports_native_tools", False))

    def __getattr__(self, attribute: str) -> Any:
        # config, endpoint, ... of the wrapped backend
        if attribute == "inner":
            raise AttributeError(attribute)
        return getattr(self.inner, attribute)

    def preflight(self) -> dict[str, Any]:
        """The wrapped backend's preflight.

        When the cache already holds replies, a failing model is only a warning:
        a re-run served from the cache needs no server (calls it misses still fail).
        """
        facts: dict[str, Any] = {"replay_cache": str(self.cache.directory)}
        inner = getattr(self.inner, "preflight", None)
        if inner is None:
            return facts
        try:
            return {**inner(), **facts}
        except BackendError as exc:
            if not any(self.cache.directory.glob("*.json")):
                raise
            log.warning("%s; continuing, since the replay cache holds replies", exc)
            return {**facts, "unavailable": str(exc)}

    def cache_stats(self) -> dict[str, int]:
        with self._lock:
            return {"hits": self._hits, "misses": self._misses}

    def chat(
        self,
        messages: list[Message],
        tools: list[ToolSpec] | None = None,
        settings: GenerationSettings | None = None,
    ) -> Reply:
        if settings is None:
            config = getattr(self.inner, "config", None)
            settings = config.generation_settings() if config is not None else GenerationSettings()
        identity = getattr(self.inner, "cache_identity", None)
        key = cache_key(self.name, self.model, messages, tools, settings, identity() if identity else None)
        stored = self.cache.get(key)
        if stored is not None:
            with self._lock:
                self._hits += 1
            return stored.model_copy(update={"cached": True})
        reply = self.inner.chat(messages, tools, settings)
        self.cache.put(key, reply)
        with self._lock:
            self._misses += 1
        return reply
