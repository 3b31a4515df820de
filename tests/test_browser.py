"""The run browser's files: index rows, trace pages, side-by-side pages, links, bad input."""

from __future__ import annotations

import json
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
    """The question table's rows: one per question."""
    return [a for t, a in tags(index) if t == "tr" and "data-qid" in a]


def run_cells(index: Path) -> list[dict[str, str]]:
    """The question table's cells: one per question and run."""
    return [a for t, a in tags(index) if t == "td" and "run-cell" in a.get("class", "")]


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


def test_index_has_a_row_per_question_and_a_column_per_run_with_latest_rows(two_runs, tmp_path):
    index = write_run_browser(list(two_runs), tmp_path / "site")
    assert index == tmp_path / "site" / "index.html"
    # natural order: q1, q2, q7, q10 before the odd id
    assert [r["data-qid"] for r in index_rows(index)] == ["q1", "q2", "q7", "q10", "weird id/with:chars"]
    cells = run_cells(index)
    assert [(c["data-qid"], c["data-run"]) for c in cells] == [(q, run) for q in ["q1", "q2", "q7", "q10", "weird id/with:chars"]
                                                             for run in ("agent", "uniform")]
    absent = {(c["data-qid"], c["data-run"]) for c in cells if c["data-result"] == "absent"}
    assert absent == {("q7", "uniform"), ("weird id/with:chars", "uniform")}
    q2 = next(c for c in cells if c["data-qid"] == "q2" and c["data-run"] == "agent")
    assert (q2["data-answer"], q2["data-result"], q2["data-frames"]) == ("C", "correct", "14")  # the re-run row
    q1 = {c["data-run"]: c for c in cells if c["data-qid"] == "q1"}
    assert (q1["agent"]["data-answer"], q1["uniform"]["data-answer"]) == ("C", "D")
    assert (q1["uniform"]["data-result"], q1["uniform"]["data-cost"]) == ("wrong", "0.02")
    q7 = next(c for c in cells if c["data-qid"] == "q7" and c["data-run"] == "agent")
    assert q7["data-result"] == "error" and q7["data-cost"] == ""
    assert "not a video file" in index.read_text()


def test_question_flags_say_how_the_runs_fared_together(tmp_path):
    """Disagreements, all wrong, all right and agent-only wins, worked out from the rows (error rows left out)."""
    def rows(method: str, answers: dict[str, str | None]):
        return [result_row(q, method=method, prediction=a, gold="C",
                           **({"status": "error", "error": "timeout"} if a == "!" else {}))
                for q, a in answers.items()]

    agent = write_run_dir(tmp_path, "agent", method="agent",
                          rows=rows("agent", {"a": "C", "b": "A", "c": "C", "d": "C", "e": "!", "f": "C"}))
    uniform = write_run_dir(tmp_path, "uniform", method="uniform",
                            rows=rows("uniform", {"a": "B", "b": "B", "c": "C", "d": "!", "e": "A"}))
    index = write_run_browser([agent, uniform], tmp_path / "site")
    flags = {r["data-qid"]: (r["data-disagree"], r["data-all-wrong"], r["data-all-right"], r["data-agent-only"],
                             r["data-right"], r["data-answered"]) for r in index_rows(index)}
    assert flags == {
        "a": ("true", "false", "false", "true", "1", "2"),  # agent right, uniform wrong
        "b": ("false", "true", "false", "false", "0", "2"),
        "c": ("false", "false", "true", "false", "2", "2"),
        "d": ("false", "false", "true", "false", "1", "1"),  # uniform's error row is no answer
        "e": ("false", "true", "false", "false", "0", "1"),
        "f": ("false", "false", "true", "false", "1", "1"),  # only the agent ran it: not a win over anyone
    }


def test_each_traced_cell_links_to_its_trace_page_and_shared_questions_to_side_by_side(two_runs, tmp_path):
    index = write_run_browser(list(two_runs), tmp_path / "site")
    site = index.parent
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
    disagree = {r["data-qid"]: r["data-disagree"] for r in index_rows(index)}
    assert disagree["q1"] == "true"  # agent right, uniform wrong
    assert disagree["q2"] == "false"


