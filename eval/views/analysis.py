"""What the trace views compute about a trace, rather than how they draw it.

Pure functions on ``agent.trace.Trace``: which frames the answer cites as
evidence, the timeline's marks and span, each planning step's cost, the
outcome, one-line labels for nodes and tool calls, and the formatting of
seconds and costs the views share. The trace page, the terminal tree, the
exports and the run browser all read these, so all views agree on what counts
as evidence. Nothing here imports another view module.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from agent.recorder import EVIDENCE_TOLERANCE_S as RECORDER_EVIDENCE_TOLERANCE_S
from agent.trace import Node, Trace

SOURCE_ORDER = ("overview", "search", "view", "resample")
# Frames a captioning model was shown get a lane of their own, only in traces that have them.
OPTIONAL_SOURCES = ("caption",)
# A cited timestamp matches the nearest frame(s) seen within the tolerance the
# agent uses to link its answer to evidence; cited moments with no frame that
# close are flagged as never seen.
EVIDENCE_TOLERANCE_S = RECORDER_EVIDENCE_TOLERANCE_S
LABEL_MAX_CHARS = 60

_OPTION_RE = re.compile(r"^\s*\(?([A-Za-z])\)?[.:)]?\s+(.*)$", re.S)


@dataclass(frozen=True)
class TimelineMark:
    """One frame on the timeline."""

    index: int  # position in ``trace.frames()``
    t: float
    source: str
    node_id: str
    shown: bool
    score: float | None
    evidence: bool

    def left_pct(self, span: float) -> float:
        return max(0.0, min(100.0, 100.0 * self.t / span)) if span > 0 else 0.0


@dataclass(frozen=True)
class StepSummary:
    """The nodes of one planning step and what they cost."""

    step: int
    nodes: list[Node]
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    cost_usd: float | None  # None when a model call in the step has no known price
    model_calls: int


# --------------------------------------------------------------------------- formatting


def format_seconds(t: float | None) -> str:
    if t is None:
        return "?"
    return f"{t:.1f}s" if abs(t - round(t, 1)) < 1e-9 else f"{t:.2f}s"


def format_clock(t: float) -> str:
    minutes, seconds = divmod(int(round(t)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def axis_ticks(span: float, max_ticks: int = 10) -> list[tuple[float, str]]:
    """(percent of the span, label) for a time axis: short videos in seconds (0.5s, 1s ...), longer ones on a clock."""
    step = next((s for s in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600) if span / s <= max_ticks),
                math.ceil(span / max_ticks / 3600) * 3600)
    label = (lambda t: f"{t:g}s") if span < 60 else format_clock
    return [(round(100 * i * step / span, 4), label(i * step)) for i in range(int(span // step) + 1)]


def format_cost(cost: float | None) -> str:
    if cost is None:
        return "—"
    return f"${cost:.4f}" if cost < 1 else f"${cost:.2f}"


def parse_option(option: str) -> tuple[str | None, str]:
    """``"(A) text"`` -> ``("A", "text")``; an option without a letter gives ``(None, option)``."""
    match = _OPTION_RE.match(option)
    if not match:
        return None, option.strip()
    return match.group(1).upper(), match.group(2).strip()


# --------------------------------------------------------------------------- evidence and timeline


def evidence_flags(trace: Trace) -> list[bool]:
    """For each frame in ``trace.frames()``: is it one the answer cites?

    Each cited timestamp selects the frames nearest to it (every source at that
    same moment), provided they are within ``EVIDENCE_TOLERANCE_S``.
    """
    frames = trace.frames()
    flags = [False] * len(frames)
    if not trace.answer or not frames:
        return flags
    for cited in trace.answer.evidence:
        nearest = min(abs(f.t - cited) for f in frames)
        if nearest > EVIDENCE_TOLERANCE_S:
            continue
        for i, frame in enumerate(frames):
            if abs(frame.t - cited) <= nearest + 1e-6:
                flags[i] = True
    return flags


def unseen_evidence(trace: Trace) -> list[float]:
    """Cited timestamps with no frame seen near them (the answer points at something never looked at)."""
    if not trace.answer:
        return []
    times = [f.t for f in trace.frames()]
    return [c for c in trace.answer.evidence if not times or min(abs(t - c) for t in times) > EVIDENCE_TOLERANCE_S]


def timeline_marks(trace: Trace) -> list[TimelineMark]:
    flags = evidence_flags(trace)
    marks: list[TimelineMark] = []
    for node in trace.nodes:
        for frame in node.frames:
            i = len(marks)
            marks.append(
                TimelineMark(
                    index=i,
                    t=frame.t,
                    source=frame.source,
                    node_id=node.id,
                    shown=frame.shown,
                    score=frame.score,
                    evidence=flags[i],
                )
            )
    return marks


def frame_sources(trace: Trace) -> tuple[str, ...]:
    """The timeline's lanes: the usual sources always, the others where the trace has such frames."""
    present = {f.source for f in trace.frames()}
    return SOURCE_ORDER + tuple(s for s in OPTIONAL_SOURCES if s in present)


