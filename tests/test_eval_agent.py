"""``sleuth eval --method agent``: the agent behind the same runner, with traces in the run directory."""

from __future__ import annotations

import json

from agent.trace import Trace
from eval.results import RESULTS_FILE
from sleuth.cli import main
from tests.cli_helpers import mmrv_sample
from tests.fake_openai import Call, ToolCalls


def test_agent_method_writes_rows_and_traces(fake_openai, synthetic_video, tiny_clip_model, tmp_path, capsys):
    data, videos, records = mmrv_sample(tmp_path, synthetic_video, 3)  # two videos, three questions

    def agent_script(body):
        # search once, then answer "B" citing the first hit
        tool_results = [m for m in body["messages"] if m.get("role") == "tool"]
        if not tool_results:
            return ToolCalls([Call("search_frames", {"query": "a bright scene", "k": 2})])
        return ToolCalls([Call("answer", {"option": "B", "rationale": "the bands say so", "evidence": [0.5]})])

    fake_openai.responder = agent_script
    run_dir = tmp_path / "agent-run"
    args = [
        "eval", "--data", str(data), "--videos", str(videos), "--method", "agent", "--out", str(run_dir),
        "--model", "fake-model", "--base-url", fake_openai.base_url, "--api-key", "sk-agent-secret",
        "--frames", "12", "--overview-frames", "4", "--max-steps", "3", "--max-retries", "0",
        "--clip-model", tiny_clip_model, "--random-weights", "--cache-dir", str(tmp_path / "cache"),
        "--concurrency", "2", "--no-progress", "--json",
    ]
    try:
        main(args)
    except SystemExit as exc:
        assert exc.code in (0, None), capsys.readouterr().err
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["ok"] == 3 and summary["errors"] == 0, summary

    rows = [json.loads(line) for line in (run_dir / RESULTS_FILE).read_text().splitlines()]
    assert len(rows) == 3
    for row, record in zip(sorted(rows, key=lambda r: r["question"]), sorted(records, key=lambda r: r["question"])):
        assert row["method"] == "agent" and row["prediction"] == "B" and row["extraction"] == "tool"
        assert row["correct"] == (record["correctAnswer"].strip() == "(B)")
        assert 4 <= row["frames"] <= 12
        assert row["fake-model_response"] == {"final_answer": "B"}
        assert row["fake-model_raw_response"].endswith("[[B]]")
        trace = Trace.load(run_dir / row["trace"])
        assert trace.question_id == row["question_id"] and trace.answer.option == "B"
        assert "random-weights" in trace.labels
        assert any(node.tool == "search_frames" for node in trace.nodes)

    config = json.loads((run_dir / "config.json").read_text())
    assert config["method"] == "agent" and config["frames"] == 12
    assert config["method_settings"]["agent"]["overview_frames"] == 4
    assert config["models"]["clip"].startswith(tiny_clip_model)
    assert "random-weights" in config["index"]["labels"]
    assert any(name.startswith("agent_") for name in config["prompts"])
    assert "sk-agent-secret" not in (run_dir / "config.json").read_text()
    assert config["retrieval"] == {"clip": config["models"]["clip"], "fps": 1.0, "max_frames": 1024, "frame_fit": "crop"}

    # Resuming with another frame index would mix two retrievers in one run.
    with_pad = [*args, "--frame-fit", "pad"]
    try:
        main(with_pad)
    except SystemExit as exc:
        assert exc.code == 2
    err = capsys.readouterr().err
    assert "retrieval.frame_fit='crop', not 'pad'" in err and "another --out" in err
