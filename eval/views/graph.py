"""The reasoning graph laid out for drawing: boxes per step, curves per edge, frames on a time axis.

``graph_layout(trace)`` places every node of a trace in a column per planning
step (in step order, top to bottom within a step), every edge as a curve
between boxes, and every frame the run touched as a thumbnail (or, for a
search hit that was only listed, a hollow tick) on a time axis under the
columns. Nodes that rest on frames (the answer's cited moments, each option
verdict's times) get a ``cites`` link down to the frame nearest each moment,
or to the bare axis when no frame was seen there. The trace page turns this
into inline SVG; the coordinates are computed here so the page needs no
layout script.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.trace import Node, Trace
from eval.views.analysis import (
    EVIDENCE_TOLERANCE_S,
    call_signature,
    format_seconds,
    shorten,
    timeline_marks,
    timeline_span,
)

COL_W = 184  # one planning step
NODE_W = 164
NODE_H = 46
NODE_GAP = 12
PAD = 14
HEAD_H = 22  # the step titles above the columns
AXIS_GAP = 56  # between the lowest box and the first frame lane
LANE_H = 30
LANE_LABEL_W = 72  # the lanes' names sit left of the axis, clear of thumbnails at 0 s
THUMB_W, THUMB_H = 40, 23
MIN_AXIS_W = 720
TITLE_CHARS = 26
DETAIL_CHARS = 28

KIND_TITLES = {
    "question": "Question", "overview": "Overview", "captions": "Captions", "thought": "Thought",
    "tool_call": "Tool call", "observation": "Observation", "judgement": "Judgement", "answer": "Answer",
}


@dataclass(frozen=True)
class GraphNode:
    id: str
    kind: str
    step: int
    x: float
    y: float
    title: str
    detail: str
    error: bool
    forced: bool  # the answer a budget forced
    verdicts: int  # option verdicts recorded at this node

    @property
    def cx(self) -> float:
        return self.x + NODE_W / 2


@dataclass(frozen=True)
class GraphEdge:
    source: str
    target: str
    kind: str  # next | prompted | evidence | cites
    path: str  # SVG path data
    t: float | None = None  # cites: the moment
    option: str | None = None  # cites from a verdict: its option
    seen: bool = True  # cites: a frame was seen near the moment


@dataclass(frozen=True)
class GraphFrame:
    index: int  # position in trace.frames(), as the page's #frame-N anchors
    node: str
    t: float
    source: str
    shown: bool
    evidence: bool
    x: float  # centre on the axis
    y: float  # top of its lane
    thumb: str | None  # inline image URL, if the trace (or the page maker) has one


@dataclass
class GraphLayout:
    width: float
    height: float
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    frames: list[GraphFrame]
    lanes: list[tuple[str, float]]  # (source, top y)
    steps: list[tuple[int, float]]  # (step, column x)
    axis_x: float
    axis_w: float
    axis_y: float
    ticks: list[tuple[float, str]] = field(default_factory=list)  # (x, label)


def node_title_detail(node: Node, trace: Trace) -> tuple[str, str]:
    """The two lines a box shows: what kind of step, and what it did."""
    title = KIND_TITLES.get(node.kind, node.kind)
    if node.kind == "question":
        detail = trace.question
    elif node.kind == "overview":
        detail = f"{len(node.frames)} frames"
    elif node.kind == "captions":
        cached = sum(c.cached for c in node.captions)
        detail = f"{len(node.captions)} segments" + (f", {cached} cached" if cached else "")
    elif node.kind == "tool_call":
        title, detail = node.tool or title, call_signature(node)
    elif node.kind == "observation":
        shown = sum(f.shown for f in node.frames)
        listed = len(node.frames) - shown
        title = f"→ {node.tool or 'result'}"
        if node.error:
            detail = "error: " + node.error
        elif node.frames:
            detail = f"{shown} shown" + (f", {listed} listed" if listed else "")
        else:
            detail = node.text or "no frames"
    elif node.kind == "judgement":
        detail = f"confidence {node.confidence}/3" if node.confidence is not None else node.text
    elif node.kind == "answer":
        answer = trace.answer
        chosen = (answer.option or "none") if answer else "?"
        title = f"Answer {chosen}" + (" (forced)" if answer and answer.reason == "budget_exhausted" else "")
        detail = "" if answer is None or answer.gold is None else f"gold {answer.gold} " + ("✓" if answer.correct else "✗")
    else:
        detail = node.text
    if node.verdicts:
        marks = {"supported": "✓", "refuted": "✗", "unknown": "?"}
        detail = " ".join(f"{v.option}{marks[v.verdict]}" for v in node.verdicts) + (" · " + detail if detail else "")
    return shorten(title, TITLE_CHARS), shorten(detail or "", DETAIL_CHARS)


def _curve(x1: float, y1: float, x2: float, y2: float) -> str:
    bend = max(30.0, abs(x2 - x1) / 2)
    return f"M{x1:.1f},{y1:.1f} C{x1 + bend:.1f},{y1:.1f} {x2 - bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"


def _edge_path(a: GraphNode, b: GraphNode) -> str:
    """Down a column within a step; right-to-left sides between steps (a backward edge loops above)."""
    if a.step == b.step and abs(a.x - b.x) < 1:
        if b.y > a.y:
            return f"M{a.cx:.1f},{a.y + NODE_H:.1f} L{b.cx:.1f},{b.y:.1f}"
        # upwards in one column: out the right side and back in
        right = a.x + NODE_W
        return f"M{right:.1f},{a.y + NODE_H / 2:.1f} C{right + 30:.1f},{a.y:.1f} {right + 30:.1f},{b.y + NODE_H:.1f} {right:.1f},{b.y + NODE_H / 2:.1f}"
    if b.x > a.x:
        return _curve(a.x + NODE_W, a.y + NODE_H / 2, b.x, b.y + NODE_H / 2)
    # evidence goes back in time: from the box's left side to the earlier box's right side
    x1, y1, x2, y2 = a.x, a.y + NODE_H / 2, b.x + NODE_W, b.y + NODE_H / 2
    bend = max(30.0, (x1 - x2) / 3)
    return f"M{x1:.1f},{y1:.1f} C{x1 - bend:.1f},{y1 + 40:.1f} {x2 + bend:.1f},{y2 + 40:.1f} {x2:.1f},{y2:.1f}"


def _nearest_frame(frames: list[GraphFrame], t: float) -> GraphFrame | None:
    """The frame a cited moment rests on: nearest in time (shown ones first), within the evidence tolerance."""
    close = [f for f in frames if abs(f.t - t) <= EVIDENCE_TOLERANCE_S]
    if not close:
        return None
    return min(close, key=lambda f: (abs(f.t - t), not f.shown, f.index))


def graph_layout(trace: Trace, sources: tuple[str, ...], ticks: list[tuple[float, str]]) -> GraphLayout:
    """Lay out ``trace``; ``sources`` are the frame lanes in order, ``ticks`` (percent, label) the time axis's."""
    steps = sorted({n.step for n in trace.nodes})
    column = {step: i for i, step in enumerate(steps)}
    rows: dict[int, int] = {}
    nodes: list[GraphNode] = []
    for node in trace.nodes:
        row = rows.get(node.step, 0)
        rows[node.step] = row + 1
        title, detail = node_title_detail(node, trace)
        nodes.append(GraphNode(
            id=node.id, kind=node.kind, step=node.step,
            x=PAD + column[node.step] * COL_W, y=PAD + HEAD_H + row * (NODE_H + NODE_GAP),
            title=title, detail=detail, error=bool(node.error),
            forced=node.kind == "answer" and trace.answer is not None and trace.answer.reason == "budget_exhausted",
            verdicts=len(node.verdicts),
        ))
    by_id = {n.id: n for n in nodes}
    boxes_bottom = max((n.y + NODE_H for n in nodes), default=PAD + HEAD_H)

    axis_x = PAD + LANE_LABEL_W
    axis_w = max(MIN_AXIS_W, len(steps) * COL_W - (COL_W - NODE_W) - LANE_LABEL_W)
    lanes_top = boxes_bottom + AXIS_GAP
    lanes = [(source, lanes_top + i * LANE_H) for i, source in enumerate(sources)]
    lane_y = dict(lanes)
    axis_y = lanes_top + len(lanes) * LANE_H
    span, _ = timeline_span(trace)
    frames = [
        GraphFrame(
            index=m.index, node=m.node_id, t=m.t, source=m.source, shown=m.shown, evidence=m.evidence,
            x=axis_x + axis_w * max(0.0, min(1.0, m.t / span)), y=lane_y.get(m.source, lanes_top),
            thumb=f.thumb if f.thumb and f.thumb.startswith("data:image/") else None,
        )
        for m, f in zip(timeline_marks(trace), trace.frames())
    ]

    edges = [
        GraphEdge(e.source, e.target, e.kind, _edge_path(by_id[e.source], by_id[e.target]))
        for e in trace.edges
        if e.source in by_id and e.target in by_id
    ]

    def cite(node: GraphNode, t: float, option: str | None) -> GraphEdge:
        frame = _nearest_frame(frames, t)
        x2 = frame.x if frame else axis_x + axis_w * max(0.0, min(1.0, t / span))
        y2 = frame.y + (LANE_H - THUMB_H) / 2 if frame else axis_y
        x1, y1 = node.cx, node.y + NODE_H
        path = f"M{x1:.1f},{y1:.1f} C{x1:.1f},{y1 + 60:.1f} {x2:.1f},{y2 - 60:.1f} {x2:.1f},{y2:.1f}"
        return GraphEdge(node.id, f"frame-{frame.index}" if frame else "axis", "cites", path, t=t, option=option,
                         seen=frame is not None)

    for node in trace.nodes:
        box = by_id[node.id]
        for v in node.verdicts:
            edges.extend(cite(box, t, v.option) for t in v.times)
        if node.kind == "answer" and trace.answer:
            edges.extend(cite(box, t, None) for t in trace.answer.evidence)

    width = max(axis_x + axis_w + THUMB_W / 2, PAD + len(steps) * COL_W) + PAD  # a thumbnail at the end overhangs
    return GraphLayout(
        width=width, height=axis_y + 24, nodes=nodes, edges=edges, frames=frames, lanes=lanes,
        steps=[(s, PAD + column[s] * COL_W) for s in steps], axis_x=axis_x, axis_w=axis_w, axis_y=axis_y,
        ticks=[(axis_x + axis_w * pct / 100, label) for pct, label in ticks],
    )


def frame_label(frame: GraphFrame) -> str:
    return f"{format_seconds(frame.t)} · {frame.source}" + ("" if frame.shown else " · listed, not shown")


__all__ = ["GraphEdge", "GraphFrame", "GraphLayout", "GraphNode", "frame_label", "graph_layout", "node_title_detail"]
