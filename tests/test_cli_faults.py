"""``sleuth eval`` under injected faults, through the real command and the real ``openai`` client.

Each test breaks one thing (the server, the weights, the cache, a video, the
dataset) and checks the outcome a researcher relies on: the run fails fast
when it cannot start, every row has the right status, no failure is recorded
as an answer, the exit code says what happened, nothing hangs past its
deadline and no credential leaks. Signals and full disks are in
``test_run_signals.py``.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest

from agent.trace import Trace
from eval.results import RESULTS_FILE
from tests.cli_helpers import run_cli
from tests.fake_openai import Call, Fault, Text, ToolCalls

SAMPLE = Path(__file__).parent / "data" / "mmrv_sample_questions.json"


# --------------------------------------------------------------------------- setup


@pytest.fixture
def dataset(tmp_path, synthetic_video):
    """``make(n, records=None) -> (questions_file, videos_dir, records)``: sample records on the synthetic video."""

    def make(n: int = 3, records: list[dict] | None = None) -> tuple[Path, Path, list[dict]]:
        records = records if records is not None else json.loads(SAMPLE.read_text(encoding="utf-8"))[:n]
        videos = tmp_path / "videos"
        videos.mkdir(exist_ok=True)
        for record in records:
            target = videos / record["video"]
            if "/" not in record["video"] and not os.path.lexists(target):
                os.symlink(synthetic_video, target)
        data = tmp_path / "questions.json"
        data.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
        return data, videos, records

    return make


def cli(args: list[str], capsys) -> tuple[int, str, str, float]:
    """``run_cli`` and the seconds it took."""
    started = time.monotonic()
    code, out, err = run_cli(args, capsys)
    return code, out, err, time.monotonic() - started


def uniform_args(server, data: Path, videos: Path, out: Path, *extra: str) -> list[str]:
    return [
        "eval", "--data", str(data), "--videos", str(videos), "--method", "uniform", "--out", str(out),
        "--model", "fake-model", "--base-url", server.base_url, "--api-key", "sk-test-key-0001",
        "--frames", "4", "--max-retries", "0", "--timeout", "10", "--no-progress", *extra,
    ]


def agent_args(server, data: Path, videos: Path, out: Path, clip: str, cache: Path, *extra: str) -> list[str]:
    return [
        "eval", "--data", str(data), "--videos", str(videos), "--method", "agent", "--out", str(out),
        "--model", "fake-model", "--base-url", server.base_url, "--api-key", "sk-test-key-0001",
        "--frames", "8", "--overview-frames", "2", "--max-steps", "3", "--max-retries", "0", "--timeout", "10",
        "--clip-model", clip, "--random-weights", "--cache-dir", str(cache), "--no-progress", *extra,
    ]


def rows_of(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / RESULTS_FILE).read_text(encoding="utf-8").splitlines() if line]


def search_then_answer(body: dict):
    """A well-behaved agent: search once, then answer B."""
    if not any(m.get("role") == "tool" for m in body["messages"]):
        return ToolCalls([Call("search_frames", {"query": "a bright scene", "k": 2})])
    return ToolCalls([Call("answer", {"option": "B", "rationale": "the frames show it", "evidence": [0.5]})])


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- server faults: honest rows


SERVER_FAULTS = {
    "rate_limit": lambda: Fault.rate_limit(retry_after=0),
    "server": lambda: Fault.server_error(500, "internal error"),
    "empty": Fault.empty,
    "connection": Fault.drop,
}


@pytest.mark.parametrize("kind", sorted(SERVER_FAULTS))
def test_agent_under_server_faults_writes_error_rows_never_answers(
    kind, fake_openai, dataset, tiny_clip_model, tmp_path, capsys
):
    data, videos, _ = dataset(2)
    fake_openai.responder = lambda body: SERVER_FAULTS[kind]()
    out = tmp_path / "run"
    args = agent_args(fake_openai, data, videos, out, tiny_clip_model, tmp_path / "cache", "--stop-after", "0")
    code, stdout, err, _ = cli(args, capsys)
    assert code == 1, err
    rows = rows_of(out)
    assert [r["status"] for r in rows] == ["error", "error"]
    assert {r["error_kind"] for r in rows} == {kind} and all(r["prediction"] is None for r in rows)
    assert all(Trace.load(out / r["trace"]).answer.reason == "error" for r in rows)  # the trace says what failed
    assert "2 questions have error rows; re-run with --retry-errors" in stdout

    # the same faults under the uniform method give the same rows: an outage biases neither side
    ucode, _, _, _ = cli(uniform_args(fake_openai, data, videos, tmp_path / "uniform", "--stop-after", "0"), capsys)
    assert ucode == 1 and {r["error_kind"] for r in rows_of(tmp_path / "uniform")} == {kind}

    # --retry-errors re-runs them once the server is back
    fake_openai.responder = search_then_answer
    code, _, err, _ = cli([*args, "--retry-errors"], capsys)
    assert code == 0, err
    latest = {r["question_id"]: r for r in rows_of(out)}
    assert all(r["status"] == "ok" and r["prediction"] == "B" for r in latest.values())


def test_a_hung_server_fails_the_question_within_its_timeout(fake_openai, dataset, tmp_path, capsys):
    data, videos, _ = dataset(1)
    fake_openai.responder = lambda body: Fault.hang(30)
    code, _, err, elapsed = cli(uniform_args(fake_openai, data, videos, tmp_path / "run", "--timeout", "1"), capsys)
    assert code == 1 and elapsed < 6, (code, elapsed, err)
    (row,) = rows_of(tmp_path / "run")
    assert row["status"] == "error" and row["error_kind"] == "timeout" and "within 1s" in row["error"]


def test_a_trickling_server_is_cut_off_at_the_request_deadline(fake_openai, dataset, tmp_path, capsys):
    data, videos, _ = dataset(1)
    fake_openai.responder = lambda body: Fault.trickle(0.25)  # every read succeeds; only a total deadline ends it
    code, _, err, elapsed = cli(uniform_args(fake_openai, data, videos, tmp_path / "run", "--timeout", "1.5"), capsys)
    assert code == 1 and elapsed < 8, (code, elapsed, err)
    (row,) = rows_of(tmp_path / "run")
    assert row["error_kind"] == "timeout" and "no complete response within 1.5s" in row["error"]


def test_a_huge_reply_is_refused_not_read_into_memory(fake_openai, dataset, tmp_path, capsys):
    data, videos, _ = dataset(1)
    fake_openai.responder = lambda body: Fault.huge(64 * 1024 * 1024, declare_length=False)
    code, _, err, elapsed = cli(uniform_args(fake_openai, data, videos, tmp_path / "run"), capsys)
    (row,) = rows_of(tmp_path / "run")
    assert code == 1 and row["error_kind"] == "bad_response", err


def test_a_reply_with_thousands_of_tool_calls_runs_only_the_cap(
    fake_openai, dataset, tiny_clip_model, tmp_path, capsys
):
    data, videos, _ = dataset(1)

    def runaway(body):
        if not any(m.get("role") == "tool" for m in body["messages"]):
            return ToolCalls([Call("search_frames", {"query": f"thing {i}", "k": 1}) for i in range(3000)])
        return search_then_answer(body)

    fake_openai.responder = runaway
    out = tmp_path / "run"
    args = agent_args(fake_openai, data, videos, out, tiny_clip_model, tmp_path / "cache", "--max-tool-calls", "4")
    code, _, err, elapsed = cli(args, capsys)
    assert code == 0 and elapsed < 60, (elapsed, err)
    (row,) = rows_of(out)
    assert row["status"] == "ok" and row["prediction"] == "B"
    trace = Trace.load(out / row["trace"])
    assert sum(1 for n in trace.nodes if n.kind == "tool_call" and n.step == 1) == 4
    (runaway_thought,) = [n for n in trace.nodes if n.kind == "thought" and n.step == 1]
    assert "3000 tool calls in one reply; the first 4 were run, 2996 dropped" in runaway_thought.error
    second = fake_openai.requests[1]
    (assistant,) = [m for m in second["messages"] if m["role"] == "assistant"]
    assert len(assistant["tool_calls"]) == 4  # the history holds only the calls that ran
    assert "2996 more tool calls than the 4 run per step" in json.dumps(second["messages"])


# --------------------------------------------------------------------------- preflight: fail in seconds


def test_a_dead_url_fails_before_any_question(dataset, tmp_path, capsys):
    data, videos, _ = dataset(3)

    class Dead:
        base_url = f"http://127.0.0.1:{closed_port()}/v1"

    code, _, err, elapsed = cli(uniform_args(Dead, data, videos, tmp_path / "run", "--max-retries", "4"), capsys)
    assert code == 2 and elapsed < 5, (elapsed, err)
    assert "cannot reach" in err and "check --base-url" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_wrong_key_fails_at_once_with_the_fix(fake_openai, dataset, tmp_path, capsys):
    data, videos, _ = dataset(3)
    fake_openai.required_key = "sk-the-right-one-0002"
    code, _, err, elapsed = cli(uniform_args(fake_openai, data, videos, tmp_path / "run"), capsys)
    assert code == 2 and elapsed < 5
    assert "refused the API key (HTTP 401)" in err and "OPENAI_API_KEY" in err
    assert fake_openai.requests == [] and fake_openai.preflight_requests == []


def test_a_wrong_model_name_lists_what_the_server_offers(fake_openai, dataset, tmp_path, capsys):
    data, videos, _ = dataset(3)
    fake_openai.models = ["qwen2.5-vl-7b", "llava-onevision"]
    fake_openai.unknown_models_status = 404
    args = uniform_args(fake_openai, data, videos, tmp_path / "run")
    args[args.index("--model") + 1] = "gpt-4o"
    code, _, err, elapsed = cli(args, capsys)
    assert code == 2 and elapsed < 5
    assert "does not serve model 'gpt-4o'; it offers qwen2.5-vl-7b, llava-onevision" in err
    assert fake_openai.requests == []


def test_dry_run_checks_everything_and_answers_nothing(fake_openai, dataset, tiny_clip_model, tmp_path, capsys):
    data, videos, _ = dataset(3)
    out = tmp_path / "run"
    code, stdout, err, _ = cli(agent_args(fake_openai, data, videos, out, tiny_clip_model, tmp_path / "cache",
                                          "--dry-run"), capsys)
    assert code == 0, err
    assert "videos: 2 checked" in stdout and "all usable" in stdout and "preflight passed" in stdout
    assert f"frame index: {tiny_clip_model}" in stdout
    assert fake_openai.requests == [] and len(fake_openai.preflight_requests) == 1 and not out.exists()


def test_missing_clip_weights_refuse_to_start_instead_of_running_without_search(
    fake_openai, dataset, tmp_path, capsys
):
    data, videos, _ = dataset(2)
    base = agent_args(fake_openai, data, videos, tmp_path / "run", "ViT-B-32-256", tmp_path / "cache")
    base.remove("--random-weights")
    code, _, err, elapsed = cli(base, capsys)  # offline (HF_HUB_OFFLINE): the hub cannot be reached
    assert code == 2 and elapsed < 30, (elapsed, err)
    assert "frame search cannot work: CLIP weights" in err and "--clip-checkpoint" in err
    assert fake_openai.requests == [] and not (tmp_path / "run").exists()

    corrupt = tmp_path / "weights.pt"
    corrupt.write_bytes(b"not a checkpoint" * 100)
    code, _, err, _ = cli([*base, "--clip-checkpoint", str(corrupt)], capsys)
    assert code == 2 and "frame search cannot work" in err and "weights.pt" in err


def test_an_unwritable_cache_refuses_to_start(fake_openai, dataset, tiny_clip_model, tmp_path, capsys):
    data, videos, _ = dataset(2)
    blocker = tmp_path / "a-file"
    blocker.write_text("the cache cannot live under a file")
    args = agent_args(fake_openai, data, videos, tmp_path / "run", tiny_clip_model, blocker / "cache")
    code, _, err, elapsed = cli(args, capsys)
    assert code == 2 and "cache" in err and "--cache-dir" in err, err
    assert fake_openai.requests == []


def test_a_fifo_video_is_reported_up_front_and_never_opened(fake_openai, dataset, tmp_path, capsys):
    data, videos, records = dataset(3)
    fifo_name = records[0]["video"]
    (videos / fifo_name).unlink()
    os.mkfifo(videos / fifo_name)  # opening it for reading would block forever
    fake_openai.responder = lambda body: Text("[[A]]")
    code, _, err, elapsed = cli(uniform_args(fake_openai, data, videos, tmp_path / "run"), capsys)
    assert code == 2 and elapsed < 5 and "not a regular file (a FIFO)" in err and "--allow-missing" in err

    code, _, err, elapsed = cli(uniform_args(fake_openai, data, videos, tmp_path / "run", "--allow-missing"), capsys)
    assert code == 1 and elapsed < 10, err
    by_video = {}
    for row in rows_of(tmp_path / "run"):
        by_video.setdefault(row["video"], set()).add((row["status"], row["error_kind"]))
    assert by_video.pop(fifo_name) == {("error", "video")}
    assert all(statuses == {("ok", None)} for statuses in by_video.values())


def test_dataset_paths_outside_the_videos_folder_are_never_read(fake_openai, dataset, tmp_path, capsys):
    secret_dir = tmp_path / "outside"
    secret_dir.mkdir()
    records = json.loads(SAMPLE.read_text(encoding="utf-8"))[:2]
    escaping = [dict(records[0], video="../outside/secret.mp4", question_idx="esc-1"),
                dict(records[1], video=str(secret_dir / "secret.mp4"), question_idx="esc-2")]
    data, videos, _ = dataset(records=[records[0], *escaping])
    os.symlink(videos / records[0]["video"], secret_dir / "secret.mp4")
    fake_openai.responder = lambda body: Text("[[A]]")
    code, stdout, err, _ = cli(uniform_args(fake_openai, data, videos, tmp_path / "run"), capsys)
    assert code == 0, err
    assert stdout.count("leaves the videos folder") == 2
    assert [r["video"] for r in rows_of(tmp_path / "run")] == [records[0]["video"]]
    assert len(fake_openai.requests) == 1  # the secret video's frames never reached the server


# --------------------------------------------------------------------------- during the run


def test_the_breaker_stops_a_run_whose_key_is_revoked_mid_run(fake_openai, dataset, tmp_path, capsys):
    data, videos, _ = dataset(6)
    fake_openai.responder = lambda body: Fault.http_error(401, "Incorrect API key provided")
    code, stdout, err, _ = cli(uniform_args(fake_openai, data, videos, tmp_path / "run"), capsys)
    assert code == 3, err
    rows = rows_of(tmp_path / "run")
    assert len(rows) == 3 and {r["error_kind"] for r in rows} == {"auth"}
    assert len(fake_openai.requests) == 3  # not 6: the rest were not paid for
    assert "stopped: 3 questions in a row failed the same way (auth)" in stdout
    assert stdout.strip().splitlines()[-1] == (
        f"3 of 6 questions have rows in {tmp_path / 'run'}/results.jsonl (3 not run); run the same command to resume"
    )


def test_a_question_past_its_deadline_is_an_error_row(fake_openai, dataset, tiny_clip_model, tmp_path, capsys):
    data, videos, _ = dataset(1)

    def slow(body):
        time.sleep(0.8)
        return ToolCalls([Call("search_frames", {"query": "anything", "k": 1})])  # never answers

    fake_openai.responder = slow
    out = tmp_path / "run"
    args = agent_args(fake_openai, data, videos, out, tiny_clip_model, tmp_path / "cache",
                      "--question-timeout", "2", "--max-steps", "20")
    code, _, err, elapsed = cli(args, capsys)
    (row,) = rows_of(out)
    assert code == 1 and row["status"] == "error" and row["error_kind"] == "deadline", (row, err)
    assert elapsed < 15, elapsed
    assert Trace.load(out / row["trace"]).answer.error_kind == "deadline"


def test_colliding_question_ids_get_their_own_traces(fake_openai, dataset, tiny_clip_model, tmp_path, capsys):
    base = json.loads(SAMPLE.read_text(encoding="utf-8"))[0]
    records = [dict(base, question_idx=key) for key in ("a/b", "a_b", "a:b")]
    data, videos, _ = dataset(records=records)
    fake_openai.responder = search_then_answer
    out = tmp_path / "run"
    code, _, err, _ = cli(agent_args(fake_openai, data, videos, out, tiny_clip_model, tmp_path / "cache"), capsys)
    assert code == 0, err
    rows = rows_of(out)
    assert len({r["trace"] for r in rows}) == 3
    assert {Trace.load(out / r["trace"]).question_id for r in rows} == {"a/b", "a_b", "a:b"}


def test_nan_evidence_is_refused_and_the_trace_stays_loadable(
    fake_openai, dataset, tiny_clip_model, tmp_path, capsys
):
    data, videos, _ = dataset(1)

    def nan_first(body):
        results = [m for m in body["messages"] if m.get("role") == "tool"]
        if not results:
            return ToolCalls([Call("answer", '{"option": "B", "rationale": "r", "evidence": [NaN, 1.0]}')])
        return ToolCalls([Call("answer", {"option": "B", "rationale": "r", "evidence": [1.0]})])

    fake_openai.responder = nan_first
    out = tmp_path / "run"
    code, _, err, _ = cli(agent_args(fake_openai, data, videos, out, tiny_clip_model, tmp_path / "cache"), capsys)
    assert code == 0, err
    (row,) = rows_of(out)
    trace = Trace.load(out / row["trace"])  # a NaN saved as-is could never be read back
    assert trace.answer.option == "B" and trace.answer.evidence == [1.0]
    assert any(n.error and "evidence" in n.error for n in trace.nodes if n.kind == "observation")


def test_credentials_in_the_server_url_are_never_written_or_printed(
    fake_openai, dataset, tiny_clip_model, tmp_path, capsys
):
    data, videos, _ = dataset(2)
    url = fake_openai.base_url.replace("http://", "http://alice:s3cret-pw@")

    class WithPassword:
        base_url = url

    fake_openai.responder = lambda body: Fault.server_error(500, "boom")
    out = tmp_path / "run"
    code, stdout, err, _ = cli(agent_args(WithPassword, data, videos, out, tiny_clip_model, tmp_path / "cache",
                                          "--stop-after", "0"), capsys)
    assert code == 1, err
    written = [p.read_text(encoding="utf-8") for p in out.rglob("*") if p.is_file()]
    assert any("***@127.0.0.1" in text for text in written)  # the endpoint is recorded, masked
    for text in [*written, stdout, err]:
        assert "s3cret-pw" not in text and "alice" not in text
