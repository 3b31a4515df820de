"""The tool-using agent as a method: one agent strategy over the shared tools; one trace per question."""

from __future__ import annotations

import time
from typing import Any, Callable

from eval.methods.base import MethodFailure, MethodOutcome, MethodParts, register_method
from sleuth.errors import ConfigError


class AgentMethod:
    name = "agent"

    def __init__(
        self,
        backend: Any,
        searcher: Any,
        *,
        config: Any = None,
        strategy: str = "planner",
        perception_backend: Any = None,
        labels: list[str] | None = None,
        on_event: Callable[[dict], None] | None = None,
        frame_store: Any = None,
    ):
        from agent.config import AgentConfig
        from agent.strategies import get_strategy

        self.backend = backend
        self.searcher = searcher
        self.config = config if config is not None else AgentConfig()
        self.strategy = get_strategy(strategy).name  # unknown names fail here, before any question
        self.perception_backend = perception_backend
        self.labels = list(labels or [])
        self.on_event = on_event
        self.frame_store = frame_store

    def prefetch(self, question: Any) -> None:
        """Decode the frames the strategy's first look at a question's video reads, ahead of time (the
        runner asks for the next video's while this one's questions are with the model)."""
        from agent.strategies import get_strategy

        if self.frame_store is None:
            return
        strategy = get_strategy(self.strategy)
        # frames shown one by one are rendered too; contact sheets tile the decoded frames
        self.frame_store.decode_ahead(question.video_file(),
                                      lambda video: strategy.opening_indices(self.config, video.meta.n_frames),
                                      None if self.config.overview_in_sheets else self.config.frame_rendering())

    def run(self, question: Any) -> MethodOutcome:
        from agent.run import solve  # the agent is optional for the uniform baseline

        started = time.perf_counter()
        choice = question.answer_kind == "choice"
        trace = solve(
            question.video_file(),
            question.question,
            question.options,
            backend=self.backend,
            searcher=self.searcher,
            config=self.config,
            strategy=self.strategy,
            answer_kind=question.answer_kind,
            perception_backend=self.perception_backend,
            question_id=question.question_id,
            # a gold letter the options lack (kept as the official script keeps it) is not the agent's business
            gold=question.answer if not choice or question.answer in question.letters else None,
            on_event=self.on_event,
            labels=self.labels or None,
            frame_store=self.frame_store,
        )
        answer = trace.answer
        if answer is not None and answer.reason == "error":
            raise MethodFailure(answer.rationale or "the agent failed", kind=answer.error_kind or "agent", trace=trace)
        prediction = answer.given() if answer is not None else None
        if choice and prediction is not None and prediction not in question.letters:
            prediction = None  # solve() should never do this; never score a letter the question lacks
        return MethodOutcome(
            prediction=prediction,
            extraction="tool" if prediction is not None else "none",
            raw_response=_answer_text(trace),
            frames=trace.totals.frames_shown,
            pixels=trace.totals.pixels_shown,
            answer_reason=answer.reason if answer is not None else None,
            prompt_tokens=trace.totals.tokens.prompt,
            completion_tokens=trace.totals.tokens.completion,
            cost_usd=trace.totals.cost_usd,
            latency_s=time.perf_counter() - started,
            model=getattr(self.backend, "model", ""),
            trace=trace,
            unseen_evidence=len(answer.unseen_evidence) if answer is not None else 0,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.name,
            "strategy": self.strategy,
            "frames": self.config.max_frames,
            "agent": self.config.model_dump(mode="json"),
            "perception_model": getattr(self.perception_backend, "model", None),
            "labels": self.labels,
        }

    def identity(self) -> dict[str, Any]:
        return {"frames": self.config.max_frames, "strategy": self.strategy, "image_max_side": self.config.image_max_side}

    def prompt_names(self) -> list[str]:
        from agent.strategies import get_strategy

        return list(get_strategy(self.strategy).prompt_names)


def _answer_text(trace: Any) -> str:
    """The agent's final words, in the shape MMR-V's scripts read (``[[X]]`` carries the letter)."""
    answer = trace.answer
    if answer is None:
        return ""
    text = answer.rationale.strip()
    given = answer.given()
    if given is not None:
        text = f"{text}\n[[{given}]]".strip()
    return text


@register_method("agent")
def _agent(parts: MethodParts) -> AgentMethod:
    if parts.searcher is None:
        raise ConfigError("the agent method needs a frame searcher (frame index settings)")
    return AgentMethod(parts.backend, parts.searcher, config=parts.agent_config, strategy=parts.strategy,
                       perception_backend=parts.perception_backend, labels=parts.labels, frame_store=parts.frame_store)
