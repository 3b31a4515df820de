"""The drawn reasoning graph in a real headless chromium: its boxes, curves and frames are the trace's.

Needs Debian's chromium and Playwright, as ``test_trace_view_chromium``; skipped with the reason otherwise.
"""

from __future__ import annotations

import pytest

from agent.trace import Trace
from eval.views.analysis import EVIDENCE_TOLERANCE_S
from eval.views.html import write_trace_html
from tests.trace_samples import PageWatch, browser_fixture, build_trace, build_verdict_trace

pytestmark = pytest.mark.slow  # a real browser

browser = browser_fixture()

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


def _open(browser, trace: Trace, path):
    write_trace_html(trace, path, extract_thumbnails=False)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    watch = PageWatch(page)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, watch


def check_graph(page, trace: Trace) -> dict:
    """The SVG holds one box per node, in step columns, one curve per edge between the right boxes, one mark
    per frame at its moment, and a link from each cited moment (answer, verdicts) to the frame it rests on."""
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


def test_graph_of_a_planner_trace(browser, tmp_path):
    trace = build_trace()
    page, watch = _open(browser, trace, tmp_path / "trace.html")
    check_graph(page, trace)

    # hovering the answer lights its edges and the boxes they reach, and dims the rest
    answer = next(n for n in trace.nodes if n.kind == "answer")
    page.locator(f"#gnode-{answer.id}").hover()
    lit = page.evaluate("() => Array.from(document.querySelectorAll('.gedge.on')).map(e => [e.dataset.source, e.dataset.target])")
    touching = {(e.source, e.target) for e in trace.edges if answer.id in (e.source, e.target)}
    assert touching and touching <= {tuple(x) for x in lit}
    assert all(answer.id in pair or pair[1].startswith("frame-") for pair in lit)
    assert page.evaluate("() => document.getElementById('graph-svg').classList.contains('hl')")
    opacity = page.evaluate("() => getComputedStyle(document.querySelector('.gedge[data-kind=next]:not(.on)')).opacity")
    assert float(opacity) < 0.5
    page.mouse.move(5, 5)
    assert not page.evaluate("() => document.getElementById('graph-svg').classList.contains('hl')")

    # clicking a box scrolls to its step
    search = next(n for n in trace.nodes if n.kind == "observation" and n.tool == "search_frames")
    page.locator(f"#gnode-{search.id}").click()
    assert page.evaluate("() => location.hash") == f"#node-{search.id}"
    page.wait_for_function(
        "id => { const r = document.getElementById(id).getBoundingClientRect(); return r.top >= 0 && r.top < innerHeight; }",
        arg=f"node-{search.id}", timeout=5000,
    )
    assert watch.errors == [] and watch.external_requests() == []
    page.close()


def test_graph_and_steps_of_a_trace_with_verdicts_captions_and_a_forced_answer(browser, tmp_path):
    trace = build_verdict_trace()
    page, watch = _open(browser, trace, tmp_path / "verdicts.html")
    graph = check_graph(page, trace)
    assert any(e["target"] == "axis" for e in graph["edges"])  # the verdict resting on a moment never seen
    assert "(forced)" in next(n["text"] for n in graph["nodes"] if n["kind"] == "answer")
    assert any(f["source"] == "caption" for f in graph["frames"])

    judge = next(n for n in trace.nodes if n.kind == "judgement")
    rows = page.evaluate(
        "id => Array.from(document.querySelectorAll('#node-' + id + ' table.verdicts tbody tr'))"
        ".map(r => [r.dataset.option, r.dataset.verdict, r.cells[2].textContent.trim()])", judge.id,
    )
    assert [(o, v) for o, v, _ in rows] == [(v.option, v.verdict) for v in judge.verdicts]
    assert all(all(f"{t:.1f}s" in cell for t in v.times) for (_, _, cell), v in zip(rows, judge.verdicts))
    assert page.locator(f"#node-{judge.id} [data-confidence]").get_attribute("data-confidence") == "2"
    final = page.evaluate("() => Array.from(document.querySelectorAll('#final-verdicts tbody tr')).map(r => r.dataset.option)")
    assert final == [v.option for v in trace.answer.verdicts]

    memory = next(n for n in trace.nodes if n.kind == "captions")
    spans = page.evaluate(
        "id => Array.from(document.querySelectorAll('#node-' + id + ' ol.captions li'))"
        ".map(li => [+li.dataset.start, +li.dataset.end, li.dataset.cached === 'true', li.textContent])", memory.id,
    )
    assert [(s, e, c) for s, e, c, _ in spans] == [(c.start, c.end, c.cached) for c in memory.captions]
    assert all(c.text in text for (_, _, _, text), c in zip(spans, memory.captions))

    # the forced answer shows in the steps, not only in the summary card
    answer = next(n for n in trace.nodes if n.kind == "answer")
    assert page.locator(f"#node-{answer.id} .forced-note").is_visible()
    assert page.locator(".forced-note").count() == 1
    assert watch.errors == [] and watch.external_requests() == []
    page.close()

    # an answer given in time has no such note
    page, watch = _open(browser, build_verdict_trace(forced=False), tmp_path / "answered.html")
    assert page.locator(".forced-note").count() == 0
    assert "(forced)" not in page.locator(f"#gnode-{answer.id}").text_content()
    page.close()


def test_search_hits_show_thumbnails_from_the_video_marked_not_shown(browser, tmp_path, synthetic_video):
    """What search offered: each listed hit gets a thumbnail decoded from the video when the page is made,
    in its step and on the graph's axis, marked as not shown to the model; without the video, timestamps."""
    trace = build_trace(duration_s=4.0, with_thumbs=False)
    for node in trace.nodes:  # the sample's moments, squeezed into the 4 s synthetic video
        for frame in node.frames:
            frame.t = round(frame.t / 15.0, 2)
    hits = [f for f in trace.frames() if not f.shown]
    path = write_trace_html(trace, tmp_path / "hits.html", video_path=synthetic_video)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    watch = PageWatch(page)
    page.goto(path.as_uri())
    figures = page.evaluate(
        "() => Array.from(document.querySelectorAll('.frame.hit')).map(f => ({t: +f.dataset.t,"
        " ok: f.querySelector('img').complete && f.querySelector('img').naturalWidth > 0, caption: f.textContent}))"
    )
    assert sorted(f["t"] for f in figures) == sorted(f.t for f in hits)
    assert all(f["ok"] and "not shown" in f["caption"] for f in figures)
    assert page.locator(".not-shown").first.is_visible()
    assert "not shown to the model" in page.locator(".not-shown").first.inner_text()
    # the graph's axis pictures them too, dashed apart from the frames the model saw
    assert page.locator(".gframe.listed image").count() == len(hits)
    dash = page.evaluate("() => getComputedStyle(document.querySelector('.gframe.listed .gthumb-frame')).strokeDasharray")
    assert dash not in ("", "none")
    assert watch.errors == [] and watch.external_requests() == []
    page.close()

    path = write_trace_html(trace, tmp_path / "no-video.html", video_path=tmp_path / "missing.mp4")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    watch = PageWatch(page)
    page.goto(path.as_uri())
    assert page.locator(".frame.hit").count() == 0
    assert page.locator(".listed .chip").count() == len(hits)
    assert "search hits as timestamps" in page.locator(".note").inner_text()
    assert watch.errors == [] and watch.external_requests() == []
    page.close()
