"""The ways of answering a question that the runner can compare, behind one factory.

``create_method("uniform", backend=...)`` or ``create_method("agent",
backend=..., searcher=...)`` returns an object with ``run(question) ->
MethodOutcome``. Both methods go through the same ``Backend``, so a
comparison between them isolates the method.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol

from sleuth.errors import ConfigError, SleuthError

if TYPE_CHECKING:  # heavy imports only where they are used
    from agent.backends.base import Backend, GenerationSettings
    from agent.trace import Trace
    from eval.dataset import Question

METHOD_NAMES = ("uniform", "agent")


@dataclass
class MethodOutcome:
    """What one method produced for one question."""

    prediction: str | None  # a letter of the question's options, or None
    extraction: str | None  # the rule that found the letter (brackets | boxed | letter | tool | none)
    raw_response: str
    frames: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    latency_s: float = 0.0  # wall-clock seconds for the whole question
    model: str = ""
    trace: "Trace | None" = None


class MethodFailure(SleuthError):
    """The method could not do its job on this question (a model unreachable, a tool that cannot work,
    the deadline): the question gets an error row, never an answer. ``trace`` keeps what happened."""

    def __init__(self, message: str, *, kind: str = "error", trace: "Trace | None" = None):
        super().__init__(message)
        self.kind = kind
        self.trace = trace


class Method(Protocol):
    name: str

    def run(self, question: "Question") -> MethodOutcome: ...

    def describe(self) -> dict[str, Any]: ...  # settings recorded in the run's config.json

    def prompt_names(self) -> list[str]: ...


class AgentMethod:
    """The tool-using agent (``agent.run.solve``); one trace per question."""

    name = "agent"

    def __init__(
        self,
        backend: "Backend",
        searcher: Any,
        *,
        config: Any = None,
        perception_backend: "Backend | None" = None,
        labels: list[str] | None = None,
        on_event: Callable[[dict], None] | None = None,
    ):
        from agent.config import AgentConfig

        self.backend = backend
        self.searcher = searcher
        self.config = config if config is not None else AgentConfig()
        self.perception_backend = perception_backend
        self.labels = list(labels or [])
        self.on_event = on_event

    def run(self, question: "Question") -> MethodOutcome:
        from agent.run import solve  # the agent is optional for the uniform baseline

        started = time.perf_counter()
        trace = solve(
            question.video_file(),
            question.question,
            question.options,
            backend=self.backend,
            searcher=self.searcher,
            config=self.config,
            perception_backend=self.perception_backend,
            question_id=question.question_id,
            # a gold letter the options lack (kept as the official script keeps it) is not the agent's business
            gold=question.answer if question.answer in question.letters else None,
            on_event=self.on_event,
            labels=self.labels or None,
        )
        answer = trace.answer
        if answer is not None and answer.reason == "error":
            raise MethodFailure(answer.rationale or "the agent failed", kind=answer.error_kind or "agent", trace=trace)
        prediction = answer.option if answer is not None else None
        if prediction is not None and prediction not in question.letters:
            prediction = None  # solve() should never do this; never score a letter the question lacks
        return MethodOutcome(
            prediction=prediction,
            extraction="tool" if prediction else "none",
            raw_response=_answer_text(trace),
            frames=trace.totals.frames_shown,
            prompt_tokens=trace.totals.tokens.prompt,
            completion_tokens=trace.totals.tokens.completion,
            cost_usd=trace.totals.cost_usd,
            latency_s=time.perf_counter() - started,
            model=getattr(self.backend, "model", ""),
            trace=trace,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.name,
            "frames": self.config.max_frames,
            "agent": self.config.model_dump(mode="json"),
            "perception_model": getattr(self.perception_backend, "model", None),
            "labels": self.labels,
        }

    def prompt_names(self) -> list[str]:
        from agent.graph import PROMPT_NAMES  # the prompts the agent actually loads

        return list(PROMPT_NAMES)


def _answer_text(trace: "Trace") -> str:
    """The agent's final words, in the shape MMR-V's scripts read (``[[X]]`` carries the letter)."""
    answer = trace.answer
    if answer is None:
        return ""
    text = answer.rationale.strip()
    if answer.option:
        text = f"{text}\n[[{answer.option}]]".strip()
    return text


def create_method(
    name: str,
    *,
    backend: "Backend",
    frames: int = 32,
    cot: bool = False,
    strict_official: bool = False,
    settings: "GenerationSettings | None" = None,
    searcher: Any = None,
    agent_config: Any = None,
    perception_backend: "Backend | None" = None,
    labels: list[str] | None = None,
) -> Method:
    """The method registry: ``"uniform"`` (MMR-V's end-to-end protocol) or ``"agent"``."""
    if name == "uniform":
        from eval.uniform import UniformMethod

        return UniformMethod(backend, frames=frames, cot=cot, strict_official=strict_official, settings=settings)
    if name == "agent":
        if searcher is None:
            raise ConfigError("the agent method needs a frame searcher (index settings)")
        return AgentMethod(
            backend, searcher, config=agent_config, perception_backend=perception_backend, labels=labels
        )
    raise ConfigError(f"unknown method {name!r}; choose one of: {', '.join(METHOD_NAMES)}")
