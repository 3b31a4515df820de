"""The run browser in a real headless chromium: links resolve, filters and sorting work, no console errors.

Needs Debian's chromium (``apt-get install -y chromium``) and Playwright for
Python; skipped with the reason when chromium is missing. Screenshots go to
``$SLEUTH_SCREENSHOT_DIR`` when set, else to the test's tmp dir.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from eval.views.browser import write_run_browser
from tests.trace_samples import QIDS, PageWatch, browser_fixture, screenshot_dir, write_sample_runs

pytestmark = pytest.mark.slow  # a real browser

browser = browser_fixture()

VISIBLE_ROWS_JS = """() => Array.from(document.querySelectorAll('#rows tr'))
  .filter(r => !r.hidden && r.offsetParent !== null).map(r => ({...r.dataset}))"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    return write_run_browser(list(write_sample_runs(root / "runs")), root / "site")


@pytest.fixture
def index(browser, site):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    watch = PageWatch(page)
    page.goto(site.as_uri())
    yield page, watch
    assert watch.errors == [], watch.errors
    assert watch.external_requests() == []
    page.close()


def visible(page) -> list[dict]:
    return page.evaluate(VISIBLE_ROWS_JS)


def test_every_link_resolves_and_opens_without_errors(browser, site, index):
    page, _ = index
    hrefs = page.evaluate("() => Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")
    assert hrefs
    targets = sorted({urlsplit(h)._replace(fragment="").geturl() for h in hrefs})
    for url in targets:
        assert url.startswith("file://"), url
        assert Path(unquote(urlsplit(url).path)).is_file(), url
        other = browser.new_page()
        watch = PageWatch(other)
        other.goto(url)
        other.wait_for_load_state("load")
        assert watch.errors == [], (url, watch.errors)
        assert watch.external_requests() == [], url
        # every in-page anchor on the opened page has its target
        missing = other.evaluate(
            "() => Array.from(document.querySelectorAll('a[href^=\"#\"]'))"
            ".map(a => a.getAttribute('href').slice(1)).filter(id => id && !document.getElementById(id))"
        )
        assert missing == [], (url, missing)
        other.close()


def test_clicking_a_trace_link_opens_that_trace(index):
    page, _ = index
    page.locator("td.run-cell[data-qid='q1'][data-run='agent'] a.trace-link").click()
    page.wait_for_load_state("load")
    assert page.url.endswith("/traces/agent/q1.html")
    assert "q1" in page.title()
    assert page.locator(".tl .mark").count() > 0
    page.locator("a.back").click()
    page.wait_for_load_state("load")
    assert page.url.endswith("/index.html")


def test_filters_narrow_the_questions(index):
    page, _ = index
    total = len(visible(page))
    assert total == len(QIDS) + 1  # one row per question, q7 (an error row) included
    assert page.locator("#count").inner_text() == f"{total} of {total} questions"
    # a column per run, in the order the runs were given
    heads = page.evaluate("() => Array.from(document.querySelectorAll('th.run-head')).map(th => th.dataset.run)")
    assert heads == ["agent", "uniform"]
    cells = page.evaluate("() => Array.from(document.querySelectorAll('tr[data-qid=\"q1\"] td.run-cell'))"
                          ".map(td => [td.dataset.run, td.dataset.answer, td.dataset.result])")
    assert cells == [["agent", "C", "correct"], ["uniform", "D", "wrong"]]

    page.select_option("#f-outcome", "disagree")
    assert [r["qid"] for r in visible(page)] == ["q1"]
    assert page.locator("#count").inner_text() == f"1 of {total} questions"
    page.select_option("#f-outcome", "agentOnly")
    assert [r["qid"] for r in visible(page)] == ["q1"]
    page.select_option("#f-outcome", "allWrong")
    assert [r["qid"] for r in visible(page)] == ["weird id/with:chars"]  # answered by the agent alone, wrongly
    page.select_option("#f-outcome", "allRight")
    assert [r["qid"] for r in visible(page)] == ["q2", "q10"]

    page.select_option("#f-category", "explicit")  # filters combine
    assert [r["qid"] for r in visible(page)] == ["q10"]
    page.select_option("#f-outcome", "")
    assert {r["qid"] for r in visible(page)} == {"q10", "weird id/with:chars"}
    page.select_option("#f-category", "")

    page.select_option("#f-video-type", "Animation")
    assert [r["qid"] for r in visible(page)] == ["q2"]
    page.select_option("#f-video-type", "")

    page.fill("#f-text", "WEIRD")
    assert [r["qid"] for r in visible(page)] == ["weird id/with:chars"]
    page.fill("#f-text", "")
    assert len(visible(page)) == total


