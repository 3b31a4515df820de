"""One reasoning trace as a self-contained HTML page.

The page shows the question and options with the chosen and gold answers, a
timeline of the whole video with a mark per frame the agent saw (coloured by
source, evidence highlighted), the reasoning graph step by step, and tokens,
latency and cost per step and in total. Everything is inline (CSS, images as
data URLs, no scripts from elsewhere), so the file opens anywhere offline.

The helpers here (``timeline_marks``, ``evidence_flags``, ``step_summaries``,
``parse_option``) are shared by the terminal tree, the exports and the run
browser, so all views agree on what counts as evidence.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from agent.recorder import EVIDENCE_TOLERANCE_S as RECORDER_EVIDENCE_TOLERANCE_S
from agent.trace import Node, Trace
from sleuth.errors import SleuthError

SOURCE_ORDER = ("overview", "search", "view", "resample")
# A cited timestamp matches the nearest frame(s) seen within the tolerance the
# agent uses to link its answer to evidence; cited moments with no frame that
# close are flagged as never seen.
EVIDENCE_TOLERANCE_S = RECORDER_EVIDENCE_TOLERANCE_S
THUMB_MAX_SIDE = 160

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


# --------------------------------------------------------------------------- shared facts


def format_seconds(t: float | None) -> str:
    if t is None:
        return "?"
    return f"{t:.1f}s" if abs(t - round(t, 1)) < 1e-9 else f"{t:.2f}s"


def format_clock(t: float) -> str:
    minutes, seconds = divmod(int(round(t)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


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


def timeline_span(trace: Trace) -> tuple[float, bool]:
    """The timeline's length in seconds and whether it is the real video duration."""
    if trace.duration_s and trace.duration_s > 0:
        return float(trace.duration_s), True
    seen = [f.t for f in trace.frames()] + (trace.answer.evidence if trace.answer else [])
    return (max(seen) * 1.05 if seen and max(seen) > 0 else 1.0), False


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


# --------------------------------------------------------------------------- thumbnails


def _is_inline_image(url: str | None) -> bool:
    # Only embedded images: a URL to elsewhere would make the page fetch it.
    return bool(url) and url.startswith("data:image/")


def fill_missing_thumbnails(trace: Trace, video_path: Path | None = None) -> tuple[Trace, str | None]:
    """Return a copy of ``trace`` with thumbnails decoded from the video for frames that lack one.

    The second value explains why no thumbnails could be added (no video,
    unreadable video, video tools unavailable), or is None.
    """
    missing = sorted({f.t for f in trace.frames() if f.shown and not _is_inline_image(f.thumb)})
    if not missing:
        return trace, None
    path = Path(video_path) if video_path else Path(trace.video)
    if not path.is_file():
        return trace, f"video {path} not found; frames shown as placeholders"
    try:
        from tools.video import open_video
    except ImportError:
        return trace, "video reading unavailable; frames shown as placeholders"
    try:
        with open_video(path) as video:
            indices = [int(i) for i in video.nearest_indices(missing)]
            decoded = {frame.index: frame for frame in video.read(indices).frames}
    except SleuthError as exc:
        return trace, f"{exc}; frames shown as placeholders"
    # Frames that failed to decode stay placeholders; the rest get thumbnails.
    thumbs = {t: _jpeg_data_url(decoded[i].image) for t, i in zip(missing, indices) if i in decoded}
    copy = trace.model_copy(deep=True)
    for node in copy.nodes:
        for frame in node.frames:
            if frame.shown and not _is_inline_image(frame.thumb) and frame.t in thumbs:
                frame.thumb = thumbs[frame.t]
    return copy, None


def _jpeg_data_url(image: Any) -> str:
    from agent.backends.base import ImagePart

    return ImagePart.from_array(image, max_side=THUMB_MAX_SIDE, quality=75).data_url()


# --------------------------------------------------------------------------- rendering


def _nice_tick_step(span: float, max_ticks: int = 10) -> float:
    for step in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600):
        if span / step <= max_ticks:
            return step
    return math.ceil(span / max_ticks / 3600) * 3600


