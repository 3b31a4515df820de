"""Scoring: MMR-V official files (the authors' GPT-4o responses) and our results.jsonl (statistics: test_stats.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.results import ResultRow
from eval.score import ScoreError, load_items, read_results_rows, score_file
from tests.cli_helpers import run_cli

SAMPLE = Path(__file__).parent / "data" / "mmrv_sample_questions.json"


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return json.loads(SAMPLE.read_text(encoding="utf-8"))


@pytest.fixture
def stripped(tmp_path, records) -> Path:
    """The sample with every gpt-4o_response removed: only the raw replies are left."""
    bare = [{k: v for k, v in r.items() if k != "gpt-4o_response"} for r in records]
    path = tmp_path / "gpt-4o_stripped.json"
    path.write_text(json.dumps(bare), encoding="utf-8")
    return path


def _authors_outcomes(records: list[dict]) -> list[bool]:
    """Correctness as the authors' files record it; the one record without a stored answer reads '[F]' (gold F)."""
    outcomes = []
    for record in records:
        gold = record["correctAnswer"].strip()[1]
        stored = record.get("gpt-4o_response", {}).get("final_answer")
        outcomes.append((stored or "F") == gold)
    return outcomes


# --------------------------------------------------------------------------- official files


def test_extraction_from_raw_responses_reproduces_the_authors_answers(stripped, records):
    items, facts = load_items(stripped, model="gpt-4o")
    assert facts["format"] == "official" and len(items) == len(records) == 61
    for index, (item, record) in enumerate(zip(items, records)):
        if "gpt-4o_response" in record:
            assert item.prediction == record["gpt-4o_response"]["final_answer"], index
            assert item.extraction == "brackets"
        else:  # record 3: no stored answer in the authors' file; its reply begins "[F] It uses ..."
            assert index == 3 and item.prediction == "F" and item.extraction == "letter"
    # the mistakes the authors annotated are exactly the ones the extraction finds
    for item, record in zip(items, records):
        if "error_info" in record:
            assert item.prediction == record["error_info"]["actual"] and not item.correct


def test_score_cli_gives_the_authors_accuracy(stripped, records, capsys):
    code, out, _ = run_cli(["score", str(stripped), "--model", "gpt-4o", "--json"], capsys)
    assert code == 0
    card = json.loads(out)
    overall = next(g for g in card["groups"] if g["kind"] == "overall")
    expected = _authors_outcomes(records)
    assert overall["n"] == 61 and overall["correct"] == sum(expected) == 31
    assert overall["accuracy"] == pytest.approx(31 / 61)
    assert overall["ci_low"] < overall["accuracy"] < overall["ci_high"]
    assert overall["extraction_failures"] == 0
    assert card["extraction_rules"] == {"brackets": 60, "letter": 1}

    # the stored answers, where present, give the same score
    stored = score_file(SAMPLE, model="gpt-4o")
    assert stored.overall.correct == 31 and stored.extraction_rules == {"letter": 1, "stored": 60}

    groups = {(g["kind"], g["name"]): g for g in card["groups"]}
    implicit = [r for r in records if r["abilityType_L2"] in (
        "Metaphor Understanding", "Theme Understanding", "Emotion Recognition", "Implicit Symbol", "Comment Matching")]
    assert groups[("category", "Implicit")]["n"] == len(implicit) == 20
    assert groups[("category", "Explicit")]["n"] == 41
    assert groups[("video_type", "Art")]["n"] == 6  # "art" and "Art" counted together
    assert groups[("video_type", "Movie")]["n"] == 11
    assert sum(g["n"] for (kind, _), g in groups.items() if kind == "l2") == 61
    assert card["per_question"]["cost_usd"] is None  # the official format records no cost


def test_last_bracket_extraction_reads_the_real_answers(stripped):
    official = score_file(stripped, model="gpt-4o")
    last = score_file(stripped, model="gpt-4o", extraction="last")
    # four of the eight echoed-instruction replies were right after all
    assert last.overall.correct - official.overall.correct == 4


def test_score_cli_table_and_bad_inputs(stripped, tmp_path, capsys):
    code, out, _ = run_cli(["score", str(stripped), "--model", "gpt-4o"], capsys)
    assert code == 0 and "Overall" in out and "Implicit" in out and "Counterintuitive Reasoning" in out

    code, _, err = run_cli(["score", str(stripped), "--model", "gpt-5"], capsys)
    assert code == 2 and "no answers of model 'gpt-5' in this file (models found: gpt-4o)" in err

    broken = tmp_path / "broken.json"
    broken.write_text("[{", encoding="utf-8")
    code, _, err = run_cli(["score", str(broken)], capsys)
    assert code == 2 and err.startswith("error: ") and "not valid JSON" in err and len(err.strip().splitlines()) == 1

    code, _, err = run_cli(["score", str(tmp_path / "absent.jsonl")], capsys)
    assert code == 2 and "no such results file" in err


