"""``sleuth eval`` end to end against the fake OpenAI server, on real MMR-V records and synthetic videos.

The sample's video files are not available, so each record's video name is
a copy of one small synthetic video whose frames encode their own index:
the images the server receives tell exactly which frames were sampled.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from eval.benchmarks.mmr_v import MMRV, load_questions
from eval.methods import MethodOutcome
from eval.results import RESULTS_FILE, ResultRow
from eval.runner import ResultsWriter, run_evaluation
from eval.score import read_results_rows
from prompts import load_prompt
from sleuth.cli import main
from tests.fake_openai import Fault, Text
from tests.video_fixtures import decode_index

SAMPLE = Path(__file__).parent / "data" / "mmrv_sample_questions.json"
SECRET = "sk-secret-value-0042"
FRAMES = 4
SYNTHETIC_FRAMES = 40  # the synthetic_video fixture


# --------------------------------------------------------------------------- setup helpers


@pytest.fixture
def mmrv(tmp_path, synthetic_video):
    """``make(n, missing=()) -> (questions_file, videos_dir, records)``: the first n sample records."""

    def make(n: int, missing: tuple[str, ...] = ()) -> tuple[Path, Path, list[dict]]:
        records = json.loads(SAMPLE.read_text(encoding="utf-8"))[:n]
        videos = tmp_path / "videos"
        videos.mkdir(exist_ok=True)
        for record in records:
            target = videos / record["video"]
            if record["video"] not in missing and not target.exists():
                os.symlink(synthetic_video, target)
        data = tmp_path / "questions.json"
        data.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
        return data, videos, records

    return make


def run_cli(args: list[str], capsys=None) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    if capsys is None:
        return code, "", ""
    out = capsys.readouterr()
    return code, out.out, out.err


def eval_args(fake_openai, data: Path, videos: Path, out: Path, *extra: str) -> list[str]:
    return [
        "eval", "--data", str(data), "--videos", str(videos), "--method", "uniform", "--out", str(out),
        "--model", "fake-model", "--base-url", fake_openai.base_url, "--api-key", SECRET,
        "--frames", str(FRAMES), "--max-retries", "0", "--timeout", "10", "--no-progress", *extra,
    ]


def rows_of(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / RESULTS_FILE).read_text(encoding="utf-8").splitlines() if line]


def question_of(body: dict) -> str:
    text = body["messages"][0]["content"][0]["text"]
    return text.split("[[QUESTION]]\n", 2)[2].split("\n[[END OF QUESTION]]", 1)[0]


def answer_with(letter_by_question: dict[str, str] | None = None, default: str = "[[B]]"):
    def responder(body: dict):
        question = question_of(body)
        return Text((letter_by_question or {}).get(question, default), usage=(1000, 10))

    return responder


# --------------------------------------------------------------------------- the official request layout


def test_uniform_sends_exactly_the_official_request(fake_openai, mmrv, tmp_path, capsys):
    data, videos, records = mmrv(3)
    fake_openai.responder = answer_with()
    code, out, err = run_cli(eval_args(fake_openai, data, videos, tmp_path / "run"), capsys)
    assert code == 0, err

    assert len(fake_openai.requests) == 3
    template = load_prompt("mmrv_direct").text
    expected_indices = list(np.linspace(0, SYNTHETIC_FRAMES - 1, FRAMES, dtype=int))
    by_question = {r["question"]: r for r in records}
    for body in fake_openai.requests:
        # no system message, no sampling settings: the server's defaults, as in the official script
        assert "temperature" not in body and "max_tokens" not in body
        (message,) = body["messages"]
        assert message["role"] == "user"
        text_part, *image_parts = message["content"]
        record = by_question[question_of(body)]
        assert text_part == {
            "type": "text",
            "text": template.format(question=record["question"], options=str(record["options"])) + " ",
        }
        assert text_part["text"].startswith("\n[[INSTRUCTIONS]]\nPlease select the best answer")
        assert "\n['(A) " in text_part["text"] or '\n["(A) ' in text_part["text"]  # str() of the options list
        assert len(image_parts) == FRAMES
        seen = []
        for part in image_parts:
            assert part["type"] == "image_url" and set(part["image_url"]) == {"url"}  # no detail hint, no label
            url = part["image_url"]["url"]
            assert url.startswith("data:image/jpeg;base64,")
            from PIL import Image

            image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
            assert image.format == "JPEG" and image.size == (160, 120)  # full resolution
            seen.append(decode_index(np.asarray(image.convert("RGB"))))
        assert seen == expected_indices  # linspace over frame indices, in time order

    rows = rows_of(tmp_path / "run")
    assert len(rows) == 3
    for row in rows:
        assert row["status"] == "ok" and row["prediction"] == "B" and row["extraction"] == "brackets"
        assert row["frames"] == FRAMES and row["prompt_tokens"] == 1000 and row["completion_tokens"] == 10
        assert row["correct"] == (row["gold"] == "B")
        assert row["fake-model_raw_response"] == "[[B]]"
        assert row["fake-model_response"] == {"final_answer": "B"}
    assert "sleuth score" in out


def test_cot_template_and_user_settings_are_sent(fake_openai, mmrv, tmp_path, capsys):
    data, videos, _ = mmrv(1)
    fake_openai.responder = answer_with()
    code, _, err = run_cli(
        eval_args(fake_openai, data, videos, tmp_path / "run", "--cot", "--temperature", "0.2", "--max-tokens", "300"),
        capsys,
    )
    assert code == 0, err
    (body,) = fake_openai.requests
    assert body["temperature"] == 0.2 and body["max_tokens"] == 300
    text = body["messages"][0]["content"][0]["text"]
    assert 'The final correct option letter MUST be put in the "[[]]"' in text
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["cot"] is True and "mmrv_cot" in config["prompts"]


def test_strict_official_takes_the_first_marker(fake_openai, mmrv, tmp_path, capsys):
    data, videos, records = mmrv(2)
    echo = 'in the format "[[A]]" or "[[B]]" ...\n[[C]]'
    fake_openai.responder = answer_with(default=echo)
    run_cli(eval_args(fake_openai, data, videos, tmp_path / "default"), capsys)
    run_cli(eval_args(fake_openai, data, videos, tmp_path / "strict", "--strict-official"), capsys)
    assert {r["prediction"] for r in rows_of(tmp_path / "default")} == {"C"}
    assert {r["prediction"] for r in rows_of(tmp_path / "strict")} == {"A"}


# --------------------------------------------------------------------------- the run directory


def test_config_records_the_setup_and_never_the_api_key(fake_openai, mmrv, tmp_path, capsys):
    data, videos, _ = mmrv(2)
    fake_openai.responder = answer_with()
    run_dir = tmp_path / "run"
    code, _, err = run_cli(eval_args(fake_openai, data, videos, run_dir), capsys)
    assert code == 0, err
    config = json.loads((run_dir / "config.json").read_text())
    assert config["method"] == "uniform" and config["model"] == "fake-model" and config["frames"] == FRAMES
    assert config["prompts"] == {"mmrv_direct": load_prompt("mmrv_direct").sha256}
    assert config["backend"]["base_url"] == fake_openai.base_url and config["backend"]["api_key_set"] is True
    assert config["data"]["source"] == str(data) and config["data"]["questions"] == 2
    assert config["method_settings"]["generation"]["temperature"] is None
    assert {"python", "openai", "pydantic"} <= set(config["versions"])
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(encoding="utf-8", errors="replace"), path


def test_resuming_with_other_settings_is_refused(fake_openai, mmrv, tmp_path, capsys):
    data, videos, _ = mmrv(1)
    fake_openai.responder = answer_with()
    run_dir = tmp_path / "run"
    assert run_cli(eval_args(fake_openai, data, videos, run_dir), capsys)[0] == 0
    args = eval_args(fake_openai, data, videos, run_dir)
    args[args.index("--frames") + 1] = "8"
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "frames=4" in err and "another --out" in err


def test_missing_video_stops_the_run_before_it_starts(fake_openai, mmrv, tmp_path, capsys):
    gone = "Mother 1 minute Sad Emotional Award Winning Iranian Short Film Animation Animated.mp4"
    data, videos, records = mmrv(6, missing=(gone,))
    fake_openai.responder = answer_with()
    code, out, err = run_cli(eval_args(fake_openai, data, videos, tmp_path / "run"), capsys)
    assert code == 2 and fake_openai.requests == [] and not (tmp_path / "run").exists()
    assert err.strip() == (f"error: 1 of 3 videos cannot be used ({gone}: video not found); fix --videos, "
                           "or pass --allow-missing to run the other questions")


def test_allow_missing_gives_their_questions_error_rows_and_runs_the_rest(fake_openai, mmrv, tmp_path, capsys):
    gone = "Mother 1 minute Sad Emotional Award Winning Iranian Short Film Animation Animated.mp4"
    data, videos, records = mmrv(6, missing=(gone,))
    missing = {r["question"] for r in records if r["video"] == gone}
    assert len(missing) == 3
    fake_openai.responder = answer_with()
    code, out, err = run_cli(eval_args(fake_openai, data, videos, tmp_path / "run", "--json", "--allow-missing"), capsys)
    assert code == 1, err  # finished, but not every question has an answer
    summary = json.loads(out)
    assert summary["ok"] == 3 and summary["errors"] == 3
    for row in rows_of(tmp_path / "run"):
        if row["question"] in missing:
            assert row["status"] == "error" and row["error"].startswith("video not found: ")
            assert gone in row["error"]
        else:
            assert row["status"] == "ok"
    assert len(fake_openai.requests) == 3


def test_retry_errors_reruns_only_failures(fake_openai, mmrv, tmp_path, capsys):
    data, videos, records = mmrv(3)
    failing = records[1]["question"]
    run_dir = tmp_path / "run"

    def flaky(body):
        return Fault.server_error(503, "overloaded") if question_of(body) == failing else Text("[[C]]")

    fake_openai.responder = flaky
    assert run_cli(eval_args(fake_openai, data, videos, run_dir), capsys)[0] == 1  # an error row: exit 1
    rows = rows_of(run_dir)
    assert [r["status"] for r in rows].count("error") == 1
    (bad,) = [r for r in rows if r["status"] == "error"]
    assert bad["question"] == failing and "\n" not in bad["error"]

    # a plain re-run has nothing to do: error rows count as finished
    fake_openai.reset()
    fake_openai.responder = answer_with(default="[[C]]")
    assert run_cli(eval_args(fake_openai, data, videos, run_dir), capsys)[0] == 1  # still unanswered
    assert fake_openai.requests == []

    # --retry-errors runs the failed question only; its new row supersedes the old one
    assert run_cli(eval_args(fake_openai, data, videos, run_dir, "--retry-errors"), capsys)[0] == 0
    assert [question_of(b) for b in fake_openai.requests] == [failing]
    lines = rows_of(run_dir)
    assert len(lines) == 4
    latest = read_results_rows(run_dir / RESULTS_FILE)
    assert len(latest) == 3 and all(r.status == "ok" for r in latest)
    ok_ids = [r["question_id"] for r in lines if r["status"] == "ok"]
    assert len(ok_ids) == len(set(ok_ids)) == 3  # never a duplicate ok row


def test_concurrent_workers_answer_every_question_once(fake_openai, mmrv, tmp_path, capsys):
    data, videos, records = mmrv(6)
    lock = threading.Lock()
    state = {"now": 0, "max": 0}

    def slow(body):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.25)
        with lock:
            state["now"] -= 1
        return Text("[[A]]")

    fake_openai.responder = slow
    code, out, err = run_cli(eval_args(fake_openai, data, videos, tmp_path / "run", "--concurrency", "3", "--json"), capsys)
    assert code == 0, err
    assert 2 <= state["max"] <= 3  # work overlapped, and never more than K at once
    ids = [r["question_id"] for r in rows_of(tmp_path / "run")]
    expected = {q.question_id for q in load_questions(data).questions}
    assert len(ids) == len(set(ids)) and set(ids) == expected
    summary = json.loads(out)
    assert summary["ran"] == len(expected) and summary["prompt_tokens"] > 0


def test_replay_cache_counts_hits_in_the_summary(fake_openai, mmrv, tmp_path, capsys):
    data, videos, _ = mmrv(2)
    fake_openai.responder = answer_with()
    cache = tmp_path / "replay"
    first = run_cli(eval_args(fake_openai, data, videos, tmp_path / "a", "--replay-cache", str(cache), "--json"), capsys)
    second = run_cli(eval_args(fake_openai, data, videos, tmp_path / "b", "--replay-cache", str(cache), "--json"), capsys)
    assert json.loads(first[1])["replay_cache"] == {"hits": 0, "misses": 2}
    assert json.loads(second[1])["replay_cache"] == {"hits": 2, "misses": 0}
    assert len(fake_openai.requests) == 2


# --------------------------------------------------------------------------- interruption and resume


class _InterruptAfter:
    """A method that answers normally and raises KeyboardInterrupt (Ctrl-C) on its n-th question."""

    name = "uniform"

    def __init__(self, inner, n: int):
        self.inner, self.n, self.calls = inner, n, 0
        self.lock = threading.Lock()

    def run(self, question):
        with self.lock:
            self.calls += 1
            current = self.calls
        if current == self.n:
            raise KeyboardInterrupt
        return self.inner.run(question)

    def describe(self):
        return self.inner.describe()

    def prompt_names(self):
        return self.inner.prompt_names()


def test_interrupted_run_resumes_with_every_question_once(fake_openai, openai_backend_factory, mmrv, tmp_path):
    from eval.methods.uniform import UniformMethod

    data, videos, _ = mmrv(6)
    dataset = load_questions(data, videos)
    fake_openai.responder = answer_with()
    run_dir = tmp_path / "run"
    method = UniformMethod(MMRV(), openai_backend_factory(), frames=FRAMES)

    with pytest.raises(KeyboardInterrupt):
        run_evaluation(dataset.questions, _InterruptAfter(method, 4), run_dir, progress=False, model="fake-model")
    assert len(rows_of(run_dir)) == 3  # the finished ones are on disk; the interrupted one is not

    summary = run_evaluation(dataset.questions, method, run_dir, progress=False, model="fake-model")
    assert summary.already_done == 3 and summary.ran == 3
    ids = [r["question_id"] for r in rows_of(run_dir)]
    assert sorted(ids) == sorted(q.question_id for q in dataset.questions)


def test_killed_process_resumes_with_every_question_once(fake_openai, mmrv, tmp_path, capsys):
    data, videos, _ = mmrv(6)
    run_dir = tmp_path / "run"

    def slow(body):
        time.sleep(0.3)
        return Text("[[B]]")

    fake_openai.responder = slow
    process = subprocess.Popen(
        [sys.executable, "-m", "sleuth", *eval_args(fake_openai, data, videos, run_dir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=Path(__file__).parents[1],
    )
    results = run_dir / RESULTS_FILE
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if results.exists() and len(results.read_text().splitlines()) >= 2:
                break
            if process.poll() is not None:
                pytest.fail(f"eval ended early: {process.stderr.read().decode()}")
            time.sleep(0.05)
        else:
            pytest.fail("no rows written in time")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    done_before = len(rows_of(run_dir))
    assert 2 <= done_before < 6

    fake_openai.responder = answer_with()
    code, out, err = run_cli(eval_args(fake_openai, data, videos, run_dir, "--json"), capsys)
    assert code == 0, err
    assert json.loads(out)["already_done"] == done_before
    ids = [r["question_id"] for r in rows_of(run_dir)]
    assert len(ids) == len(set(ids)) == 6


def test_torn_last_line_is_cut_before_appending(tmp_path):
    path = tmp_path / RESULTS_FILE
    row = ResultRow(question_id="q1", video="v.mp4", method="uniform")
    path.write_text(row.model_dump_json() + "\n" + '{"question_id": "q2", "vid', encoding="utf-8")
    writer = ResultsWriter(path)
    writer.append(ResultRow(question_id="q3", video="v.mp4", method="uniform"))
    assert [r.question_id for r in read_results_rows(path)] == ["q1", "q3"]


def test_method_failures_become_error_rows(tmp_path, mmrv):
    data, videos, _ = mmrv(3)
    dataset = load_questions(data, videos)

    class Boom:
        name = "uniform"

        def __init__(self):
            self.calls = 0

        def run(self, question):
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError("unexpected\nmulti-line failure")
            return MethodOutcome(prediction="A", extraction="brackets", raw_response="[[A]]", frames=1)

        def describe(self):
            return {"method": "uniform"}

        def prompt_names(self):
            return []

    summary = run_evaluation(dataset.questions, Boom(), tmp_path / "run", progress=False, model="m")
    assert (summary.ok, summary.errors) == (2, 1)
    (error,) = [r for r in rows_of(tmp_path / "run") if r["status"] == "error"]
    assert error["error"] == "RuntimeError: unexpected multi-line failure"


def test_bad_flags_fail_with_one_line(fake_openai, mmrv, tmp_path, capsys):
    data, videos, _ = mmrv(1)
    code, _, err = run_cli(eval_args(fake_openai, tmp_path / "absent.json", videos, tmp_path / "run"), capsys)
    assert code == 2 and "absent.json: no such file" in err
    code, _, err = run_cli(eval_args(fake_openai, data, tmp_path / "no-videos", tmp_path / "run"), capsys)
    assert code == 2 and "video folder not found" in err
    args = eval_args(fake_openai, data, videos, tmp_path / "run")
    args[args.index("--model") + 1] = " "
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "--model" in err
