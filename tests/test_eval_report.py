"""``sleuth report``: per-category tables, paired comparison with McNemar, paper reference rows, plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.report import PAPER_REFERENCE, compare_runs, load_run, write_report
from eval.results import ResultRow
from sleuth.cli import main

SAMPLE = Path(__file__).parent / "data" / "mmrv_sample_questions.json"


def _make_run(root: Path, name: str, method: str, correct: list[bool], frames: list[int], *, errors: int = 0) -> Path:
    """A run directory over the first len(correct) sample questions, with the given outcomes."""
    from eval.dataset import load_questions
    from eval.runner import ResultsWriter

    questions = load_questions(SAMPLE).questions[: len(correct) + errors]
    run_dir = root / name
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"method": method, "model": "m", "frames": max(frames)}))
    writer = ResultsWriter(run_dir / "results.jsonl")
    for index, question in enumerate(questions):
        base = dict(
            question_id=question.question_id, video=question.video, video_type=question.video_type, l2=question.l2,
            l3=question.l3, category=question.category, question=question.question, options=question.options,
            gold=question.answer, method=method, model="m",
        )
        if index >= len(correct):
            writer.append(ResultRow(**base, status="error", error="video not found: x.mp4"))
            continue
        wrong = next(letter for letter in question.letters if letter != question.answer)
        prediction = question.answer if correct[index] else wrong
        writer.append(
            ResultRow(
                **base, prediction=prediction, correct=correct[index], extraction="brackets",
                frames=frames[index], prompt_tokens=500, completion_tokens=20, cost_usd=0.002, latency_s=1.5,
            )
        )
    return run_dir


@pytest.fixture
def two_runs(tmp_path):
    n = 20
    uniform_correct = [i % 2 == 0 for i in range(n)]  # 10 right
    agent_correct = [i % 2 == 0 or i < 8 for i in range(n)]  # the same 10 plus 4 more
    uniform = _make_run(tmp_path, "uniform-32", "uniform", uniform_correct, [32] * n)
    agent = _make_run(tmp_path, "agent", "agent", agent_correct, [8 + (i % 3) * 4 for i in range(n)], errors=2)
    return uniform, agent


def test_paired_comparison_uses_shared_questions_and_mcnemar(two_runs):
    uniform, agent = (load_run(p) for p in two_runs)
    comparison = compare_runs(uniform, agent)
    assert comparison.shared == 20  # the agent's two error rows are not shared
    overall = comparison.rows[0]
    assert (overall.kind, overall.name, overall.n) == ("overall", "Overall", 20)
    assert (overall.only_a, overall.only_b) == (0, 4)
    assert overall.delta == pytest.approx(4 / 20)
    assert overall.p_value == pytest.approx(2 * 0.5**4)  # exact binomial on 4 discordant pairs
    kinds = [row.kind for row in comparison.rows]
    assert kinds.index("category") < kinds.index("l2") < kinds.index("video_type")
    assert sum(r.n for r in comparison.rows if r.kind == "category") == 20


def test_report_files(two_runs, tmp_path, capsys):
    out = tmp_path / "report"
    try:
        main([*map(str, ["report", *two_runs]), "-o", str(out), "--json"])
    except SystemExit as exc:
        assert exc.code in (0, None)
    listing = json.loads(capsys.readouterr().out)
    markdown = Path(listing["markdown"]).read_text(encoding="utf-8")
    html = Path(listing["html"]).read_text(encoding="utf-8")

    # one summary row per run, and the paper's numbers labelled as such
    assert "| uniform-32 | uniform | m | 20 | 0 | 50.0 |" in markdown
    assert "| agent | agent | m | 20 | 2 | 70.0 |" in markdown
    for ref in PAPER_REFERENCE:
        assert f"| {ref['name']} (paper) | {ref['overall']:.1f} |" in markdown
        assert ref["name"] in html
    assert "| o4-mini (paper) | 52.5 | 54.6 | 47.1 |" in markdown
    assert "| Human (paper) | 86.0 | 80.6 | 91.2 |" in markdown
    assert "reported, not run here" in markdown and "reported, not run here" in html

    # per-category tables and the paired comparison
    assert "### agent vs uniform-32 (20 shared questions)" in markdown
    assert "|  | Overall | 20 | 50.0 | 70.0 | +20.0 | 0 | 4 | 0.125 |" in markdown
    assert "Counterintuitive Reasoning" in markdown and "| video type | Animation |" in markdown
    assert html.count('<tr class="reference">') == len(PAPER_REFERENCE)
    assert 'class="comparison"' in html and "+20.0" in html

    # plots: real PNGs, embedded in the HTML, linked from the markdown
    assert len(listing["plots"]) == 2
    for plot in map(Path, listing["plots"]):
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 5000
        assert f"]({plot.name})" in markdown
    assert html.count("data:image/png;base64,") == 2

    report_json = json.loads(Path(listing["json"]).read_text())
    assert report_json["comparisons"][0]["rows"][0]["p_value"] == pytest.approx(0.125)

    # the run browser comes with the report
    assert listing["browser"] and Path(listing["browser"]).is_file()
    link = Path(listing["browser"]).relative_to(out).as_posix()
    assert f"[run browser]({link})" in markdown and f'href="{link}"' in html


def test_report_of_one_run_has_no_comparison(two_runs, tmp_path):
    paths = write_report([two_runs[0]], tmp_path / "one", browser=False)
    markdown = paths.markdown.read_text(encoding="utf-8")
    assert "Paired comparisons" not in markdown and "uniform-32" in markdown


def test_report_rejects_a_folder_without_results(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    try:
        main(["report", str(tmp_path / "empty"), "-o", str(tmp_path / "r")])
        code = 0
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and "no results.jsonl" in err