def test_model_is_detected_when_unique(stripped):
    card = score_file(stripped)
    assert card.model == "gpt-4o" and card.overall.n == 61


# --------------------------------------------------------------------------- our results


def _row(qid: str, **fields) -> ResultRow:
    base = dict(question_id=qid, video=f"{qid}.mp4", method="uniform", model="m", gold="A", l2="Causal Reasoning",
                category="explicit", video_type="Life")
    base.update(fields)
    return ResultRow(**base)


def test_results_rows_supersede_and_errors_stay_out_of_accuracy(tmp_path):
    rows = [
        _row("q1", status="error", error="video not found"),
        _row("q2", prediction="A", correct=True, frames=32, prompt_tokens=100, completion_tokens=5, cost_usd=0.01, latency_s=2.0),
        _row("q3", prediction=None, extraction="none", frames=32, prompt_tokens=100, completion_tokens=5, cost_usd=0.01),
        _row("q4", status="error", error="server down"),
        _row("q1", prediction="A", correct=True, frames=32, prompt_tokens=100, completion_tokens=5, cost_usd=0.01),  # retried
    ]
    path = tmp_path / "results.jsonl"
    path.write_text("".join(r.model_dump_json() + "\n" for r in rows), encoding="utf-8")
    latest = read_results_rows(path)
    assert [r.question_id for r in latest] == ["q2", "q3", "q4", "q1"]
    card = score_file(tmp_path)  # a run directory works too
    assert card.rows == 4 and card.errors == 1
    assert card.overall.n == 3 and card.overall.correct == 2 and card.overall.extraction_failures == 1
    assert card.per_question.frames == 32 and card.per_question.tokens == 105
    assert card.per_question.total_cost_usd == pytest.approx(0.03)


def _write_results(path: Path, lines: list[str], *, final_newline: bool = True) -> Path:
    path.write_text("\n".join(lines) + ("\n" if final_newline else ""), encoding="utf-8")
    return path


def test_corrupt_lines_are_skipped_listed_and_warned_about(tmp_path, capsys):
    good = [_row(q, prediction="A", correct=True).model_dump_json() for q in ("q1", "q3")]
    path = _write_results(tmp_path / "results.jsonl", [
        "{not json",  # the first line: the format is still recognised from the others
        good[0],
        '{"question_id": "q2"}',  # JSON, but not a result row
        good[1],
        '{"question_id": "q4", "vid',  # a killed run's half-written last line
    ], final_newline=False)

    card = score_file(path)
    assert card.rows == card.overall.n == card.overall.correct == 2
    assert [line.split(": ", 1)[1] for line in card.corrupt_lines] == [
        "line 1: not valid JSON (Expecting property name enclosed in double quotes)",
        "line 3: not a result row (video: Field required)",
        "line 5: not valid JSON (Unterminated string starting at); cut short, "
        "the run was probably stopped while writing it",
    ]

    code, out, _ = run_cli(["score", str(path)], capsys)
    assert code == 0 and "Overall" in out
    assert "3 unreadable lines in the results file were skipped and are not scored:" in out
    assert "line 1: not valid JSON" in out and "line 5: not valid JSON" in out

    code, out, err = run_cli(["score", str(path), "--json"], capsys)
    assert code == 0 and json.loads(out)["corrupt_lines"] == card.corrupt_lines
    assert "3 unreadable lines in the results file were skipped" in err  # stdout stays pure JSON

    # the strict reader names the first bad line instead
    with pytest.raises(ScoreError, match="line 1"):
        read_results_rows(path)


def test_a_file_with_no_readable_row_is_refused(tmp_path):
    path = _write_results(tmp_path / "results.jsonl", ["{oops", '{"question_id": "q1", "method": "uniform"}'])
    with pytest.raises(ScoreError, match="no readable result rows .2 unreadable lines; the first: .*line 1"):
        score_file(path)


def test_a_reply_with_a_unicode_line_separator_stays_one_row(tmp_path):
    # JSON leaves U+2028 raw inside strings; it must not split the row in two
    row = _row("q1", prediction="A", correct=True, raw_response="first\u2028second\x85third")
    card = score_file(_write_results(tmp_path / "results.jsonl", [row.model_dump_json()]))
    assert card.overall.correct == 1 and card.corrupt_lines == []


def test_official_jsonl_skips_and_lists_a_corrupt_line(tmp_path, records):
    lines = [json.dumps(r) for r in records]
    lines[10] = lines[10][:40]
    card = score_file(_write_results(tmp_path / "official.jsonl", lines), model="gpt-4o")
    assert card.format == "official" and card.overall.n == 60
    assert len(card.corrupt_lines) == 1 and "line 11: not valid JSON" in card.corrupt_lines[0]


