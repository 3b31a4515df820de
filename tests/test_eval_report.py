"""``sleuth report``: per-category tables, paired comparison with McNemar, paper reference rows, plots."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from eval.benchmarks.mmr_v import MMRV
from eval.report import compare_runs, load_run, write_report
from eval.results import ResultRow
from sleuth.cli import main

SAMPLE = Path(__file__).parent / "data" / "mmrv_sample_questions.json"


def _make_run(root: Path, name: str, method: str, correct: list[bool], frames: list[int], *, errors: int = 0) -> Path:
    """A run directory over the first len(correct) sample questions, with the given outcomes."""
    from eval.benchmarks.mmr_v import load_questions
    from eval.runner import ResultsWriter

    questions = load_questions(SAMPLE).questions[: len(correct) + errors]
    run_dir = root / name
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"method": method, "model": "m", "frames": max(frames)}))
    writer = ResultsWriter(run_dir / "results.jsonl")
    for index, question in enumerate(questions):
        base = dict(
            question_id=question.question_id, video=question.video, **question.groups,
            question=question.question, options=question.options,
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

    # the headline: the difference, its paired 95% interval and McNemar's p (4 discordant, all for agent)
    headline = "agent vs uniform-32: +20.0 points (95% CI +2.5 to +37.5) on 20 shared questions; McNemar p = 0.125."
    assert f"**{headline}**" in markdown and headline in html

    # one summary row per run, and the paper's numbers labelled as such
    assert "| uniform-32 | uniform | m | 20 | 0 | 50.0 |" in markdown
    assert "| agent | agent | m | 20 | 2 | 70.0 |" in markdown
    for ref in MMRV.references:
        assert f"| {ref.name} (paper) | {ref.overall:.1f} |" in markdown
        assert ref.name in html
    assert "| o4-mini (paper) | 52.5 | 54.6 | 47.1 |" in markdown
    assert "| Human (paper) | 86.0 | 80.6 | 91.2 |" in markdown
    assert "reported, not run here" in markdown and "reported, not run here" in html

    # per-category tables and the paired comparison
    assert "### agent vs uniform-32 (20 shared questions)" in markdown
    assert "|  | Overall | 20 | 50.0 | 70.0 | +20.0 | 0 | 4 | 0.125 |" in markdown
    assert "Counterintuitive Reasoning" in markdown and "| video type | Animation |" in markdown
    assert html.count('<tr class="reference">') == len(MMRV.references)
    assert 'class="comparison"' in html and "+20.0" in html

    # plots: real PNGs, embedded in the HTML, linked from the markdown
    # one per grouping MMR-V defines beyond the headline one (ability type, video type), not only L2
    assert [Path(p).name for p in listing["plots"]] == [
        "accuracy_by_category.png", "accuracy_by_l2.png", "accuracy_by_video_type.png", "accuracy_vs_frames.png"]
    for plot in map(Path, listing["plots"]):
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 5000
        assert f"]({plot.name})" in markdown
    assert html.count("data:image/png;base64,") == 4

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


class _RenderedTables(HTMLParser):
    """Each table's rows as lists of cell texts, and every tag with its attributes, from rendered HTML."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _render_markdown(markdown: str) -> _RenderedTables:
    from markdown_it import MarkdownIt  # comes with rich

    parser = _RenderedTables()
    parser.feed(MarkdownIt("commonmark").enable("table").render(markdown))
    return parser


