"""The one interface between sleuth and any model.

A backend takes a list of ``Message`` (text and images), optional
``ToolSpec`` schemas and ``GenerationSettings`` and returns a ``Reply``
(text, tool calls, usage, latency, cost, raw response). The agent and the
end-to-end baseline both go through it, so a comparison isolates the method.
"""

from __future__ import annotations

import base64
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from sleuth.errors import SleuthError
from sleuth.redact import redact


class BackendError(SleuthError):
    """A model call failed for good (after retries): server error, timeout, bad reply.

    ``config_class`` (from ``SleuthError``) is True for "connection", "auth" and
    "not_found": a dead URL, a wrong key or model name fails every question alike.
    """

    def __init__(self, message: str, *, kind: str = "error", attempts: int = 1):
        # Messages name endpoints and echo server text, and end up in error rows and traces.
        super().__init__(redact(message))
        self.kind = kind  # e.g. "rate_limit", "server", "timeout", "connection", "auth", "not_found", "bad_request"
        self.attempts = attempts


# --------------------------------------------------------------------------- content


class TextPart(BaseModel):
    type: Literal["text"] = "text"
    text: str


class ImagePart(BaseModel):
    """One image, already JPEG-encoded (the bytes are what the model sees and what the cache hashes)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    type: Literal["image"] = "image"
    jpeg: bytes = Field(repr=False)
    width: int
    height: int
    detail: Literal["auto", "low", "high"] | None = None
    label: str | None = None  # e.g. "t=12.50s"; backends put it as text before the image when set
    _data_url: str | None = PrivateAttr(default=None)

    @classmethod
    def from_array(
        cls,
        frame: np.ndarray,
        *,
        max_side: int | None = None,
        quality: int | None = None,
        detail: Literal["auto", "low", "high"] | None = None,
        label: str | None = None,
    ) -> "ImagePart":
        """Encode an HxWx3 uint8 RGB frame as JPEG.

        ``max_side=None`` keeps full resolution and ``quality=None`` uses PIL's
        default (75): exactly MMR-V's official encoding.
        """
        from tools.rendering import Rendering

        return cls.from_rendered(Rendering(max_side, quality)(frame), detail=detail, label=label)

    @classmethod
    def from_rendered(
        cls, image: Any, *, detail: Literal["auto", "low", "high"] | None = None, label: str | None = None
    ) -> "ImagePart":
        """A ``tools.rendering.RenderedImage`` (kept or fresh) as a message part."""
        return cls(jpeg=image.jpeg, width=image.width, height=image.height, detail=detail, label=label)

    def data_url(self) -> str:
        # made once: an agent's conversation sends the same image with every later request
        if self._data_url is None:
            self._data_url = "data:image/jpeg;base64," + base64.b64encode(self.jpeg).decode("ascii")
        return self._data_url


ContentPart = TextPart | ImagePart


class ToolCall(BaseModel):
    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    raw_arguments: str = ""  # what the model actually wrote
    error: str | None = None  # set when the arguments could not be parsed as a JSON object


class Message(BaseModel):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[ContentPart] = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)  # assistant turns
    tool_call_id: str | None = None  # tool turns
    name: str | None = None  # tool turns: the tool's name

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    def images(self) -> list[ImagePart]:
        if isinstance(self.content, str):
            return []
        return [p for p in self.content if isinstance(p, ImagePart)]


class ToolSpec(BaseModel):
    """A tool the model may call: name, description, JSON schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]

    def openai_schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


class GenerationSettings(BaseModel):
    """Per-call generation settings. ``None`` means: leave it to the server's default."""

    temperature: float | None = 0.0
    max_tokens: int | None = 1024
    timeout_s: float = 120.0  # deadline for the whole request (connect, wait, read the reply), not per read
    seed: int | None = None
    stop: list[str] | None = None


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
        )


class Reply(BaseModel):
    text: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    latency_s: float = 0.0
    cost_usd: float | None = None  # None: unknown price, never silently zero
    model: str = ""
    finish_reason: str | None = None
    cached: bool = False  # served by the replay cache
    raw: dict[str, Any] | None = None  # the server's response as JSON, for debugging


@runtime_checkable
class Backend(Protocol):
    """What every backend implements.

    Optional: ``preflight() -> dict[str, Any]`` checks once, before a run, that
    the model can answer at all (endpoint reachable, key accepted, model
    served) and returns facts worth logging; it raises ``BackendError`` with a
    one-line message that says what to fix. Callers look it up with
    ``getattr(backend, "preflight", None)``, since not every backend has one.
    """

    name: str  # "openai", "transformers", ...
    model: str

    def chat(
        self,
        messages: list[Message],
        tools: list[ToolSpec] | None = None,
        settings: GenerationSettings | None = None,
    ) -> Reply: ...
