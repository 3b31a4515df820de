"""Trace pages in a real headless chromium: no console errors, nothing fetched, timeline marks where the frames are.

Needs Debian's chromium (``apt-get install -y chromium``) and Playwright for
Python; skipped with the reason when chromium is missing. Screenshots go to
``$SLEUTH_SCREENSHOT_DIR`` when set, else to the test's tmp dir.
"""

from __future__ import annotations

import pytest

from agent.config import AgentConfig
from eval.views.analysis import evidence_flags
from eval.views.html import write_trace_html
from tests.fake_openai import Call, ToolCalls
from tests.trace_samples import PageWatch, browser_fixture, build_trace, check_graph, screenshot_dir

pytestmark = pytest.mark.slow  # a real browser

browser = browser_fixture()

# Where each mark is drawn, read back from the laid-out page.
MARKS_JS = """() => Array.from(document.querySelectorAll('.tl .mark')).map(m => {
  const lane = m.closest('.tl-lane').getBoundingClientRect();
  const box = m.getBoundingClientRect();
  const style = getComputedStyle(m);
  return {
    t: parseFloat(m.dataset.t), source: m.dataset.source, lane: m.closest('.tl-lane').dataset.lane,
    evidence: m.dataset.evidence === 'true', shown: m.dataset.shown === 'true',
    center: box.left + box.width / 2, laneLeft: lane.left, laneWidth: lane.width,
    width: box.width, height: box.height, visible: style.visibility !== 'hidden' && style.display !== 'none',
    colour: m.classList.contains('listed') ? style.borderTopColor : style.backgroundColor,
    ring: style.boxShadow,
  };
})"""


def open_page(browser, path, viewport=(1280, 900)):
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    watch = PageWatch(page)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, watch


def check_timeline(page, trace):
    """The drawn marks are the trace's frames: same count, sources, evidence; each at t / duration of its lane."""
    marks = page.evaluate(MARKS_JS)
    frames = trace.frames()
    assert len(marks) == len(frames)
    want = sorted((f.t, f.source, e, f.shown) for f, e in zip(frames, evidence_flags(trace)))
    assert sorted((m["t"], m["source"], m["evidence"], m["shown"]) for m in marks) == want
    span = trace.duration_s
    for m in marks:
        assert m["lane"] == m["source"]
        assert m["visible"] and m["width"] > 0 and m["height"] > 0
        expected = m["laneLeft"] + m["laneWidth"] * m["t"] / span
        assert m["center"] == pytest.approx(expected, abs=1.0), m
        assert (m["ring"] != "none") == m["evidence"], m
    # one colour per source, different across sources
    colours = {}
    for m in marks:
        colours.setdefault(m["source"], set()).add(m["colour"])
    assert all(len(c) == 1 for c in colours.values()), colours
    assert len({next(iter(c)) for c in colours.values()}) == len(colours)


def test_trace_page_in_chromium(browser, tmp_path):
    trace = build_trace()
    path = write_trace_html(trace, tmp_path / "trace.html", extract_thumbnails=False)
    page, watch = open_page(browser, path)
    check_timeline(page, trace)

    # thumbnails are decoded images, not broken ones
    sizes = page.evaluate("() => Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
    assert sizes and all(done and width > 0 for done, width in sizes)

    # clicking an evidence mark jumps to its frame in the step list
    mark = page.locator(".tl .mark[data-evidence='true'][data-source='resample']")
    assert mark.count() == 1
    mark.click()
    index = mark.get_attribute("data-index")
    assert page.evaluate("() => location.hash") == f"#frame-{index}"
    figure = page.locator(f"#frame-{index}")
    assert figure.get_attribute("data-t") == mark.get_attribute("data-t")
    assert figure.is_visible()
    # scrolled into view (smoothly, so wait for it)
    page.wait_for_function(
        "id => { const r = document.getElementById(id).getBoundingClientRect();"
        " return r.top >= 0 && r.bottom <= innerHeight; }",
        arg=f"frame-{index}", timeout=5000,
    )

    # hovering a mark previews the frame's thumbnail
    page.locator(".tl .mark[data-source='view']").first.hover()
    preview = page.locator("#tl-preview")
    assert preview.is_visible()
    assert preview.locator("img").count() == 1

    assert watch.errors == []
    assert watch.external_requests() == []
    page.close()


def test_trace_page_from_a_real_agent_run(browser, tmp_path, fake_openai, openai_backend_factory, random_searcher,
                                          synthetic_video):
    from agent.run import solve

    fake_openai.enqueue(
        ToolCalls([Call("search_frames", {"query": "black and white stripes", "k": 3})], usage=(900, 20)),
        ToolCalls([Call("view_frames", {"timestamps": [1.0, 2.0]})], usage=(1200, 18)),
        ToolCalls([Call("resample_clip", {"start": 9.0, "end": 12.0})], usage=(1500, 15)),
        ToolCalls([Call("resample_clip", {"start": 1.5, "end": 2.5, "n": 4})], usage=(1700, 22)),
        ToolCalls(
            [Call("answer", {"option": "B", "rationale": "The bands change at 2.0s.", "evidence": [2.0]})],
            usage=(2100, 40),
        ),
    )
    trace = solve(
        synthetic_video, "Which pattern appears?", ["(A) stripes", "(B) bands", "(C) dots"],
        backend=openai_backend_factory(), searcher=random_searcher,
        config=AgentConfig(overview_frames=4, max_frames=16), gold="B", question_id="agent-q",
    )
    assert fake_openai.pending == 0
    assert {f.source for f in trace.frames()} == {"overview", "search", "view", "resample"}
    assert any(n.error for n in trace.nodes)

    path = write_trace_html(trace, tmp_path / "agent-q.html", extract_thumbnails=False)
    page, watch = open_page(browser, path)
    check_timeline(page, trace)
    check_graph(page, trace)  # the drawn graph of a real run is its trace's
    assert page.locator(".node.has-error").count() == sum(1 for n in trace.nodes if n.error)
    assert page.locator("[data-verdict]").get_attribute("data-verdict") == "correct"
    evidence_targets = {e.target for e in trace.edges if e.kind == "evidence"}
    assert {page.locator(f"#node-{t}").get_attribute("data-kind") for t in evidence_targets} <= {"observation", "overview"}
    page.screenshot(path=str(screenshot_dir(tmp_path) / "trace-agent-run.png"), full_page=True)
    assert watch.errors == []
    assert watch.external_requests() == []
    page.close()


def test_trace_page_screenshots(browser, tmp_path):
    """Full-page screenshots of a trace page, wide and narrow, for a person to look at."""
    from PIL import Image

    out = screenshot_dir(tmp_path)
    trace = build_trace(option="B", gold="C")
    path = write_trace_html(trace, tmp_path / "trace-wrong.html", extract_thumbnails=False)
    for name, viewport in [("trace-page.png", (1280, 900)), ("trace-page-narrow.png", (760, 900))]:
        page, watch = open_page(browser, path, viewport)
        # nothing spills sideways out of the page
        assert page.evaluate("() => document.documentElement.scrollWidth") <= viewport[0]
        page.screenshot(path=str(out / name), full_page=True)
        assert watch.errors == []
        page.close()
        with Image.open(out / name) as image:
            assert image.width == viewport[0] and image.height > 1500
