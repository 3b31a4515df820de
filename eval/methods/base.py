"""The ways of answering a question that the runner compares, registered by name.

A method turns one ``Question`` into a ``MethodOutcome`` (or raises
``MethodFailure`` when it could not do its job). Every method goes through
the same ``Backend``, so a comparison between methods isolates the method.
Each says which of its settings a resumed run must share (``identity``), so
one run directory never mixes two configurations.

Adding one: a class with ``name``, ``run``, ``describe``, ``identity`` and
``prompt_names``, and a factory registered with ``@register_method("name")``
that builds it from ``MethodParts`` (what a run specification resolves to).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

from sleuth.errors import SleuthError

if TYPE_CHECKING:
    from agent.backends.base import Backend, GenerationSettings
    from agent.trace import Trace
    from eval.benchmarks.base import Benchmark
    from eval.dataset import Question


@dataclass
class MethodOutcome:
    """What one method produced for one question."""

    prediction: str | float | None  # a letter, a number or text, per the question's answer kind; None: no answer
    extraction: str | None  # the rule that found it (brackets | boxed | letter | number | tool | none ...)
    raw_response: str
    frames: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    latency_s: float = 0.0  # wall-clock seconds for the whole question
    model: str = ""
    trace: "Trace | None" = None
    unseen_evidence: int = 0  # cited moments no model was shown (agents)
    pixels: int = 0  # width x height summed over the images sent to a model
    answer_reason: str | None = None  # agents: how the answer came (answered, budget_exhausted, ...)


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

    def identity(self) -> dict[str, Any]: ...  # settings a resumed run must share with the rows written

    def prompt_names(self) -> list[str]: ...


@dataclass
class MethodParts:
    """What a method may be built from: the resolved pieces of a run specification."""

    benchmark: "Benchmark"
    backend: "Backend"
    frames: int = 32
    settings: "GenerationSettings | None" = None
    cot: bool = False
    strict_official: bool = False
    searcher: Any = None  # tools.search.FrameSearcher, for methods that search frames
    agent_config: Any = None  # agent.config.AgentConfig
    strategy: str = "planner"
    perception_backend: "Backend | None" = None
    labels: list[str] = field(default_factory=list)
    frame_store: Any = None  # tools.frame_store.FrameStore shared by the run's questions (None: one per method)
    image_max_side: int | None = None  # frames resized to this longest side before any protocol (None: as it says)


MethodFactory = Callable[[MethodParts], Method]
REGISTRY: dict[str, MethodFactory] = {}


def register_method(name: str) -> Callable[[MethodFactory], MethodFactory]:
    """Decorator: ``@register_method("uniform")`` on a factory ``(MethodParts) -> Method``."""

    def add(factory: MethodFactory) -> MethodFactory:
        REGISTRY[name] = factory
        return factory

    return add




def pixels_in(messages: list[Any]) -> int:
    """Width x height summed over the images in chat ``messages``."""
    from agent.backends.base import ImagePart

    return sum(part.width * part.height for m in messages if isinstance(m.content, list)
               for part in m.content if isinstance(part, ImagePart))
