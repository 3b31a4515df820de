"""The drawn reasoning graph in a real headless chromium: its boxes, curves and frames are the trace's.

Needs Debian's chromium and Playwright, as ``test_trace_view_chromium``; skipped with the reason otherwise.
"""

from __future__ import annotations

import pytest

from agent.trace import Trace
from eval.views.html import write_trace_html
from tests.trace_samples import PageWatch, browser_fixture, build_trace, build_verdict_trace, check_graph

pytestmark = pytest.mark.slow  # a real browser

browser = browser_fixture()

def _open(browser, trace: Trace, path):
    write_trace_html(trace, path, extract_thumbnails=False)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    watch = PageWatch(page)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, watch


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
