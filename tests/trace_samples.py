"""Realistic reasoning traces and run directories for viewer tests.

``build_trace`` makes a valid ``Trace`` the way an agent run lays one out:
an overview of uniformly sampled frames, a CLIP search (hits listed as
text), a view of two hits, a resample request the tool rejected, a dense
resample, and an answer citing two moments.
``build_verdict_trace`` adds what newer strategies record (a caption memory,
option verdicts, a confidence judgement, a forced answer).
``write_run_dir`` writes a run directory (config, results, traces) as the
evaluation runner does; ``check_graph`` reads a page's drawn graph back in a
browser and checks it against its trace.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

from PIL import Image, ImageDraw

from agent.trace import Caption, Edge, FinalAnswer, FrameRef, Node, OptionVerdict, TokenUsage, Totals, Trace
from eval.results import CONFIG_FILE, RESULTS_FILE, TRACES_DIR, ResultRow

OPTIONS = [
    "(A) She is checking whether the stove is still on",
    "(B) She is looking for her keys",
    "(C) She hides the letter she found earlier so her brother won't read it",
    "(D) She is cleaning the counter",
    "(E) She is waiting for the kettle",
    "(F) She is reading a recipe",
    "(G) She is answering the phone",
    "(H) She is feeding the cat",
]
QUESTION = "Why does the woman return to the kitchen drawer at the end of the video?"

# Timestamps every sample trace touches, by source (seconds).
# search_frames lists hits as text (shown=False); view_frames and resample_clip show images.
SEARCH_HITS = [(12.0, 0.312), (31.5, 0.298), (44.0, 0.221), (8.0, 0.184)]
VIEW_TIMES = [12.0, 31.5]
RESAMPLE_TIMES = [30.0, 30.5, 31.0, 31.5, 32.0, 32.5]
EVIDENCE = [12.0, 31.5]


def thumb_data_url(t: float, width: int = 96, height: int = 54) -> str:
    """A small JPEG whose colour and caption depend on ``t``, like a real frame thumbnail."""
    hue = int(t * 37) % 255
    img = Image.new("RGB", (width, height), (hue, 120, 255 - hue))
    draw = ImageDraw.Draw(img)
    draw.rectangle([4, height - 18, width - 4, height - 4], fill=(20, 20, 20))
    draw.text((8, height - 17), f"{t:.1f}s", fill=(255, 255, 255))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=70)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


SAMPLE_FPS = 25.0


def video_meta(path: str, duration_s: float) -> dict:
    """What a trace records of its video (``tools.video.VideoMeta``), as the agent writes it."""
    return {"path": path, "duration_s": duration_s, "fps": SAMPLE_FPS, "n_frames": int(duration_s * SAMPLE_FPS),
            "width": 640, "height": 360, "reader": "decord"}


def overview_times(duration_s: float, n: int = 8) -> list[float]:
    return [round((i + 0.5) * duration_s / n, 2) for i in range(n)]


def _chain():
    """(nodes, edges, add): ``add`` appends a node and the ``next`` edge to it from the previous one."""
    nodes: list[Node] = []
    edges: list[Edge] = []

    def add(kind: str, step: int, **fields) -> Node:
        node = Node(id=f"n{len(nodes)}", kind=kind, step=step, **fields)
        if nodes:
            edges.append(Edge(source=nodes[-1].id, target=node.id, kind="next"))
        nodes.append(node)
        return node

    return nodes, edges, add


def build_trace(
    question_id: str = "mmrv-0042",
    *,
    duration_s: float | None = 60.0,
    option: str | None = "C",
    gold: str | None = "C",
    video: str = "videos/kitchen_drawer.mp4",
    with_thumbs: bool = True,
    priced: bool = True,
    labels: list[str] | None = None,
) -> Trace:
    """A complete agent trace: overview, search, view, a failed and a good resample, an answer."""
    span = duration_s or 60.0
    thumb = thumb_data_url if with_thumbs else (lambda t: None)
    nodes, edges, add = _chain()

    def call_cost(prompt: int, completion: int) -> float | None:
        return round(prompt * 2.5e-6 + completion * 1e-5, 6) if priced else None

    add("question", 0, text=QUESTION + "\n" + "\n".join(OPTIONS))
    add(
        "overview",
        0,
        text=f"8 frames sampled uniformly over {span:.0f} s",
        frames=[FrameRef(t=t, source="overview", thumb=thumb(t)) for t in overview_times(span)],
    )

    add(
        "thought",
        1,
        text="The overview shows the woman near the drawer twice. I should find the moment she first opens it.",
        tokens=TokenUsage(prompt=2210, completion=64),
        latency_s=1.84,
        cost_usd=call_cost(2210, 64),
    )
    add(
        "tool_call", 1, tool="search_frames", arguments={"query": "woman opens kitchen drawer holding a letter", "k": 4}
    )
    search_obs = add(
        "observation",
        1,
        tool="search_frames",
        text=json.dumps([{"t": t, "score": s} for t, s in SEARCH_HITS]),
        frames=[FrameRef(t=t, source="search", score=s, shown=False) for t, s in SEARCH_HITS],
        latency_s=0.21,
    )

    add(
        "thought",
        2,
        text="Both hits look relevant; view them at full resolution to read what she is holding.",
        tokens=TokenUsage(prompt=3105, completion=41),
        latency_s=1.22,
        cost_usd=call_cost(3105, 41),
    )
    view_call = add("tool_call", 2, tool="view_frames", arguments={"timestamps": VIEW_TIMES})
    edges.append(Edge(source=search_obs.id, target=view_call.id, kind="prompted"))
    view_obs = add(
        "observation",
        2,
        tool="view_frames",
        text="showing 2 frames (t=12.00s, t=31.50s) in the next message; 22 of 32 frames left",
        frames=[FrameRef(t=t, source="view", thumb=thumb(t)) for t in VIEW_TIMES],
        latency_s=0.09,
    )

    add(
        "tool_call",
        3,
        tool="resample_clip",
        arguments={"start": span + 35.0, "end": span + 40.0, "n": 8},
        tokens=TokenUsage(prompt=3790, completion=28),
        latency_s=0.97,
        cost_usd=call_cost(3790, 28),
    )
    add(
        "observation",
        3,
        tool="resample_clip",
        text="",
        error=f"empty window: start {span:.2f}s is not before end {span:.2f}s; "
        f"start {span + 35.0:g}s is outside the video (0 to {span:.2f}s); clamped to {span:.2f}s",
    )

    resample_call = add(
        "tool_call",
        4,
        tool="resample_clip",
        arguments={"start": 30.0, "end": 32.5, "n": 6},
        tokens=TokenUsage(prompt=3902, completion=31),
        latency_s=1.05,
        cost_usd=call_cost(3902, 31),
    )
    edges.append(Edge(source=view_obs.id, target=resample_call.id, kind="prompted"))
    resample_obs = add(
        "observation",
        4,
        tool="resample_clip",
        text="showing 6 frames (t=30.00s … t=32.50s) in the next message; 16 of 32 frames left",
        frames=[FrameRef(t=t, source="resample", thumb=thumb(t)) for t in RESAMPLE_TIMES],
        latency_s=0.33,
    )

    answer_node = add(
        "answer",
        5,
        text="At 12.0s she reads a letter and looks at the door; at 31.5s she slides it under the cutlery tray.",
        tokens=TokenUsage(prompt=4820, completion=96),
        latency_s=2.41,
        cost_usd=call_cost(4820, 96),
    )
    edges.append(Edge(source=answer_node.id, target=view_obs.id, kind="evidence"))
    edges.append(Edge(source=answer_node.id, target=resample_obs.id, kind="evidence"))

    model_nodes = [n for n in nodes if n.tokens is not None]
    prompt = sum(n.tokens.prompt for n in model_nodes)
    completion = sum(n.tokens.completion for n in model_nodes)
    costs = [n.cost_usd for n in model_nodes]
    answer = FinalAnswer(
        option=option,
        rationale=answer_node.text,
        evidence=list(EVIDENCE),
        reason="answered" if option else "budget_exhausted",
        gold=gold,
        correct=None if gold is None else option == gold,
    )
    return Trace(
        question_id=question_id,
        video=video,
        duration_s=duration_s,
        question=QUESTION,
        options=list(OPTIONS),
        settings={"max_steps": 8, "max_frames": 32, "perception": "planner-sees-frames", "overview_frames": 8,
                  "video": video_meta(video, span)},
        models={"planner": "gpt-4o-mini", "clip": "ViT-B-32/laion2b_s34b_b79k"},
        prompts={"planner_system": "3f5a9c" * 10 + "abcd"},
        nodes=nodes,
        edges=edges,
        answer=answer,
        totals=Totals(
            steps=5,
            model_calls=len(model_nodes),
            frames_shown=sum(1 for n in nodes for f in n.frames if f.shown),
            tokens=TokenUsage(prompt=prompt, completion=completion),
            cost_usd=round(sum(costs), 6) if priced else None,
            latency_s=round(sum(n.latency_s or 0.0 for n in nodes), 3),
        ),
        labels=labels or [],
    )


def build_verdict_trace(question_id: str = "mmrv-0077", *, duration_s: float = 60.0, forced: bool = True,
                        video: str = "videos/kitchen_drawer.mp4") -> Trace:
    """A trace with what newer strategies record: a caption memory (its frames in the caption lane),
    option verdicts resting on frames (one on a moment never seen), a confidence judgement, and an
    answer a budget forced, whose standing verdict table and confidence the answer carries."""
    nodes, edges, add = _chain()

    add("question", 0, text=QUESTION)
    captions = [
        Caption(start=0.0, end=20.0, text="A woman enters a kitchen and opens a drawer.", frames=2, cached=True),
        Caption(start=20.0, end=40.0, text="She reads a letter, then slides it under a tray.", frames=2),
        Caption(start=40.0, end=60.0, text="A boy walks in; she closes the drawer quickly.", frames=2),
    ]
    memory = add("captions", 0, text="caption memory of 3 segments", captions=captions,
                 frames=[FrameRef(t=t, source="caption", thumb=thumb_data_url(t)) for t in (5.0, 15.0, 25.0, 35.0, 45.0, 55.0)])
    add("thought", 1, text="The captions mention a letter; check the moment she hides it.",
        tokens=TokenUsage(prompt=1500, completion=40), latency_s=1.1, cost_usd=0.004)
    add("tool_call", 1, tool="search_frames", arguments={"query": "woman hides a letter in a drawer", "k": 3})
    search = add("observation", 1, tool="search_frames", text="3 hits",
                 frames=[FrameRef(t=t, source="search", score=s, shown=False) for t, s in [(31.0, 0.33), (12.0, 0.29), (50.0, 0.2)]])
    call = add("tool_call", 2, tool="view_frames", arguments={"timestamps": [31.0, 50.0]},
               tokens=TokenUsage(prompt=2100, completion=30), latency_s=0.9, cost_usd=0.005)
    edges.append(Edge(source=search.id, target=call.id, kind="prompted"))
    view = add("observation", 2, tool="view_frames", text="showing 2 frames",
               frames=[FrameRef(t=t, source="view", thumb=thumb_data_url(t)) for t in (31.0, 50.0)])
    verdicts = [
        OptionVerdict(option="C", verdict="supported", times=[31.0, 35.0], note="she slides the letter under the tray"),
        OptionVerdict(option="B", verdict="refuted", times=[50.0], note="no keys anywhere"),
        OptionVerdict(option="A", verdict="unknown", times=[58.9], note="the stove is never in view"),
    ]
    judge = add("judgement", 3, text="C fits what was seen, but the boy's reaction is unclear.", verdicts=verdicts,
                confidence=2, tokens=TokenUsage(prompt=2600, completion=80), latency_s=1.6, cost_usd=0.007)
    for target in (view, memory):
        edges.append(Edge(source=judge.id, target=target.id, kind="evidence"))
    answer_node = add("answer", 4, text="She hides the letter from her brother.",
                      tokens=TokenUsage(prompt=2900, completion=50), latency_s=1.3, cost_usd=0.008)
    edges.append(Edge(source=answer_node.id, target=view.id, kind="evidence"))
    answer = FinalAnswer(option="C", rationale="She hides the letter from her brother.", evidence=[31.0],
                         reason="budget_exhausted" if forced else "answered", gold="C", correct=True,
                         verdicts=verdicts, confidence=2)
    model_nodes = [n for n in nodes if n.tokens is not None]
    return Trace(
        question_id=question_id, video=video, duration_s=duration_s, question=QUESTION, options=list(OPTIONS),
        settings={"max_steps": 4, "max_frames": 16, "video": video_meta(video, duration_s)}, models={"planner": "gpt-4o-mini"}, nodes=nodes, edges=edges,
        answer=answer,
        totals=Totals(steps=4, model_calls=len(model_nodes),
                      frames_shown=sum(f.shown for n in nodes for f in n.frames), pixels_shown=8 * 160 * 90,
                      tokens=TokenUsage(prompt=sum(n.tokens.prompt for n in model_nodes),
                                        completion=sum(n.tokens.completion for n in model_nodes)),
                      cost_usd=round(sum(n.cost_usd for n in model_nodes), 6), latency_s=4.9),
    )


def result_row(
    question_id: str,
    *,
    method: str,
    prediction: str | None,
    gold: str = "C",
    category: str = "implicit",
    video_type: str = "Film",
    frames: int = 18,
    cost_usd: float | None = 0.0042,
    trace: str | None = None,
    status: str = "ok",
    error: str | None = None,
) -> ResultRow:
    return ResultRow(
        question_id=question_id,
        video=f"videos/{question_id}.mp4",
        video_type=video_type,
        l2="Causal Reasoning",
        l3="Implicit Intent",
        category=category,
        question=QUESTION,
        options=list(OPTIONS),
        gold=gold,
        method=method,
        model="gpt-4o-mini",
        status=status,
        error=error,
        prediction=prediction,
        correct=prediction is not None and prediction == gold,
        extraction="tool" if method == "agent" else "brackets",
        raw_response=f"The answer is [[{prediction}]]" if prediction else "",
        frames=frames,
        prompt_tokens=17827,
        completion_tokens=260,
        cost_usd=cost_usd,
        latency_s=7.9,
        trace=trace,
    )


def write_run_dir(
    root: Path,
    name: str,
    *,
    method: str,
    rows: list[ResultRow],
    traces: dict[str, Trace] | None = None,
    extra_lines: list[str] | None = None,
) -> Path:
    """Write ``root/name`` with config.json, results.jsonl (plus any raw extra lines) and traces/."""
    run = root / name
    (run / TRACES_DIR).mkdir(parents=True, exist_ok=True)
    (run / CONFIG_FILE).write_text(json.dumps({"method": method, "model": "gpt-4o-mini"}), encoding="utf-8")
    lines = [row.model_dump_json() for row in rows] + list(extra_lines or [])
    (run / RESULTS_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    for qid, trace in (traces or {}).items():
        trace.save(run / TRACES_DIR / f"{qid}.json")
    return run


QIDS = ["q1", "q2", "q10", "weird id/with:chars"]


def write_sample_runs(root: Path) -> tuple[Path, Path]:
    """An agent run and a uniform baseline sharing three questions.

    The agent run has a trace per question, a re-run question whose later row
    (now correct) supersedes the first, an error row without a trace, and two
    malformed lines (lines 7 and 8 of its results.jsonl).
    """
    from eval.views.browser import safe_name

    agent_rows, traces = [], {}
    for i, qid in enumerate(QIDS):
        prediction = "C" if i % 2 == 0 else "B"
        name = safe_name(qid)
        agent_rows.append(
            result_row(
                qid, method="agent", prediction=prediction, frames=10 + i, cost_usd=0.01 * (i + 1),
                trace=f"traces/{name}.json", category="implicit" if i < 2 else "explicit",
                video_type="Animation" if i == 1 else "Film",
            )
        )
        traces[name] = build_trace(qid, option=prediction)
    agent_rows.append(
        result_row("q2", method="agent", prediction="C", frames=14, trace="traces/q2.json", video_type="Animation")
    )
    agent_rows.append(
        result_row("q7", method="agent", prediction=None, status="error", error="video videos/q7.mp4: not a video file",
                   cost_usd=None, frames=0)
    )
    agent = write_run_dir(
        root, "agent", method="agent", rows=agent_rows, traces=traces,
        extra_lines=["{truncated", json.dumps({"video": "x.mp4", "method": "agent"})],
    )
    uniform_rows = [
        result_row(q, method="uniform", prediction="D" if q == "q1" else "C", frames=32, cost_usd=0.02)
        for q in QIDS[:3]
    ]
    uniform = write_run_dir(root, "uniform", method="uniform", rows=uniform_rows)
    return agent, uniform


# --------------------------------------------------------------------------- a real headless browser

CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def chromium_path() -> str | None:
    """Debian's chromium (``apt-get install -y chromium``), or None."""
    import os
    import shutil

    for candidate in (os.environ.get("SLEUTH_CHROMIUM"), *CHROMIUM_PATHS, shutil.which("chromium")):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def screenshot_dir(tmp_path: Path) -> Path:
    """``$SLEUTH_SCREENSHOT_DIR`` when set (so a person can look at the pages), else the test's tmp dir."""
    import os

    folder = Path(os.environ.get("SLEUTH_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def browser_fixture():
    """A module-scoped pytest fixture yielding a Playwright chromium browser (skips without chromium)."""
    import pytest

    @pytest.fixture(scope="module")
    def browser():
        executable = chromium_path()
        if executable is None:
            pytest.skip("no chromium binary found (apt-get install -y chromium, or set SLEUTH_CHROMIUM)")
        sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
        with sync_api.sync_playwright() as playwright:
            launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            try:
                yield launched
            finally:
                launched.close()

    return browser


class PageWatch:
    """Console errors, page errors and requests that left the local files, for one page."""

    def __init__(self, page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.requests: list[str] = []
        page.on("console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("request", lambda req: self.requests.append(req.url))
        page.set_default_timeout(5000)  # local files: anything slower is a failure

    def external_requests(self) -> list[str]:
        return [u for u in self.requests if not u.startswith(("file://", "data:", "about:"))]


# --------------------------------------------------------------------------- the drawn graph, read back from a page

# Every box, curve and frame of the SVG as laid out, with the ends of each curve in page coordinates.
GRAPH_JS = """() => {
  const box = el => { const r = el.getBoundingClientRect(); return {x: r.left, y: r.top, w: r.width, h: r.height}; };
  const svg = document.getElementById('graph-svg');
  const m = svg.getScreenCTM();
  const at = (p, len) => { const q = p.getPointAtLength(len); return {x: q.x * m.a + m.e, y: q.y * m.d + m.f}; };
  return {
    nodes: Array.from(svg.querySelectorAll('.gnode')).map(n => ({id: n.dataset.node, kind: n.dataset.kind,
      step: +n.dataset.step, box: box(n.querySelector('rect')), text: n.textContent})),
    edges: Array.from(svg.querySelectorAll('.gedge[data-kind]')).map(e => ({source: e.dataset.source,
      target: e.dataset.target, kind: e.dataset.kind, t: e.dataset.t ? +e.dataset.t : null,
      option: e.dataset.option || null, start: at(e, 0), end: at(e, e.getTotalLength())})),
    frames: Array.from(svg.querySelectorAll('.gframe')).map(f => ({index: +f.dataset.index, node: f.dataset.node,
      t: +f.dataset.t, source: f.dataset.source, shown: f.dataset.shown === 'true', box: box(f),
      image: !!f.querySelector('image')})),
    axis: box(svg.querySelector('.gaxis')),
  };
}"""


def _inside(point: dict, box: dict, slack: float = 2.0) -> bool:
    return (box["x"] - slack <= point["x"] <= box["x"] + box["w"] + slack
            and box["y"] - slack <= point["y"] <= box["y"] + box["h"] + slack)


def check_graph(page, trace: Trace) -> dict:
    """The SVG holds one box per node, in step columns, one curve per edge between the right boxes, one mark
    per frame at its moment, and a link from each cited moment (answer, verdicts) to the frame it rests on."""
    import pytest

    from eval.views.analysis import EVIDENCE_TOLERANCE_S

    graph = page.evaluate(GRAPH_JS)
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert sorted(nodes) == sorted(n.id for n in trace.nodes)
    for node in trace.nodes:
        drawn = nodes[node.id]
        assert drawn["kind"] == node.kind and drawn["step"] == node.step
        assert drawn["box"]["w"] > 100 and drawn["box"]["h"] > 30
    # steps run left to right, nodes of a step top to bottom in trace order, no two boxes overlap
    for a, b in zip(trace.nodes, trace.nodes[1:]):
        ba, bb = nodes[a.id]["box"], nodes[b.id]["box"]
        if a.step == b.step:
            assert bb["y"] >= ba["y"] + ba["h"] and abs(ba["x"] - bb["x"]) < 1
        else:
            assert bb["x"] >= ba["x"] + ba["w"]

    drawn_edges = [e for e in graph["edges"] if e["kind"] != "cites"]
    assert sorted((e["source"], e["target"], e["kind"]) for e in drawn_edges) == sorted(
        (e.source, e.target, e.kind) for e in trace.edges
    )
    for e in drawn_edges:  # each curve runs from its source box to its target box
        assert _inside(e["start"], nodes[e["source"]]["box"]), e
        assert _inside(e["end"], nodes[e["target"]]["box"]), e

    frames = {f["index"]: f for f in graph["frames"]}
    assert len(frames) == len(trace.frames())
    axis = graph["axis"]
    for i, (frame, owner) in enumerate(((f, n.id) for n in trace.nodes for f in n.frames)):
        drawn = frames[i]
        assert (drawn["t"], drawn["source"], drawn["shown"], drawn["node"]) == (frame.t, frame.source, frame.shown, owner)
        centre = drawn["box"]["x"] + drawn["box"]["w"] / 2
        assert centre == pytest.approx(axis["x"] + axis["w"] * frame.t / trace.duration_s, abs=1.5)
        assert drawn["image"] == bool(frame.thumb)

    # cited moments: the answer's evidence and every verdict's times, each to the frame nearest it (or the bare axis)
    cites = [e for e in graph["edges"] if e["kind"] == "cites"]
    wanted = [(n.id, t, v.option) for n in trace.nodes for v in n.verdicts for t in v.times]
    answer_id = next(n.id for n in trace.nodes if n.kind == "answer")
    wanted += [(answer_id, t, None) for t in trace.answer.evidence]
    assert sorted((e["source"], e["t"], e["option"] or "") for e in cites) == sorted(
        (s, t, o or "") for s, t, o in wanted
    )
    times = [f.t for f in trace.frames()]
    for e in cites:
        assert _inside(e["start"], nodes[e["source"]]["box"]), e
        nearest = min(abs(t - e["t"]) for t in times)
        if nearest > EVIDENCE_TOLERANCE_S:
            assert e["target"] == "axis"
            assert e["end"]["y"] == pytest.approx(axis["y"], abs=2)
        else:
            target = frames[int(e["target"].removeprefix("frame-"))]
            assert abs(target["t"] - e["t"]) == pytest.approx(nearest)
            assert _inside(e["end"], target["box"], slack=4), e
    return graph