def timeline_context(trace: Trace) -> dict[str, Any]:
    """Everything the timeline macro needs (shared with the run browser's side-by-side page)."""
    span, known = timeline_span(trace)
    marks = timeline_marks(trace)
    step = _nice_tick_step(span)
    # Short videos get second labels (0.5s, 1s ...), longer ones a clock (1:30).
    label = (lambda t: f"{t:g}s") if span < 60 else format_clock
    ticks = [(round(100 * i * step / span, 4), label(i * step)) for i in range(int(span // step) + 1)]
    cited = trace.answer.evidence if trace.answer else []
    unseen = set(unseen_evidence(trace))
    return {
        "span": span,
        "duration_known": known,
        "marks": marks,
        "sources": SOURCE_ORDER,
        "counts": {s: sum(1 for m in marks if m.source == s) for s in SOURCE_ORDER},
        "ticks": ticks,
        "cited": [
            {"t": c, "pct": max(0.0, min(100.0, 100 * c / span)), "seen": c not in unseen} for c in cited
        ],
    }


@lru_cache(maxsize=1)
def template_env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("eval", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.ChainableUndefined,
        extensions=["jinja2.ext.do"],
    )
    env.filters.update(
        seconds=format_seconds,
        clock=format_clock,
        cost=format_cost,
        thousands=lambda n: f"{n:,}",
        pretty_json=lambda v: json.dumps(v, indent=2, ensure_ascii=False),
    )
    env.globals.update(
        parse_option=parse_option,
        call_signature=call_signature,
        text_repeats_arguments=text_repeats_arguments,
        is_inline_image=_is_inline_image,
    )
    return env


def render_trace_html(
    trace: Trace,
    *,
    back_link: str | None = None,
    back_label: str = "run index",
    note: str | None = None,
) -> str:
    """The trace page as one HTML string (thumbnails are used as found in the trace)."""
    from eval.trace_export import to_dot, to_mermaid

    node_edges: dict[str, list[dict[str, str]]] = {n.id: [] for n in trace.nodes}
    kinds = {n.id: n.kind for n in trace.nodes}
    for edge in trace.edges:
        if edge.kind == "next":
            continue  # the step order already shows it
        if edge.source in node_edges:
            node_edges[edge.source].append(
                {"dir": "out", "kind": edge.kind, "other": edge.target, "other_kind": kinds.get(edge.target, "?")}
            )
        if edge.target in node_edges:
            node_edges[edge.target].append(
                {"dir": "in", "kind": edge.kind, "other": edge.source, "other_kind": kinds.get(edge.source, "?")}
            )
    timeline = timeline_context(trace)
    evidence_by_node: dict[str, list[bool]] = {}
    frame_start: dict[str, int] = {}  # index in trace.frames() of each node's first frame
    for mark in timeline["marks"]:
        frame_start.setdefault(mark.node_id, mark.index)
        evidence_by_node.setdefault(mark.node_id, []).append(mark.evidence)
    verdict_class, verdict_text = verdict(trace)
    return template_env().get_template("trace.html.j2").render(
        trace=trace,
        title=f"{trace.question_id} · sleuth trace",
        tl=timeline,
        steps=step_summaries(trace),
        node_edges=node_edges,
        evidence_by_node=evidence_by_node,
        frame_start=frame_start,
        verdict_class=verdict_class,
        verdict_text=verdict_text,
        back_link=back_link,
        back_label=back_label,
        note=note,
        dot=to_dot(trace),
        mermaid=to_mermaid(trace),
    )


def write_trace_html(
    trace: Trace,
    out: str | Path,
    *,
    video_path: Path | None = None,
    extract_thumbnails: bool = True,
    back_link: str | None = None,
    back_label: str = "run index",
) -> Path:
    """Write the trace page to ``out``; missing thumbnails come from the video when it can be read."""
    note = None
    if extract_thumbnails:
        trace, note = fill_missing_thumbnails(trace, video_path)
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render_trace_html(trace, back_link=back_link, back_label=back_label, note=note), "utf-8")
    except OSError as exc:
        raise SleuthError(f"{out}: cannot write the trace page ({exc.strerror or exc})") from None
    return out


__all__ = [
    "EVIDENCE_TOLERANCE_S",
    "SOURCE_ORDER",
    "StepSummary",
    "TimelineMark",
    "call_signature",
    "evidence_flags",
    "fill_missing_thumbnails",
    "format_clock",
    "format_cost",
    "format_seconds",
    "parse_option",
    "render_trace_html",
    "step_summaries",
    "timeline_context",
    "timeline_marks",
    "timeline_span",
    "unseen_evidence",
    "verdict",
    "write_trace_html",
]