def timeline_span(trace: Trace) -> tuple[float, bool]:
    """The timeline's length in seconds and whether it is the real video duration."""
    if trace.duration_s and trace.duration_s > 0:
        return float(trace.duration_s), True
    seen = [f.t for f in trace.frames()] + (trace.answer.evidence if trace.answer else [])
    return (max(seen) * 1.05 if seen and max(seen) > 0 else 1.0), False


def node_frames(trace: Trace) -> tuple[dict[str, int], dict[str, list[bool]]]:
    """For each node with frames: the index in ``trace.frames()`` of its first frame,
    and whether each of its frames is evidence."""
    frame_start: dict[str, int] = {}
    evidence_by_node: dict[str, list[bool]] = {}
    for mark in timeline_marks(trace):
        frame_start.setdefault(mark.node_id, mark.index)
        evidence_by_node.setdefault(mark.node_id, []).append(mark.evidence)
    return frame_start, evidence_by_node


# --------------------------------------------------------------------------- steps, edges, outcome


def step_summaries(trace: Trace) -> list[StepSummary]:
    by_step: dict[int, list[Node]] = {}
    for node in trace.nodes:
        by_step.setdefault(node.step, []).append(node)
    summaries = []
    for step in sorted(by_step):
        nodes = by_step[step]
        calls = [n for n in nodes if n.tokens is not None]
        costs = [n.cost_usd for n in nodes if n.cost_usd is not None]
        unpriced = any(n.cost_usd is None for n in calls)
        summaries.append(
            StepSummary(
                step=step,
                nodes=nodes,
                prompt_tokens=sum(n.tokens.prompt for n in calls),
                completion_tokens=sum(n.tokens.completion for n in calls),
                latency_s=sum(n.latency_s or 0.0 for n in nodes),
                cost_usd=None if unpriced else sum(costs),
                model_calls=len(calls),
            )
        )
    return summaries


def node_edges(trace: Trace) -> dict[str, list[dict[str, str]]]:
    """For each node, the edges that touch it other than ``next`` (the step order already shows those):
    ``{"dir": "in" | "out", "kind", "other": the other node's id, "other_kind"}``."""
    edges: dict[str, list[dict[str, str]]] = {n.id: [] for n in trace.nodes}
    kinds = {n.id: n.kind for n in trace.nodes}
    for edge in trace.edges:
        if edge.kind == "next":
            continue
        if edge.source in edges:
            edges[edge.source].append(
                {"dir": "out", "kind": edge.kind, "other": edge.target, "other_kind": kinds.get(edge.target, "?")}
            )
        if edge.target in edges:
            edges[edge.target].append(
                {"dir": "in", "kind": edge.kind, "other": edge.source, "other_kind": kinds.get(edge.source, "?")}
            )
    return edges