def test_report_states_skipped_lines_skipped_records_and_flagged_questions(tmp_path):
    run = _make_run(tmp_path, "agent", "agent", [True, False, True], [8, 8, 8])
    results = run / "results.jsonl"
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    rows[2]["flags"] = ["gold_not_in_options"]
    torn = '{"question_id": "q99", "vid'
    results.write_text(f"{json.dumps(rows[0])}\n{{oops\n{json.dumps(rows[1])}\n{json.dumps(rows[2])}\n{torn}")
    config = json.loads((run / "config.json").read_text())
    skipped = ["mmrv.json: row 7 (question 12): no options", "mmrv.json: row 9: answer 'Z' is not a letter"]
    (run / "config.json").write_text(json.dumps({**config, "invalid_rows": skipped}))

    paths = write_report([run], tmp_path / "report", browser=False)
    markdown = paths.markdown.read_text(encoding="utf-8")
    html = paths.html.read_text(encoding="utf-8")

    assert "| agent | agent | m | 3 | 0 | 66.7 |" in markdown  # the flagged question stays in n
    notes = markdown[markdown.index("### Data notes"):markdown.index("### Reference")]
    assert "- 2 unreadable lines in the results file were skipped and are not scored:" in notes
    assert "results.jsonl: line 2: not valid JSON" in notes
    assert "results.jsonl: line 5: not valid JSON" in notes and "cut short" in notes
    assert "- 2 dataset records were skipped as invalid and are not scored:" in notes
    assert all(f"  - {line}" in notes for line in skipped)
    assert "- 1 question's gold answer is not among its options; kept, as the official script does." in notes
    for text in ("2 unreadable lines in the results file", "results.jsonl: line 5", "row 9: answer &#39;Z&#39;",
                 "1 question&#39;s gold answer is not among its options"):
        assert text in html

    score = json.loads(paths.json.read_text())["runs"][0]["score"]
    assert len(score["corrupt_lines"]) == 2 and score["invalid_rows"] == skipped
    assert score["flags"] == {"gold_not_in_options": 1}

    # a clean run has no data notes at all
    clean = write_report([_make_run(tmp_path, "clean", "uniform", [True], [8])], tmp_path / "r2", browser=False)
    assert "Data notes" not in clean.markdown.read_text() and "Data notes" not in clean.html.read_text()


def test_dataset_and_model_text_is_escaped(tmp_path):
    payload = "<img src=x onerror=alert(1)> | pipe"
    run = _make_run(tmp_path, "run", "uniform", [True, False], [8, 8], errors=1)
    results = run / "results.jsonl"
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    for row in rows:
        row.update(question=payload, video_type=payload, l2=f"{payload} \\| back", model="m<script>|")
    rows[-1]["error"] = payload
    results.write_text("".join(json.dumps(row) + "\n" for row in rows))
    (run / "config.json").write_text(json.dumps({"method": "uniform", "invalid_rows": [f"row 3: {payload}"]}))

    paths = write_report([run], tmp_path / "report")
    markdown = paths.markdown.read_text(encoding="utf-8")
    assert "<img" not in markdown and "<script" not in markdown

    # rendered, every value reads as itself and every table row keeps its columns
    rendered = _render_markdown(markdown)
    assert [a["src"] for t, a in rendered.tags if t == "img"] == [
        "accuracy_by_category.png", "accuracy_by_l2.png", "accuracy_by_video_type.png", "accuracy_vs_frames.png"]
    assert not any(t == "script" or "onerror" in a for t, a in rendered.tags)
    runs, _reference, categories = rendered.tables
    assert {len(row) for row in runs} == {13} and {len(row) for row in categories} == {7}
    assert runs[1][2] == "m<script>|"
    assert ["ability (L2)", f"{payload} \\| back", "2"] == categories[4][:3]
    assert ["video type", payload, "2"] == categories[5][:3]
    assert f"row 3: {payload}" in markdown.replace("&lt;", "<").replace("&gt;", ">").replace("\\|", "|")

    # the HTML report and the run browser autoescape
    html = paths.html.read_text(encoding="utf-8")
    assert "<img src=x" not in html and "<script>" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    for page in paths.browser.parent.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert "<img src=x" not in text and "m<script>" not in text, page
    assert "&lt;img src=x onerror=alert(1)&gt; | pipe" in paths.browser.read_text(encoding="utf-8")


def test_an_official_result_file_is_a_run_beside_ours(two_runs, tmp_path, capsys):
    """The MMR-V authors' published GPT-4o answers, set beside a run of ours on the same questions."""
    uniform, _ = two_runs
    out = tmp_path / "report"
    try:
        main(["report", str(uniform), str(SAMPLE), "-o", str(out), "--json"])
    except SystemExit as exc:
        assert exc.code in (0, None)
    listing = json.loads(capsys.readouterr().out)
    markdown = Path(listing["markdown"]).read_text(encoding="utf-8")
    official = load_run(SAMPLE)
    assert official.scorecard.format == "official" and official.scorecard.model == "gpt-4o"
    assert f"| mmrv_sample_questions | official file | gpt-4o | {official.scorecard.overall.n} |" in markdown
    assert "mmrv_sample_questions vs uniform-32:" in markdown and "on 20 shared questions" in markdown
    assert listing["browser"] is not None  # our run keeps its browser; the file has no traces to show

