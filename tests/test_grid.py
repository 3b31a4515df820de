"""``sleuth grid``: methods, strategies and budgets from one file, run as ordinary eval runs, resumed, and
reported with each agent run beside the uniform run at the nearest frame count."""

from __future__ import annotations

import json

import pytest
import yaml

from eval.grid import GridFile, expand
from eval.matched import BudgetPoint, budget_pairs
from tests.cli_helpers import mmrv_dataset, run_cli
from tests.fake_openai import Call, Text, ToolCalls


def scripted(body: dict):
    """Uniform requests get a letter; the planner looks once and answers; the confidence loop is sure."""
    tools = {t["function"]["name"] for t in body.get("tools") or []}
    if not tools:
        return Text("The answer is [[B]].")
    if "judge_answer" in tools:
        return ToolCalls([Call("judge_answer", {"answer": "B", "confidence": 3, "rationale": "r", "evidence": []})])
    if not any(m["role"] == "tool" for m in body["messages"]):
        return ToolCalls([Call("view_frames", {"timestamps": [1.0, 2.0]})])
    return ToolCalls([Call("answer", {"option": "B", "rationale": "seen", "evidence": [1.0]})])


def test_a_grid_runs_resumes_and_reports_matched_budgets(fake_openai, synthetic_video, tiny_clip_model, tmp_path,
                                                         capsys):
    data, videos = mmrv_dataset(tmp_path, synthetic_video, 2)
    fake_openai.responder = scripted
    grid = {
        "out": str(tmp_path / "grid"),
        "base": {"data": str(data), "videos": str(videos),
                 "backend": {"model": "fake-model", "base_url": fake_openai.base_url, "max_retries": 0},
                 "index": {"clip_model": tiny_clip_model, "random_weights": True, "cache_dir": str(tmp_path / "c")}},
        "grid": [{"method": "uniform", "frames": [2, 16]},
                 {"method": "agent", "strategy": ["planner", "confidence"], "frames": 4,
                  "agent.overview_frames": 1}],
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid), encoding="utf-8")
    code, out, err = run_cli(["grid", str(path), "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    names = [r["name"] for r in summary["runs"]]
    assert names == ["uniform-f2", "uniform-f16", "agent-planner-f4-overview_frames-1",
                     "agent-confidence-f4-overview_frames-1"]
    for name in names:
        rows = (tmp_path / "grid" / name / "results.jsonl").read_text().splitlines()
        assert len(rows) == 2 and (tmp_path / "grid" / "specs" / f"{name}.yaml").is_file()
    report = json.loads((tmp_path / "grid" / "report" / "report.json").read_text())
    matched = {m["agent"].replace("-overview_frames-1", ""): m for m in report["matched_budgets"]}
    # the planner showed 1 + 2 = 3 frames a question: near the 2-frame uniform run, far from 16
    assert matched["agent-planner-f4"]["uniform"] == "uniform-f2" and matched["agent-planner-f4"]["matched"]
    assert matched["agent-planner-f4"]["agent_frames"] == 3.0
    assert matched["agent-confidence-f4"]["agent_frames"] == 1.0 and matched["agent-confidence-f4"]["matched"]
    markdown = (tmp_path / "grid" / "report" / "report.md").read_text()
    assert "## Matched budgets" in markdown and "matched: 3.0 frames shown on average against 2" in markdown

    before = len(fake_openai.requests)  # run again: every run resumes with nothing to do
    code, out, err = run_cli(["grid", str(path), "--json", "--no-report"], capsys)
    assert code == 0 and len(fake_openai.requests) == before, err


def test_a_run_that_cannot_start_stops_the_grid(synthetic_video, tmp_path, capsys):
    data, videos = mmrv_dataset(tmp_path, synthetic_video, 1)
    grid = {"out": str(tmp_path / "grid"), "base": {"data": str(data), "videos": str(videos),
            "backend": {"model": "m", "base_url": "http://127.0.0.1:9/v1", "max_retries": 0}},
            "grid": [{"method": "uniform", "frames": [2, 4]}]}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid), encoding="utf-8")
    code, _, err = run_cli(["grid", str(path)], capsys)
    assert code == 2 and "grid run uniform-f2 could not start" in err and "cannot reach http://127.0.0.1:9/v1" in err
    assert not (tmp_path / "grid" / "uniform-f4").exists()


def test_expansion_names_and_nested_keys(tmp_path):
    grid = GridFile(out=tmp_path, base={"agent": {"max_steps": 4}}, grid=[
        {"method": "agent", "strategy": "planner", "frames": 8, "agent.answer_rule": ["free", "elimination"]},
        {"method": "agent", "strategy": "planner", "frames": 8, "agent.answer_rule": "free"},  # the same run again
    ])
    runs = expand(grid)
    assert [r.name for r in runs] == ["agent-planner-f8-answer_rule-free", "agent-planner-f8-answer_rule-elimination"]
    assert runs[1].values["agent"] == {"max_steps": 4, "answer_rule": "elimination"}
    assert runs[1].values["out"] == str(tmp_path / "agent-planner-f8-answer_rule-elimination")


@pytest.mark.parametrize("mean, nearest, matched", [(7.0, "u8", True), (11.9, "u8", False), (30.0, "u32", True),
                                                    (20.0, "u16", True), (1.0, "u4", False)])
def test_agent_runs_pair_with_the_nearest_uniform_budget(mean, nearest, matched):
    points = [BudgetPoint(f"u{n}", True, float(n)) for n in (4, 8, 16, 32)] + [BudgetPoint("agent", False, mean)]
    (pair,) = budget_pairs(points)
    assert (pair.uniform, pair.matched) == (nearest, matched)
    assert pair.note.startswith("matched" if matched else f"no uniform run near {mean:.1f} frames")
