"""Every strategy through ``sleuth eval`` on real MMR-V records against the scripted server: rows,
traces holding each strategy's own steps, resume, and ``--agent-option``."""

from __future__ import annotations

import json
import re

import pytest

from agent.trace import Trace
from eval.views.html import render_trace_html
from tests.cli_helpers import assert_resumes_with_nothing_to_do, mmrv_dataset, run_cli
from tests.fake_openai import Call, Text, ToolCalls

def scripted(body: dict):
    """One model for every strategy: it captions, judges options, rates its confidence and answers."""
    tools = {t["function"]["name"] for t in body.get("tools") or []}
    said = [m for m in body["messages"] if m["role"] == "tool"]
    if not tools:
        return Text("a person walks through a bright room")
    if "judge_answer" in tools:
        if not said:
            return ToolCalls([Call("judge_answer", {"answer": "A", "confidence": 2, "rationale": "not sure",
                                                    "evidence": [0.0], "query": "a bright room", "start": 0.5,
                                                    "end": 3.5})])
        return ToolCalls([Call("judge_answer", {"answer": "B", "confidence": 3, "rationale": "seen",
                                                "evidence": [0.0]})])
    if not said:
        return ToolCalls([Call("judge_options", {"verdicts": [{"option": "A", "verdict": "refuted",
                                                               "times": [0.0]}]})])
    return ToolCalls([Call("answer", {"option": "B", "rationale": "A was refuted", "evidence": [0.0]})])


@pytest.fixture
def mmrv(tmp_path, synthetic_video):
    return mmrv_dataset(tmp_path, synthetic_video, 2)


@pytest.mark.parametrize("strategy, own_step, on_page", [
    ("planner", lambda t: [v.option for n in t.nodes for v in n.verdicts] == ["A"],
     ['data-option="A" data-verdict="refuted"']),
    ("captions", lambda t: [len(n.captions) for n in t.nodes if n.kind == "captions"] == [2],
     ['<ol class="captions">', "a person walks through a bright room"]),
    ("confidence", lambda t: [n.confidence for n in t.nodes if n.kind == "judgement"] == [2, 3],
     ['data-confidence="2"', 'data-confidence="3"']),
])
def test_each_strategy_runs_end_to_end_and_resumes(strategy, own_step, on_page, mmrv, fake_openai, tiny_clip_model, tmp_path,
                                                    capsys):
    data, videos = mmrv
    fake_openai.responder = scripted
    out = tmp_path / strategy
    args = ["eval", "--data", str(data), "--videos", str(videos), "--method", "agent", "--strategy", strategy,
            "--out", str(out), "--model", "fake-model", "--base-url", fake_openai.base_url, "--api-key", "sk-x",
            "--frames", "12", "--max-retries", "0", "--clip-model", tiny_clip_model, "--random-weights",
            "--cache-dir", str(tmp_path / "cache"), "--no-progress",
            "--agent-option", "caption_segments=2", "--agent-option", "answer_rule=elimination"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and {r["prediction"] for r in rows} == {"B"}
    assert all(r["frames"] <= 12 and r["pixels"] > 0 for r in rows)
    spec = json.loads((out / "spec.json").read_text())
    assert spec["strategy"] == strategy and spec["agent"]["answer_rule"] == "elimination"
    for row in rows:
        trace = Trace.load(out / row["trace"])
        assert own_step(trace), [n.kind for n in trace.nodes]
        assert trace.settings["agent"]["caption_segments"] == 2
        page = render_trace_html(trace)  # the trace page renders the strategy's own steps
        assert all(marker in page for marker in on_page), strategy
    assert_resumes_with_nothing_to_do(args, capsys, fake_openai)


def test_an_unknown_agent_option_is_one_clear_line(mmrv, fake_openai, tmp_path, capsys):
    data, videos = mmrv
    code, _, err = run_cli(["eval", "--data", str(data), "--videos", str(videos), "--method", "agent",
                            "--model", "m", "--base-url", fake_openai.base_url, "--agent-option", "rounds=2",
                            "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and re.search(r"--agent-option 'rounds=2': expected KEY=VALUE with KEY one of: .*answer_rule", err)
