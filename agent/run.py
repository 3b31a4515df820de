"""``solve``: run the agent on one question and return its reasoning graph."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from agent.backends.base import Backend
from agent.config import AgentConfig
from agent.recorder import TraceRecorder
from agent.state import AgentContext
from agent.strategies import get_strategy
from agent.trace import FinalAnswer, Trace
from prompts import prompt_hashes
from sleuth.answers import AnswerKind, label_options, resolve_letter
from sleuth.errors import ConfigError, SleuthError

def option_letters(options: list[str]) -> tuple[list[str], list[str]]:
    """(letters, options as "(X) text"); see ``sleuth.answers.label_options``."""
    try:
        return label_options(options)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def default_question_id(video: str | Path, question: str, options: list[str]) -> str:
    key = "\x1f".join([Path(video).name, question, *options])
    return "q-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]


def clip_model_id(searcher: Any) -> str:
    """The searcher's CLIP model id (architecture + weights); never loads the encoder."""
    try:
        return str(searcher.model_id)
    except SleuthError as exc:  # e.g. a checkpoint path that is gone: the first search reports it too
        return f"unavailable ({exc})"


def searcher_uses_random_weights(searcher: Any) -> bool:
    return "random-weights" in (getattr(searcher, "labels", None) or [])


def solve(
    video: str | Path,
    question: str,
    options: list[str],
    *,
    backend: Backend,
    searcher: Any,  # tools.search.FrameSearcher
    config: AgentConfig | None = None,
    strategy: str = "planner",
    answer_kind: AnswerKind = "choice",
    perception_backend: Backend | None = None,
    question_id: str | None = None,
    gold: str | None = None,
    on_event: Callable[[dict], None] | None = None,
    labels: list[str] | None = None,
    frame_store: Any = None,
) -> Trace:
    """Answer one multiple-choice question about ``video`` and return the reasoning graph.

    Never raises for model misbehaviour: errors are recorded in the trace and
    an unusable run ends with ``FinalAnswer(option=None, reason=...)``. Raises
    ``VideoError`` only when the video itself cannot be opened, and
    ``ConfigError`` for unusable settings (no options, delegated perception
    without a perception backend).
    """
    config = config or AgentConfig()
    if config.perception == "delegated" and perception_backend is None:
        raise ConfigError("perception 'delegated' needs a perception model (--perception-model)")
    chosen = get_strategy(strategy)
    if answer_kind == "choice":
        letters, options = option_letters(options)
        gold_answer = resolve_letter(gold, letters) if gold else None
        if gold and gold_answer is None:
            raise ConfigError(f"gold answer {gold!r} is not one of the letters {', '.join(letters)}")
    else:
        letters, options, gold_answer = [], [], gold
    question_id = question_id or default_question_id(video, question, options)

    # a run's frame store shares the open video and its frames with the run's other questions
    with _opened(video, frame_store) as (handle, store):
        trace = Trace(
            question_id=question_id,
            video=str(video),
            duration_s=float(handle.meta.duration_s),
            question=question,
            options=options,
            settings=_settings(config, searcher, handle),
            models=_models(backend, perception_backend, searcher, config),
            prompts=prompt_hashes(list(chosen.prompt_names)),
            labels=_labels(labels, searcher, backend, config),
        )
        recorder = TraceRecorder(trace)
        toolbox = chosen.toolbox_class(
            video=handle, video_path=video, searcher=searcher, config=config, letters=letters, options=options,
            perception_backend=perception_backend if config.perception == "delegated" else None,
            main_question=question, answer_kind=answer_kind, frame_store=store,
        )
        context = AgentContext(
            backend=backend, toolbox=toolbox, recorder=recorder, config=config,
            question=question, options=options, letters=letters, answer_kind=answer_kind,
        )
        state = _run_strategy(chosen, context, on_event, question_id)

    if trace.answer is None:  # the graph stopped without an answer (it should not): say so, never guess
        recorder.finish(FinalAnswer(option=None, reason="error", error_kind="agent",
                                    rationale="the run ended without an answer"),
                        state.get("step", 0), after=state.get("frontier", [])[-1:])
    trace.totals.steps = state.get("step", 0)
    trace.totals.frames_shown = state.get("frames_shown", 0)
    trace.totals.pixels_shown = toolbox.pixels_shown
    if not trace.answer.verdicts:
        trace.answer.verdicts = toolbox.board.table()
    if gold_answer is not None:
        trace.answer.gold = gold_answer
        trace.answer.correct = trace.answer.given() == (gold_answer if answer_kind != "number" else _number(gold_answer))
    if on_event is not None:
        on_event({"event": "done", "question_id": question_id, "answer": trace.answer.model_dump(),
                  "totals": trace.totals.model_dump()})
    return trace


@contextlib.contextmanager
def _opened(video: str | Path, frame_store: Any) -> Iterator[tuple[Any, Any]]:
    """(the open video, the frame store it reads through): the run's store, else one for this question."""
    from tools.frame_store import FrameStore

    store = frame_store if frame_store is not None else FrameStore()
    try:
        with store.video(video) as handle:
            yield handle, store
    finally:
        if frame_store is None:
            store.close()


def _run_strategy(strategy: Any, context: AgentContext, on_event: Callable[[dict], None] | None,
                  question_id: str) -> dict:
    """Run the strategy; a failure it raises (a tool that cannot work, an unreachable perception
    model, the deadline) ends the question with an error answer that says why."""
    forward = None if on_event is None else (lambda event: on_event({**event, "question_id": question_id}))
    try:
        return strategy.run(context, forward) or {}
    except SleuthError as exc:
        nodes = context.recorder.trace.nodes
        step = max((n.step for n in nodes), default=0)
        node = context.recorder.add("observation", step, after=[nodes[-1].id] if nodes else [], error=str(exc))
        context.recorder.finish(
            FinalAnswer(option=None, reason="error", error_kind=exc.kind, rationale=f"the run failed: {exc}"),
            step, after=[node.id],
        )
        return {"step": step}


def _number(value: Any) -> float | None:
    from sleuth.answers import parse_number

    return parse_number(value)


def _settings(config: AgentConfig, searcher: Any, video: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {"agent": config.model_dump(mode="json")}
    index_config = getattr(searcher, "config", None)
    if index_config is not None and hasattr(index_config, "model_dump"):
        settings["index"] = index_config.model_dump(mode="json", exclude={"cache_dir"})
    settings["video"] = video.meta.model_dump(mode="json")
    return settings


def _models(planner: Backend, perception: Backend | None, searcher: Any, config: AgentConfig) -> dict[str, str]:
    models = {"planner": planner.model, "clip": clip_model_id(searcher)}
    delegated = config.perception == "delegated" and perception is not None
    models["perception"] = perception.model if delegated else planner.model
    return models


# an in-process model that cannot read images (the offline SmolLM2 planner) planning without a perception model
BLIND_PLANNER_LABEL = "planner sees no images"


def _labels(labels: list[str] | None, searcher: Any, backend: Backend, config: AgentConfig) -> list[str]:
    result = list(labels or [])
    if searcher_uses_random_weights(searcher) and "random-weights" not in result:
        result.append("random-weights")
    if config.perception == "direct" and getattr(backend, "vision", True) is False and BLIND_PLANNER_LABEL not in result:
        result.append(BLIND_PLANNER_LABEL)
    return result