def test_sorting_by_columns(index):
    page, _ = index
    header = page.locator("#questions th[data-sort='cost-0']")  # the agent run's cost
    header.click()
    costs = [r["cost-0"] for r in visible(page)]
    priced = [float(c) for c in costs if c]
    assert priced == sorted(priced) and costs[-1] == ""  # unpriced rows last
    assert header.get_attribute("aria-sort") == "ascending"
    header.click()
    priced = [float(r["cost-0"]) for r in visible(page) if r["cost-0"]]
    assert priced == sorted(priced, reverse=True)
    assert header.get_attribute("aria-sort") == "descending"

    page.locator("#questions th[data-sort='right']").click()
    right = [int(r["right"]) for r in visible(page)]
    assert right == sorted(right)

    page.locator("#questions th[data-sort='qid']").click()
    order = [r["qid"] for r in visible(page)]
    assert order == ["q1", "q2", "q7", "q10", "weird id/with:chars"]  # natural order: q2 before q10

    # sorting keeps filters
    page.select_option("#f-category", "explicit")
    page.locator("#questions th[data-sort='right']").click()
    assert {r["qid"] for r in visible(page)} == {"q10", "weird id/with:chars"}


def test_side_by_side_page(browser, site):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    watch = PageWatch(page)
    page.goto((site.parent / "compare" / "q1.html").as_uri())
    columns = page.locator("section.column")
    assert columns.count() == 2
    assert [columns.nth(i).get_attribute("data-run") for i in range(2)] == ["agent", "uniform"]
    # the two columns sit next to each other
    a, b = columns.nth(0).bounding_box(), columns.nth(1).bounding_box()
    assert abs(a["y"] - b["y"]) < 1 and b["x"] > a["x"] + a["width"] - 1
    # options show who picked what
    picks = page.evaluate(
        "() => Array.from(document.querySelectorAll('.option')).map(o => [o.dataset.letter,"
        " Array.from(o.querySelectorAll('.pick-tag')).map(t => t.textContent)])"
    )
    assert dict(picks)["C"] == ["agent"] and dict(picks)["D"] == ["uniform"]
    # one shared axis: a mark at the same moment sits at the same x in every run's lane
    drawn = page.evaluate(
        "() => Array.from(document.querySelectorAll('#shared-axis .axis-row[data-run]')).map(row => ({run: row.dataset.run,"
        " lane: row.querySelector('.axis-lane').getBoundingClientRect().toJSON(), marks: Array.from(row.querySelectorAll('.mark'))"
        ".map(m => { const b = m.getBoundingClientRect(); return {t: +m.dataset.t, x: b.left + b.width / 2}; })}))"
    )
    assert [r["run"] for r in drawn] == ["agent", "uniform"]
    span = float(page.locator("#shared-axis").get_attribute("data-span"))
    assert drawn[0]["lane"]["x"] == pytest.approx(drawn[1]["lane"]["x"]) and drawn[0]["marks"] and len(drawn[1]["marks"]) == 32
    for row in drawn:
        for m in row["marks"]:
            assert m["x"] == pytest.approx(row["lane"]["x"] + row["lane"]["width"] * m["t"] / span, abs=1.0)
    mark = page.locator("#shared-axis .axis-row[data-run='agent'] a.mark").first
    mark.click()
    page.wait_for_load_state("load")
    assert "/traces/agent/q1.html#frame-" in page.url
    assert watch.errors == []
    assert watch.external_requests() == []
    page.close()


def test_browser_screenshots(browser, site, tmp_path):
    """Screenshots of the run index and a side-by-side page, for a person to look at."""
    out = screenshot_dir(tmp_path)
    for name, path in [("run-index.png", site), ("side-by-side.png", site.parent / "compare" / "q1.html")]:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        watch = PageWatch(page)
        page.goto(path.as_uri())
        # no sideways scrolling of the page (a very wide table scrolls inside its own box)
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 1280
        page.screenshot(path=str(out / name), full_page=True)
        assert (out / name).stat().st_size > 10_000
        assert watch.errors == []
        page.close()
