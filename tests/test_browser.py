"""The run browser's files: index rows, trace pages, side-by-side pages, links, bad input."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from eval.views.browser import read_results, safe_name, write_run_browser
from sleuth.errors import SleuthError
from tests.trace_samples import QIDS, build_trace, result_row, write_run_dir, write_sample_runs


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))


def tags(path: Path) -> list[tuple[str, dict[str, str]]]:
    parser = _Tags()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser.tags


def index_rows(index: Path) -> list[dict[str, str]]:
    return [a for t, a in tags(index) if t == "tr" and "data-qid" in a]


def local_links(page: Path) -> list[Path]:
    """Every href/src on the page that points at a local file, resolved against the page."""
    found = []
    for _, attrs in tags(page):
        for name in ("href", "src"):
            value = attrs.get(name)
            if not value or value.startswith(("#", "data:")):
                continue
            assert not urlsplit(value).scheme, f"{page.name} links outside: {value}"
            found.append((page.parent / unquote(urlsplit(value).path)).resolve())
    return found


@pytest.fixture
def two_runs(tmp_path):
    return write_sample_runs(tmp_path / "runs")


def test_index_lists_every_question_per_run_with_latest_rows(two_runs, tmp_path):
    index = write_run_browser(list(two_runs), tmp_path / "site")
    assert index == tmp_path / "site" / "index.html"
    rows = index_rows(index)
    got = [(r["data-qid"], r["data-run"]) for r in rows]
    assert sorted(got) == sorted([(q, "agent") for q in QIDS + ["q7"]] + [(q, "uniform") for q in QIDS[:3]])
    # natural order: q1, q2, q7, q10 before the odd id
    assert [q for q, r in got if r == "agent"] == ["q1", "q2", "q7", "q10", "weird id/with:chars"]
    q2 = next(r for r in rows if r["data-qid"] == "q2" and r["data-run"] == "agent")
    assert (q2["data-answer"], q2["data-result"], q2["data-frames"]) == ("C", "correct", "14")
    q7 = next(r for r in rows if r["data-qid"] == "q7")
    assert q7["data-result"] == "error" and q7["data-cost"] == ""
    assert "not a video file" in index.read_text()


def test_each_traced_row_links_to_its_trace_page_and_shared_questions_to_side_by_side(two_runs, tmp_path):
    index = write_run_browser(list(two_runs), tmp_path / "site")
    site = index.parent
    html = index.read_text()
    trace_links = [a["href"] for t, a in tags(index) if t == "a" and "trace-link" in a.get("class", "")]
    assert len(trace_links) == len(QIDS)  # q7 has no trace, uniform rows have none
    compare_links = {a["href"] for t, a in tags(index) if t == "a" and "compare-link" in a.get("class", "")}
    assert compare_links == {f"compare/{safe_name(q)}.html" for q in QIDS[:3]}
    for link in local_links(index):
        assert link.is_file(), link
    # a trace page is the full trace page, with a way back
    page = site / "traces" / "agent" / "q1.html"
    assert page.is_file()
    assert any(a.get("href") == "../../index.html" for _, a in tags(page))
    assert len([a for _, a in tags(page) if "mark" in a.get("class", "").split()]) == len(build_trace().frames())
    for link in local_links(page):
        assert link.is_file(), link
    disagree = {(r["data-qid"], r["data-run"]): r["data-disagree"] for r in index_rows(index)}
    assert disagree[("q1", "agent")] == disagree[("q1", "uniform")] == "true"  # agent right, uniform wrong
    assert disagree[("q2", "agent")] == disagree[("q2", "uniform")] == "false"
    assert html.count('class="compare-link"') == 2 * len(compare_links)


def test_side_by_side_page_shows_both_runs(two_runs, tmp_path):
    site = write_run_browser(list(two_runs), tmp_path / "site").parent
    page = site / "compare" / "q1.html"
    columns = [a for t, a in tags(page) if t == "section" and "column" in a.get("class", "")]
    assert [c["data-run"] for c in columns] == ["agent", "uniform"]
    results = [a["data-result"] for t, a in tags(page) if "data-result" in a]
    assert results == ["correct", "wrong"]
    # the agent column carries its timeline, linking into its trace page
    marks = [a for t, a in tags(page) if "mark" in a.get("class", "").split()]
    assert len(marks) == len(build_trace().frames())
    assert all(m["href"].startswith("../traces/agent/q1.html#frame-") for m in marks)
    for link in local_links(page):
        assert link.is_file(), link
    text = page.read_text()
    assert "The answer is [[D]]" in text  # the uniform run's response


def test_problems_are_listed_and_the_rest_is_written(two_runs, tmp_path):
    agent, uniform = two_runs
    (agent / "traces" / "q10.json").write_text("{broken")
    index = write_run_browser([agent, uniform], tmp_path / "site")
    text = index.read_text()
    assert "3 problems" in text
    assert "results.jsonl: line 7: not valid JSON" in text
    assert "results.jsonl: line 8: not a result row (question_id: Field required)" in text
    assert "q10.json: not a readable JSON trace" in text
    assert not (index.parent / "traces" / "agent" / "q10.html").exists()
    assert (index.parent / "traces" / "agent" / "q1.html").exists()
    row = next(r for r in index_rows(index) if r["data-qid"] == "q10" and r["data-run"] == "agent")
    assert row["data-result"] == "correct"  # the row itself is still listed
    assert "trace unreadable" in text


def test_run_labels_stay_unique(tmp_path):
    a = write_run_dir(tmp_path / "x", "run", method="agent", rows=[result_row("q1", method="agent", prediction="C")])
    b = write_run_dir(tmp_path / "y", "run", method="agent", rows=[result_row("q1", method="agent", prediction="A")])
    index = write_run_browser([a, b], tmp_path / "site")
    assert sorted(r["data-run"] for r in index_rows(index)) == ["run", "run-2"]


@pytest.mark.parametrize("setup, message", [
    (lambda p: p, "not a run directory"),
    (lambda p: (p.mkdir(), p)[1], "no results.jsonl"),
])
def test_bad_run_directory_is_a_one_line_error(tmp_path, setup, message):
    path = setup(tmp_path / "run")
    with pytest.raises(SleuthError, match=message):
        write_run_browser([path], tmp_path / "site")
    with pytest.raises(SleuthError, match="no run directories"):
        write_run_browser([], tmp_path / "site")


def test_read_results_keeps_the_latest_row_in_arrival_order(tmp_path):
    lines = [result_row(q, method="agent", prediction=p).model_dump_json() for q, p in
             [("a", "A"), ("b", "B"), ("a", "C")]]
    path = tmp_path / "results.jsonl"
    path.write_text("\n".join(lines) + "\n\n")
    rows, problems = read_results(path)
    assert list(rows) == ["b", "a"]
    assert rows["a"].prediction == "C"
    assert problems == []


def test_safe_names_are_unique_and_plain():
    assert safe_name("q12") == "q12"
    assert safe_name("a/b") != safe_name("a:b")
    assert all(ch.isalnum() or ch in "._-" for ch in safe_name("../../etc/passwd"))


def test_run_figures_leave_error_rows_out_like_the_report(tmp_path):
    from eval.views.browser import load_run, pair_summaries, run_summary

    rows_a = [
        result_row("q1", method="uniform", prediction="C", frames=32),
        result_row("q2", method="uniform", prediction="A", frames=32),
        result_row("q3", method="uniform", prediction=None, frames=0, status="error", error="video not found"),
    ]
    rows_b = [
        result_row("q1", method="agent", prediction="C", frames=20),
        result_row("q2", method="agent", prediction="C", frames=24),
        result_row("q3", method="agent", prediction="C", frames=12),
    ]
    a = load_run(write_run_dir(tmp_path, "a", method="uniform", rows=rows_a))
    b = load_run(write_run_dir(tmp_path, "b", method="agent", rows=rows_b))
    summary = run_summary(a)
    assert (summary["questions"], summary["errors"], summary["correct"]) == (3, 1, 1)
    assert summary["accuracy"] == pytest.approx(0.5)  # 1 of the 2 answered, not 1 of 3
    assert summary["mean_frames"] == pytest.approx(32)
    (pair,) = pair_summaries([a, b])
    assert pair["shared"] == 2  # q3 is an error in run a: not a paired question
    assert (pair["both"], pair["only_a"], pair["only_b"], pair["neither"]) == (1, 0, 1, 0)


def test_dataset_and_model_text_is_escaped_on_every_page(tmp_path):
    payload = "<img src=x onerror=alert(1)> | pipe"

    def hostile(method: str, prediction: str | None, **fields):
        row = result_row("q1", method=method, prediction=prediction, **fields)
        return row.model_copy(update={
            "question": payload, "options": [f"(A) {payload}", "(B) fine", "(C) fine"],
            "raw_response": payload, "video": f"{payload}.mp4",
        })

    a = write_run_dir(tmp_path, "a", method="uniform", rows=[hostile("uniform", "C")])
    b = write_run_dir(tmp_path, "b", method="agent", rows=[
        hostile("agent", None, status="error", error=payload, video_type=payload)])
    index = write_run_browser([a, b], tmp_path / "site")
    pages = [index, index.parent / "compare" / "q1.html"]
    for page in pages:
        assert not [t for t, attrs in tags(page) if t == "img" or "onerror" in attrs], page
        assert "&lt;img src=x onerror=alert(1)&gt;" in page.read_text(encoding="utf-8")
    row = next(r for r in index_rows(index) if r["data-run"] == "b")
    assert row["data-video-type"] == payload  # attributes are escaped too, and read back intact