def verdict(trace: Trace) -> tuple[str, str]:
    """(css class, words) for the outcome of the run."""
    answer = trace.answer
    if answer is None:
        return "unknown", "no final answer recorded"
    if answer.option is None:
        return "wrong", f"no answer ({answer.reason.replace('_', ' ')})"
    if answer.correct is None:
        return "unknown", f"answered {answer.option}; gold unknown"
    return ("correct", "correct") if answer.correct else ("wrong", "wrong")


# --------------------------------------------------------------------------- labels


def call_signature(node: Node, max_len: int = 200) -> str:
    """``search(query='door opens', k=8)``: a tool call as one line."""
    args = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in (node.arguments or {}).items())
    text = f"{node.tool or '?'}({args})"
    return text if len(text) <= max_len else text[: max_len - 1] + "…"


def text_repeats_arguments(node: Node) -> bool:
    """True when a tool call's text is only its arguments as JSON (already shown in the call signature)."""
    if not node.text.strip():
        return True
    try:
        return json.loads(node.text) == (node.arguments or {})
    except ValueError:
        return False


def shorten(text: str, limit: int = LABEL_MAX_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def node_label(node: Node, trace: Trace | None = None) -> str:
    """A one-line description of a node, shared by the DOT and Mermaid exports."""
    if node.kind == "question":
        return "Question: " + shorten(trace.question if trace else node.text)
    if node.kind == "overview":
        return f"Overview: {len(node.frames)} frames"
    if node.kind == "thought":
        return "Thought: " + shorten(node.text)
    if node.kind == "captions":
        return f"Captions: {len(node.captions)} segments"
    if node.kind == "judgement":
        verdicts = " ".join(f"{v.option}:{v.verdict}" for v in node.verdicts)
        confidence = f"confidence {node.confidence}/3" if node.confidence is not None else ""
        return "Judgement: " + (" · ".join(p for p in (verdicts, confidence) if p) or shorten(node.text))
    if node.kind == "tool_call":
        label = call_signature(node, max_len=LABEL_MAX_CHARS)
        return label + (" ✗" if node.error else "")
    if node.kind == "observation":
        if node.error:
            return "error: " + shorten(node.error, LABEL_MAX_CHARS - 7)
        shown = sum(1 for f in node.frames if f.shown)
        listed = len(node.frames) - shown
        if not node.frames:
            return f"{node.tool or 'tool'} → " + shorten(node.text or "no frames")
        times = ", ".join(format_seconds(f.t) for f in node.frames[:4]) + (" …" if len(node.frames) > 4 else "")
        counts = f"{shown} shown" + (f", {listed} listed" if listed else "")
        return f"{node.tool or 'tool'} → {counts}: {times}"
    if node.kind == "answer":
        answer = trace.answer if trace else None
        if answer is None:
            return "Answer"
        chosen = answer.option or "none"
        forced = " (forced: budget exhausted)" if answer.reason == "budget_exhausted" else ""
        if answer.gold is None:
            return f"Answer {chosen}{forced}"
        mark = "✓" if answer.correct else "✗"
        return f"Answer {chosen} (gold {answer.gold}) {mark}{forced}"
    return shorten(node.text or node.kind)


__all__ = [
    "axis_ticks",
    "EVIDENCE_TOLERANCE_S",
    "LABEL_MAX_CHARS",
    "OPTIONAL_SOURCES",
    "SOURCE_ORDER",
    "StepSummary",
    "TimelineMark",
    "call_signature",
    "evidence_flags",
    "format_clock",
    "format_cost",
    "format_seconds",
    "frame_sources",
    "node_edges",
    "node_frames",
    "node_label",
    "parse_option",
    "shorten",
    "step_summaries",
    "text_repeats_arguments",
    "timeline_marks",
    "timeline_span",
    "unseen_evidence",
    "verdict",
]
