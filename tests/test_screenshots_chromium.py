"""Screenshots of every page sleuth writes, for a person to look at (the README links the committed set).

Writes to ``$SLEUTH_SCREENSHOT_DIR`` when set, else the test's tmp dir:
``SLEUTH_SCREENSHOT_DIR=docs/screenshots python -m pytest tests/test_screenshots_chromium.py``
refreshes ``docs/screenshots/``. Each page must open without console errors
or network requests; each image is reduced to a palette PNG to stay small.
"""

from __future__ import annotations

import pytest

from eval.report import write_report
from eval.views.html import write_trace_html
from tests.trace_samples import (
    PageWatch,
    browser_fixture,
    build_verdict_trace,
    screenshot_dir,
    thumb_data_url,
    write_sample_runs,
)

pytestmark = pytest.mark.slow  # a real browser

browser = browser_fixture()

MAX_BYTES = 400_000


def _shoot(browser, url: str, out, *, element: str | None = None, height: int = 900) -> None:
    from PIL import Image

    page = browser.new_page(viewport={"width": 1280, "height": height})
    watch = PageWatch(page)
    page.goto(url)
    page.wait_for_load_state("load")
    target = page.locator(element) if element else page
    target.screenshot(path=str(out))
    assert watch.errors == [], (url, watch.errors)
    assert watch.external_requests() == [], url
    page.close()
    with Image.open(out) as image:
        small = image.convert("RGB").quantize(colors=256)
    small.save(out, optimize=True)
    assert 5_000 < out.stat().st_size < MAX_BYTES, (out, out.stat().st_size)


def test_screenshots_of_every_page(browser, tmp_path):
    out = screenshot_dir(tmp_path)
    agent, uniform = write_sample_runs(tmp_path / "runs")
    report = write_report([uniform, agent], tmp_path / "report")
    site = report.browser.parent
    trace = build_verdict_trace()
    for frame in trace.frames():  # hit thumbnails, as the page maker decodes them from a video
        frame.thumb = frame.thumb or thumb_data_url(frame.t)
    trace_page = write_trace_html(trace, tmp_path / "verdicts.html", extract_thumbnails=False)
    shots = {
        "trace-page.png": (site / "traces" / "agent" / "q1.html").as_uri(),
        "trace-graph.png": (trace_page.as_uri(), "#graph"),
        "trace-verdicts.png": (trace_page.as_uri(), "#reasoning"),
        "run-index.png": report.browser.as_uri(),
        "side-by-side.png": (site / "compare" / "q1.html").as_uri(),
        "report.png": report.html.as_uri(),
    }
    for name, target in shots.items():
        url, element = target if isinstance(target, tuple) else (target, None)
        _shoot(browser, url, out / name, element=element)
    assert sorted(p.name for p in out.glob("*.png")) >= sorted(shots)