def test_side_by_side_page_shows_both_runs_on_one_time_axis(two_runs, tmp_path):
    from eval.benchmarks import get_benchmark
    from tests.trace_samples import SAMPLE_FPS

    site = write_run_browser(list(two_runs), tmp_path / "site").parent
    page = site / "compare" / "q1.html"
    columns = [a for t, a in tags(page) if t == "section" and "column" in a.get("class", "")]
    assert [c["data-run"] for c in columns] == ["agent", "uniform"]
    results = [a["data-result"] for t, a in tags(page) if "data-result" in a]
    assert results == ["correct", "wrong"]
    # one axis: the agent's frames link into its trace page; the uniform run's 32 frames sit where the
    # benchmark's frame-index rule puts them in the video (its metadata from the agent's trace)
    marks = [a for t, a in tags(page) if "mark" in a.get("class", "").split()]
    agent_marks = [m for m in marks if m.get("href")]
    assert sorted(float(m["data-t"]) for m in agent_marks) == sorted(f.t for f in build_trace().frames())
    assert all(m["href"].startswith("../traces/agent/q1.html#frame-") for m in agent_marks)
    uniform = [float(m["data-t"]) for m in marks if m["data-source"] == "uniform"]
    meta = build_trace().settings["video"]
    expected = [i / SAMPLE_FPS for i in get_benchmark("mmr_v").sample_indices(meta["n_frames"], 32)]
    assert uniform == pytest.approx(expected, abs=1e-3)
    assert uniform[0] == 0 and uniform[-1] == pytest.approx((meta["n_frames"] - 1) / SAMPLE_FPS, abs=1e-3)
    rows = {a["data-run"]: a for t, a in tags(page) if "axis-row" in a.get("class", "") and "data-run" in a}
    assert rows["uniform"]["data-derived"] == "true" and rows["agent"]["data-derived"] == "false"
    for link in local_links(page):
        assert link.is_file(), link
    text = page.read_text()
    assert "The answer is [[D]]" in text  # the uniform run's response


def test_uniform_frames_come_from_the_video_when_no_trace_has_its_metadata(tmp_path, synthetic_video):
    """Two uniform runs of a question: their times come from the video's own headers, in the videos folder."""
    from eval.benchmarks import get_benchmark
    from tools.video import open_video

    runs = []
    for name, frames in [("u8", 8), ("u4", 4)]:
        row = result_row("q1", method="uniform", prediction="C", frames=frames).model_copy(
            update={"video": synthetic_video.name})
        run = write_run_dir(tmp_path, name, method="uniform", rows=[row])
        (run / "config.json").write_text(json.dumps({"method": "uniform", "frames": frames,
                                                     "data": {"videos": str(synthetic_video.parent)}}))
        runs.append(run)
    page = write_run_browser(runs, tmp_path / "site").parent / "compare" / "q1.html"
    with open_video(synthetic_video) as video:
        meta = video.meta
    marks = [a for t, a in tags(page) if "mark" in a.get("class", "").split()]
    for frames in (8, 4):
        indices = get_benchmark("mmr_v").sample_indices(meta.n_frames, frames)
        assert [float(m["data-t"]) for m in marks][:frames] == pytest.approx([i / meta.fps for i in indices], abs=1e-3)
        marks = marks[frames:]
    assert marks == []

    # without the video nothing is made up: the page says why the frames are not placed
    (runs[0] / "config.json").write_text(json.dumps({"method": "uniform", "data": {"videos": str(tmp_path / "gone")}}))
    (runs[1] / "config.json").write_text(json.dumps({"method": "uniform"}))
    page = write_run_browser(runs, tmp_path / "site2").parent / "compare" / "q1.html"
    assert not [a for t, a in tags(page) if "mark" in a.get("class", "").split()]
    assert "frames not placed" in page.read_text()


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
    cell = next(c for c in run_cells(index) if c["data-qid"] == "q10" and c["data-run"] == "agent")
    assert cell["data-result"] == "correct"  # the row itself is still listed
    assert "trace unreadable" in text


