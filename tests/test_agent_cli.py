"""``sleuth ask`` and ``sleuth demo`` through the real command line entry point."""

from __future__ import annotations

import json

import pytest

from agent.demo import load_example
from agent.trace import Trace
from sleuth.cli import main
from tests.fake_openai import Call, Fault, Text, ToolCalls


def sleuth(args: list[str], capsys) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def model_flags(fake_openai) -> list[str]:
    return ["--model", "fake-model", "--base-url", fake_openai.base_url, "--api-key", "sk-test", "--max-retries", "0"]


def index_flags(tiny_clip_model, tmp_path) -> list[str]:
    return ["--clip-model", tiny_clip_model, "--random-weights", "--cache-dir", str(tmp_path / "cache")]


def test_ask_prints_the_answer_evidence_and_trace_as_json(fake_openai, synthetic_video, tiny_clip_model, tmp_path, capsys):
    fake_openai.enqueue(
        ToolCalls([Call("search_frames", {"query": "white bands"})], content="Searching."),
        ToolCalls([Call("answer", {"option": "B", "rationale": "bands", "evidence": [1.3]})]),
    )
    trace_path = tmp_path / "out" / "trace.json"
    code, out, err = sleuth(
        ["ask", str(synthetic_video), "How many bands?", "--option", "(A) none", "--option", "(B) some",
         "--out", str(trace_path), "--gold", "B", "--overview-frames", "4", "--frames", "12", "--json",
         *model_flags(fake_openai), *index_flags(tiny_clip_model, tmp_path)],
        capsys,
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["answer"] == "B" and result["option"] == "(B) some" and result["correct"] is True
    assert result["evidence"] == [1.3] and result["trace"] == str(trace_path)
    assert result["labels"] == ["random-weights"] and result["totals"]["frames_shown"] == 4
    trace = Trace.load(trace_path)
    assert trace.answer.option == "B" and trace.settings["agent"]["max_frames"] == 12
    assert trace.models["clip"].startswith(tiny_clip_model)
    # live progress went to stderr, one line per step
    assert "step 1" in err and "search_frames" in err


def test_ask_human_output(fake_openai, synthetic_video, tiny_clip_model, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fake_openai.enqueue(ToolCalls([Call("answer", {"option": "A", "rationale": "dark frames", "evidence": [0.0]})]))
    code, out, err = sleuth(
        ["ask", str(synthetic_video), "How many bands?", "--option", "(A) none", "--option", "(B) some", "--id", "my q/1",
         "--quiet", *model_flags(fake_openai), *index_flags(tiny_clip_model, tmp_path)],
        capsys,
    )
    assert code == 0, err
    assert "answer: (A) none" in out and "rationale: dark frames" in out and "evidence: 0.00s" in out
    assert "trace: sleuth-traces/my_q_1.json" in out and "random-weights" in out
    assert Trace.load(tmp_path / "sleuth-traces" / "my_q_1.json").question_id == "my q/1"
    assert err == ""


def test_ask_with_a_failing_server_writes_the_trace_and_exits_1(fake_openai, synthetic_video, tiny_clip_model,
                                                                 tmp_path, capsys):
    fake_openai.enqueue(Fault.server_error(message="overloaded"))
    trace_path = tmp_path / "t.json"
    code, out, err = sleuth(
        ["ask", str(synthetic_video), "Q?", "--option", "(A) x", "--option", "(B) y", "--out", str(trace_path), "--quiet",
         *model_flags(fake_openai), *index_flags(tiny_clip_model, tmp_path)],
        capsys,
    )
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("error: the planner model failed:") and "overloaded" in err
    assert Trace.load(trace_path).answer.reason == "error"


@pytest.mark.parametrize(
    "args, message",
    [
        (["ask", "{missing}", "Q?", "--option", "(A) x"], "error: video not found:"),
        (["ask", "{video}", "Q?", "--option", "(A) x", "--gold", "C"], "error: gold answer 'C' is not one of the letters A"),
        (["ask", "{video}", "Q?", "--option", "(A) x", "--option", "(A) y"], "error: option letters repeat: A, A"),
    ],
)
def test_ask_bad_input_is_one_line(args, message, fake_openai, synthetic_video, tiny_clip_model, tmp_path, capsys):
    args = [a.format(missing=tmp_path / "missing.mp4", video=synthetic_video) for a in args]
    code, out, err = sleuth([*args, *model_flags(fake_openai), *index_flags(tiny_clip_model, tmp_path)], capsys)
    assert code == 2 and err.startswith(message) and len(err.strip().splitlines()) == 1
    assert fake_openai.requests == []


def test_ask_without_a_model_says_how_to_set_one(synthetic_video, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SLEUTH_MODEL", raising=False)
    code, out, err = sleuth(["ask", str(synthetic_video), "Q?", "--option", "(A) x"], capsys)
    assert code == 2 and err.strip() == "error: no model given: pass --model (or set SLEUTH_MODEL)"


def test_the_bundled_example_is_a_valid_question():
    example = load_example()
    assert example.video.is_file() and example.video.name == "bigbuckbunny.mp4"
    assert len(example.options) >= 4 and example.options[0].startswith("(A) ")
    assert example.gold and example.question_id


def test_demo_with_a_configured_model(fake_openai, tiny_clip_model, tmp_path, capsys):
    example = load_example()
    fake_openai.responder = lambda body: (
        ToolCalls([Call("view_frames", {"timestamps": [2.0]})]) if len(body["messages"]) == 2
        else ToolCalls([Call("answer", {"option": "D", "rationale": "yawning", "evidence": [2.0]})])
    )
    trace_path = tmp_path / "demo.json"
    code, out, err = sleuth(["demo", "--out", str(trace_path), "--json", "--quiet", *model_flags(fake_openai),
                             *index_flags(tiny_clip_model, tmp_path)], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["answer"] == "D" and result["gold"] == "D" and result["correct"] is True
    assert "offline-demo" not in result["labels"] and "OFFLINE" not in err
    trace = Trace.load(trace_path)
    assert trace.question == example.question and trace.duration_s == pytest.approx(5.28, abs=0.1)
    assert all(0 <= f.t <= trace.duration_s for f in trace.frames())
    assert len(fake_openai.requests) == 2


@pytest.mark.slow
def test_demo_offline_runs_end_to_end_with_smollm2(tmp_path, capsys, monkeypatch):
    """No model configured: random CLIP weights and SmolLM2-135M on this machine, clearly labelled."""
    monkeypatch.delenv("SLEUTH_MODEL", raising=False)
    trace_path = tmp_path / "offline.json"
    code, out, err = sleuth(["demo", "--out", str(trace_path), "--json", "--quiet", "--device", "cpu",
                             "--cache-dir", str(tmp_path / "cache")], capsys)
    assert code == 0, err
    assert "OFFLINE DEMO" in err
    result = json.loads(out)
    assert {"offline-demo", "random-weights"} <= set(result["labels"])
    assert result["reason"] in ("answered", "budget_exhausted", "no_answer", "invalid_letter")
    trace = Trace.load(trace_path)
    assert trace.models["planner"] == "smollm2" and trace.models["clip"].endswith("random-weights")
    assert trace.totals.model_calls >= 2 and trace.totals.frames_shown <= 8
    assert any(n.kind == "thought" and n.text.strip() for n in trace.nodes)


def test_ask_with_a_perception_model_delegates_the_looking(fake_openai, synthetic_video, tiny_clip_model, tmp_path,
                                                           capsys):
    def script(body):
        if body["model"] == "vision-model":
            return Text("Three white bands.")
        if not any(m["role"] == "tool" for m in body["messages"]):
            return ToolCalls([Call("view_frames", {"timestamps": [0.7], "question": "How many white bands?"})])
        return ToolCalls([Call("answer", {"option": "B", "rationale": "three bands", "evidence": [0.7]})])

    fake_openai.responder = script
    code, out, err = sleuth(
        ["ask", str(synthetic_video), "How many bands?", "--option", "(A) none", "--option", "(B) some", "--json", "--quiet",
         "--perception-model", "vision-model", "--overview-frames", "2", "--out", str(tmp_path / "t.json"),
         *model_flags(fake_openai), *index_flags(tiny_clip_model, tmp_path)],
        capsys,
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["answer"] == "B" and result["models"]["perception"] == "vision-model"
    assert [body["model"] for body in fake_openai.requests] == ["vision-model", "fake-model", "vision-model", "fake-model"]
    assert Trace.load(tmp_path / "t.json").settings["agent"]["perception"] == "delegated"