def test_dataset_rows_skipped_by_the_run_are_shown(tmp_path, capsys):
    skipped = [f"mmrv.json: row {i} (question q{i}): no video" for i in range(5)]
    (tmp_path / "config.json").write_text(json.dumps({"method": "uniform", "invalid_rows": skipped}))
    _write_results(tmp_path / "results.jsonl", [_row("q9", prediction="A", correct=True).model_dump_json()])

    assert score_file(tmp_path).invalid_rows == skipped
    assert score_file(tmp_path / "results.jsonl").invalid_rows == skipped  # the file, not only its folder

    code, out, _ = run_cli(["score", str(tmp_path)], capsys)
    assert code == 0
    assert "5 dataset records were skipped as invalid and are not scored:" in out
    assert skipped[0] in out and skipped[2] in out and skipped[3] not in out
    assert "... and 2 more (all of them: --json)" in out

    (tmp_path / "config.json").write_text("{broken")
    with pytest.raises(ScoreError, match="config.json: unreadable run configuration"):
        score_file(tmp_path)


def test_gold_not_in_options_stays_in_the_accuracy(tmp_path, capsys):
    flag = ["gold_not_in_options"]
    rows = [
        _row("q1", prediction="A", correct=True),
        _row("q2", prediction="B", correct=False),
        _row("q3", gold="E", prediction="E", correct=True, flags=flag),  # scored as the official script: equal letters
        _row("q4", gold="E", prediction="A", correct=False, flags=flag),
        _row("q5", gold="E", status="error", error="video not found", flags=flag),  # not scored: not counted
    ]
    path = _write_results(tmp_path / "results.jsonl", [r.model_dump_json() for r in rows])
    card = score_file(path)
    assert (card.overall.n, card.overall.correct) == (4, 2)
    assert card.flags == {"gold_not_in_options": 2}
    assert [n.text for n in card.data_notes()] == [
        "2 questions' gold answers are not among their options; kept, as the official script does"
    ]

    code, out, _ = run_cli(["score", str(path)], capsys)
    assert code == 0 and "2 questions' gold answers are not among their options; kept, as the official" in out

    path = _write_results(tmp_path / "results.jsonl", [rows[2].model_dump_json()])
    (note,) = score_file(path).data_notes()
    assert note.text == "1 question's gold answer is not among its options; kept, as the official script does"


def test_intervals_are_wilson_and_never_collapse(tmp_path):
    path = _write_results(tmp_path / "results.jsonl", [_row("q1", prediction="A", correct=True).model_dump_json()])
    overall = score_file(path).overall
    assert overall.accuracy == 1.0
    assert overall.ci_low == pytest.approx(0.2065, abs=1e-4) and overall.ci_high == 1.0


def test_official_records_carry_the_gold_not_in_options_flag(tmp_path, records):
    odd = [dict(r) for r in records[:3]]
    odd[0]["correctAnswer"] = "(K)"  # like MMR-V question 268: gold K, options A-J
    odd[0]["gpt-4o_response"] = {"final_answer": "K"}
    path = tmp_path / "official.json"
    path.write_text(json.dumps(odd), encoding="utf-8")
    card = score_file(path, model="gpt-4o")
    assert card.overall.n == 3 and card.flags == {"gold_not_in_options": 1}
    items, _ = load_items(path, model="gpt-4o")
    assert items[0].correct and items[0].flags == ["gold_not_in_options"]


def test_answers_citing_unseen_moments_are_counted(tmp_path):
    path = tmp_path / "results.jsonl"
    rows = [ResultRow(question_id=f"q{i}", video="v.mp4", method="agent", gold="A", prediction="A", correct=True,
                      unseen_evidence=n) for i, n in enumerate((0, 2, 1))]
    path.write_text("".join(r.model_dump_json() + "\n" for r in rows), encoding="utf-8")
    card = score_file(path)
    assert card.unseen_evidence == 2  # two answers, whatever the number of moments each cites
    assert [note.text for note in card.data_notes()] == ["2 answers cite moments no model was shown (see their traces)"]


def test_forced_answers_are_counted_and_still_scored(tmp_path):
    path = tmp_path / "results.jsonl"
    reasons = ("answered", "budget_exhausted", None, "budget_exhausted")
    rows = [ResultRow(question_id=f"q{i}", video="v.mp4", method="agent", gold="A", prediction="A", correct=True,
                      answer_reason=reason) for i, reason in enumerate(reasons)]
    rows.append(ResultRow(question_id="q9", video="v.mp4", method="agent", gold="A", status="error",
                          error="server down", answer_reason="budget_exhausted"))  # an error row is not an answer
    path.write_text("".join(r.model_dump_json() + "\n" for r in rows), encoding="utf-8")
    card = score_file(path)
    assert card.forced_answers == 2 and card.overall.n == 4 and card.overall.accuracy == 1.0
    assert "2 answers were forced when a budget ran out (scored as given)" in [n.text for n in card.data_notes()]
