"""One reasoning trace as a self-contained HTML page.

The page shows the question and options with the chosen and gold answers, a
timeline of the whole video with a mark per frame the agent saw (coloured by
source, evidence highlighted), the reasoning graph step by step, and tokens,
latency and cost per step and in total. Everything is inline (CSS, images as
data URLs, no scripts from elsewhere), so the file opens anywhere offline.

What the page shows about the trace (evidence, timeline marks, step
summaries, the outcome) comes from ``eval.views.analysis``, which the terminal
tree, the exports and the run browser share, so all views agree on what counts
as evidence.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from agent.trace import Trace
from eval.views.analysis import (
    axis_ticks,
    call_signature,
    format_clock,
    format_cost,
    format_seconds,
    frame_sources,
    node_edges,
    node_frames,
    parse_option,
    step_summaries,
    text_repeats_arguments,
    timeline_marks,
    timeline_span,
    unseen_evidence,
    verdict,
)
from eval.views.export import to_dot, to_mermaid
from eval.views import graph as graph_module
from eval.views.graph import frame_label, graph_layout
from eval.views.labels import trace_labels
from sleuth.errors import SleuthError

THUMB_MAX_SIDE = 160


# --------------------------------------------------------------------------- thumbnails


def _is_inline_image(url: str | None) -> bool:
    # Only embedded images: a URL to elsewhere would make the page fetch it.
    return bool(url) and url.startswith("data:image/")


def fill_missing_thumbnails(trace: Trace, video_path: Path | None = None) -> tuple[Trace, str | None]:
    """Return a copy of ``trace`` with thumbnails decoded from the video for frames that lack one.

    Search hits that were only listed to the model get one too, so a reader
    sees what the search offered (the page marks them as not shown to the
    model). The second value explains why no thumbnails could be added (no
    video, unreadable video, video tools unavailable), or is None.
    """
    missing = sorted({f.t for f in trace.frames() if not _is_inline_image(f.thumb)})
    if not missing:
        return trace, None
    path = Path(video_path) if video_path else Path(trace.video)
    placeholders = "frames shown as placeholders, search hits as timestamps"
    if not path.is_file():
        return trace, f"video {path} not found; {placeholders}"
    try:
        from tools.video import open_video
    except ImportError:
        return trace, f"video reading unavailable; {placeholders}"
    try:
        with open_video(path) as video:
            indices = [int(i) for i in video.nearest_indices(missing)]
            decoded = {frame.index: frame for frame in video.read(indices).frames}
    except SleuthError as exc:
        return trace, f"{exc}; {placeholders}"
    # Frames that failed to decode stay placeholders; the rest get thumbnails.
    thumbs = {t: _jpeg_data_url(decoded[i].image) for t, i in zip(missing, indices) if i in decoded}
    copy = trace.model_copy(deep=True)
    for node in copy.nodes:
        for frame in node.frames:
            if not _is_inline_image(frame.thumb) and frame.t in thumbs:
                frame.thumb = thumbs[frame.t]
    return copy, None


def _jpeg_data_url(image: Any) -> str:
    from agent.backends.base import ImagePart

    return ImagePart.from_array(image, max_side=THUMB_MAX_SIDE, quality=75).data_url()


# --------------------------------------------------------------------------- rendering


def timeline_context(trace: Trace) -> dict[str, Any]:
    """Everything the timeline macro needs (shared with the run browser's side-by-side page)."""
    span, known = timeline_span(trace)
    marks = timeline_marks(trace)
    sources = frame_sources(trace)
    ticks = axis_ticks(span)
    cited = trace.answer.evidence if trace.answer else []
    unseen = set(unseen_evidence(trace))
    return {
        "span": span,
        "duration_known": known,
        "marks": marks,
        "sources": sources,
        "counts": {s: sum(1 for m in marks if m.source == s) for s in sources},
        "ticks": ticks,
        "cited": [
            {"t": c, "pct": max(0.0, min(100.0, 100 * c / span)), "seen": c not in unseen} for c in cited
        ],
    }


@lru_cache(maxsize=1)
def template_env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("eval.views", "templates"),
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
    env.tests["inline_image"] = _is_inline_image
    env.globals.update(
        parse_option=parse_option,
        call_signature=call_signature,
        text_repeats_arguments=text_repeats_arguments,
        is_inline_image=_is_inline_image,
        frame_label=frame_label,
        gsize={name.lower(): getattr(graph_module, name) for name in ("NODE_W", "NODE_H", "THUMB_W", "THUMB_H", "LANE_H", "PAD")},
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
    timeline = timeline_context(trace)
    frame_start, evidence_by_node = node_frames(trace)
    verdict_class, verdict_text = verdict(trace)
    return template_env().get_template("trace.html.j2").render(
        trace=trace,
        title=f"{trace.question_id} · sleuth trace",
        tl=timeline,
        labels=trace_labels(trace),
        # cited moments no model was shown: as recorded by the run, and as the frames in the trace say
        unseen=set(unseen_evidence(trace)) | set(trace.answer.unseen_evidence if trace.answer else []),
        graph=graph_layout(trace, timeline["sources"], timeline["ticks"]),
        steps=step_summaries(trace),
        node_edges=node_edges(trace),
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
    "THUMB_MAX_SIDE",
    "fill_missing_thumbnails",
    "render_trace_html",
    "template_env",
    "timeline_context",
    "write_trace_html",
]
