"""Scoring: MMR-V official files (the authors' GPT-4o responses) and our results.jsonl; statistics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.results import ResultRow
from eval.score import ScoreError, load_items, read_results_rows, score_file
from eval.stats import bootstrap_ci, mcnemar
from sleuth.cli import main

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


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


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
    assert code == 2 and "no 'gpt-5_raw_response' field" in err and "gpt-4o" in err

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


def test_malformed_results_line_names_the_line(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(_row("q1").model_dump_json() + "\n" + '{"question_id": "q2"}\n', encoding="utf-8")
    with pytest.raises(ScoreError, match="line 2"):
        score_file(path)


# --------------------------------------------------------------------------- statistics


def test_bootstrap_is_reproducible_and_brackets_the_mean():
    outcomes = [True] * 31 + [False] * 30
    first, second = bootstrap_ci(outcomes), bootstrap_ci(outcomes)
    assert first == second
    low, high = first
    assert low < 31 / 61 < high
    # about +-1.96 * sqrt(p(1-p)/n) = +-0.125 for n = 61
    assert 0.09 < (high - low) / 2 < 0.16
    assert bootstrap_ci([]) is None
    assert bootstrap_ci([True, True]) == (1.0, 1.0)


def test_mcnemar_exact():
    a = [True] * 10 + [False] * 6 + [True] * 0
    b = [True] * 10 + [True] * 6
    result = mcnemar(a, b)
    assert (result.only_a, result.only_b, result.both_correct, result.both_wrong) == (0, 6, 10, 0)
    assert result.p_value == pytest.approx(2 * 0.5**6)
    assert result.delta == pytest.approx(6 / 16)
    assert mcnemar([True, False], [True, False]).p_value is None
    with pytest.raises(ValueError):
        mcnemar([True], [True, False])