def test_run_labels_stay_unique(tmp_path):
    a = write_run_dir(tmp_path / "x", "run", method="agent", rows=[result_row("q1", method="agent", prediction="C")])
    b = write_run_dir(tmp_path / "y", "run", method="agent", rows=[result_row("q1", method="agent", prediction="A")])
    index = write_run_browser([a, b], tmp_path / "site")
    assert sorted(c["data-run"] for c in run_cells(index)) == ["run", "run-2"]


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

    a = write_run_dir(tmp_path, "a", method="uniform", rows=[hostile("uniform", "C", video_type=payload)])
    b = write_run_dir(tmp_path, "b", method="agent", rows=[
        hostile("agent", None, status="error", error=payload, video_type=payload)])
    index = write_run_browser([a, b], tmp_path / "site")
    pages = [index, index.parent / "compare" / "q1.html"]
    for page in pages:
        assert not [t for t, attrs in tags(page) if t == "img" or "onerror" in attrs], page
        assert "&lt;img src=x onerror=alert(1)&gt;" in page.read_text(encoding="utf-8")
    (row,) = index_rows(index)
    assert row["data-video-type"] == payload  # attributes are escaped too, and read back intact


def test_labels_follow_a_run_onto_every_page(tmp_path):
    """Random CLIP weights and a text-only planner (from the run's config) and forced answers (from its
    traces) are marked on the index, the question table, the side-by-side page and the trace page."""
    from tests.trace_samples import build_verdict_trace

    trace = build_verdict_trace("q1", forced=True)
    trace.labels = ["random-weights"]
    trace.settings["agent"] = {"perception": "delegated"}
    agent = write_run_dir(tmp_path, "agent", method="agent", traces={"q1": trace},
                          rows=[result_row("q1", method="agent", prediction="C", trace="traces/q1.json"),
                                result_row("q2", method="agent", prediction="C")])
    (agent / "config.json").write_text(json.dumps({"method": "agent", "method_settings": {
        "labels": ["random-weights"], "agent": {"perception": "delegated"}, "perception_model": "qwen-vl",
        "strategy": "planner"}}))
    uniform = write_run_dir(tmp_path, "uniform", method="uniform",
                            rows=[result_row("q1", method="uniform", prediction="D")])
    index = write_run_browser([agent, uniform], tmp_path / "site")

    def labels(page: Path, where: str | None = None) -> list[str]:
        found, inside = [], where is None
        for tag, attrs in tags(page):
            if where is not None and "data-run" in attrs and tag in ("tr", "section", "th"):
                inside = attrs["data-run"] == where
            if inside and "data-label" in attrs:
                found.append(attrs["data-label"])
        return found

    assert labels(index, "agent") == ["random-weights", "text-only planner", "1 forced answer"]
    assert "agent (planner)" in index.read_text()  # the strategy beside the method
    assert labels(index, "uniform") == []
    # the question table's column for the run carries them in its header, the forced answer in its cell
    assert "text-only planner" in index.read_text().split('class="run-head"')[1].split("</th>")[0]
    cell = index.read_text().split('data-qid="q1" data-run="agent"')[1].split("</td>")[0]
    assert "forced answer" in cell and "random-weights" not in cell  # the header says that once for the column
    compare = index.parent / "compare" / "q1.html"
    assert labels(compare, "agent") == ["random-weights", "text-only planner", "forced answer"]
    assert labels(compare, "uniform") == []
    page = index.parent / "traces" / "agent" / "q1.html"
    assert labels(page) == ["random-weights", "text-only planner", "forced answer"]


def test_report_thumbnails_flag_gives_search_hits_pictures_in_the_browser(tmp_path, synthetic_video, capsys):
    """``sleuth report --thumbnails``: the run browser's trace pages show what each search offered."""
    from tests.cli_helpers import run_cli

    trace = build_trace("q1", duration_s=4.0, with_thumbs=False, video=str(synthetic_video))
    for node in trace.nodes:  # the sample's moments, squeezed into the 4 s synthetic video
        for frame in node.frames:
            frame.t = round(frame.t / 15.0, 2)
    hits = [f for f in trace.frames() if not f.shown]
    run = write_run_dir(tmp_path, "agent", method="agent", traces={"q1": trace},
                        rows=[result_row("q1", method="agent", prediction="C", trace="traces/q1.json")])
    for flag, pictured in [([], 0), (["--thumbnails"], len(hits))]:
        out = tmp_path / f"report{len(flag)}"
        code, _, err = run_cli(["report", str(run), "-o", str(out), *flag], capsys)
        assert code == 0, err
        page = out / "browser" / "traces" / "agent" / "q1.html"
        figures = [a for t, a in tags(page) if t == "figure" and "hit" in a.get("class", "").split()]
        assert len(figures) == pictured
