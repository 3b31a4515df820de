"""The runner's promises, checked with scripted methods: honest rows, the circuit breaker, deadlines,
one writer per directory, unique trace names, corrupt lines set aside, nothing torn on a full disk."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from agent.backends.base import BackendError
from agent.trace import FinalAnswer, Trace
from eval.dataset import Question
from eval.methods import MethodFailure, MethodOutcome
from eval.results import RESULTS_FILE, ResultRow
from eval.run_lock import RunDirectoryLock
from eval.runner import (
    EXIT_ERRORS,
    EXIT_OK,
    EXIT_STOPPED,
    REJECTED_FILE,
    ResultsWriter,
    run_evaluation,
    trace_filename,
)
from sleuth import deadline
from sleuth.errors import ConfigError, StorageError


def make_questions(video: Path, ids: list[str]) -> list[Question]:
    return [
        Question(question_id=qid, video=video.name, video_path=video, question=f"q {qid}?",
                 options=["(A) x", "(B) y"], letters=["A", "B"], answer="A")
        for qid in ids
    ]


class Scripted:
    """A method whose behaviour per question comes from ``script(question_id)``."""

    name = "uniform"

    def __init__(self, script):
        self.script = script
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def run(self, question):
        with self.lock:
            self.calls.append(question.question_id)
        return self.script(question)

    def describe(self):
        return {"method": "uniform"}

    def prompt_names(self):
        return []


def answer_a(question):
    return MethodOutcome(prediction="A", extraction="brackets", raw_response="[[A]]", frames=1)


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / RESULTS_FILE).read_text().splitlines() if line]


def run(questions, method, run_dir, **kwargs):
    kwargs.setdefault("progress", False)
    kwargs.setdefault("model", "m")
    kwargs.setdefault("handle_signals", False)
    return run_evaluation(questions, method, run_dir, **kwargs)


# --------------------------------------------------------------------------- honest rows and the breaker


def test_config_class_failures_in_a_row_stop_the_run(tmp_path, synthetic_video):
    questions = make_questions(synthetic_video, [f"q{i}" for i in range(10)])

    def refused(question):
        raise BackendError("fake-model at http://h/v1: HTTP 401: bad key (check --api-key)", kind="auth")

    method = Scripted(refused)
    summary = run(questions, method, tmp_path / "run", breaker=3)
    assert len(method.calls) == 3 and summary.errors == 3  # not 10: the run stopped
    assert summary.stopped.startswith("3 questions in a row failed the same way (auth)")
    assert summary.not_run == 7 and summary.exit_code == EXIT_STOPPED
    assert [r["error_kind"] for r in rows(tmp_path / "run")] == ["auth"] * 3
    assert all(r["status"] == "error" and r["prediction"] is None for r in rows(tmp_path / "run"))


def test_transient_failures_and_successes_do_not_trip_the_breaker(tmp_path, synthetic_video):
    questions = make_questions(synthetic_video, [f"q{i}" for i in range(6)])

    def mixed(question):
        index = int(question.question_id[1:])
        if index % 2:
            raise BackendError("HTTP 500 after 5 attempts", kind="server")
        if index == 4:
            raise BackendError("connection refused", kind="connection")
        return answer_a(question)

    summary = run(questions, Scripted(mixed), tmp_path / "run", breaker=2)
    assert summary.stopped is None and summary.ran == 6
    assert (summary.ok, summary.errors, summary.unanswered) == (2, 4, 4) and summary.exit_code == EXIT_ERRORS


def test_method_failure_is_an_error_row_that_keeps_its_trace(tmp_path, synthetic_video):
    (question,) = make_questions(synthetic_video, ["q1"])

    def fails(question):
        trace = Trace(question_id=question.question_id, video=str(synthetic_video), question="q", options=["(A) x"])
        trace.answer = FinalAnswer(option=None, reason="error", error_kind="timeout", rationale="planner timed out")
        raise MethodFailure("the planner model failed: no complete response within 5s", kind="timeout", trace=trace)

    summary = run([question], Scripted(fails), tmp_path / "run")
    (row,) = rows(tmp_path / "run")
    assert row["status"] == "error" and row["error_kind"] == "timeout" and row["correct"] is False
    assert Trace.load(tmp_path / "run" / row["trace"]).answer.error_kind == "timeout"
    assert summary.exit_code == EXIT_ERRORS

    # --retry-errors re-runs it; the new row supersedes the error
    summary = run([question], Scripted(answer_a), tmp_path / "run", retry_errors=True)
    assert summary.ran == 1 and summary.unanswered == 0 and summary.exit_code == EXIT_OK


# --------------------------------------------------------------------------- deadlines


def test_a_question_past_its_deadline_is_an_error_row(tmp_path, synthetic_video):
    questions = make_questions(synthetic_video, ["slow", "fast"])
    release = threading.Event()

    def script(question):
        if question.question_id == "slow":
            release.wait(30)  # stuck below any deadline check, like a native decoder
        return answer_a(question)

    started = time.monotonic()
    summary = run(questions, Scripted(script), tmp_path / "run", question_timeout=0.5, concurrency=2)
    elapsed = time.monotonic() - started
    release.set()
    assert elapsed < 5, elapsed  # abandoned at twice the deadline, not after 30 s
    by_id = {r["question_id"]: r for r in rows(tmp_path / "run")}
    assert by_id["slow"]["status"] == "error" and by_id["slow"]["error_kind"] == "deadline"
    assert by_id["fast"]["status"] == "ok" and summary.exit_code == EXIT_ERRORS
    time.sleep(0.1)  # the released worker must not add a second row for the abandoned question
    assert len(rows(tmp_path / "run")) == 2


def test_cooperative_deadline_is_visible_inside_the_method(tmp_path, synthetic_video):
    seen = {}

    def script(question):
        seen["remaining"] = deadline.remaining()
        time.sleep(0.3)
        deadline.check()  # what the agent does between steps
        return answer_a(question)

    run(make_questions(synthetic_video, ["q"]), Scripted(script), tmp_path / "run", question_timeout=0.2)
    (row,) = rows(tmp_path / "run")
    assert 0 < seen["remaining"] <= 0.2
    assert row["status"] == "error" and row["error_kind"] == "deadline" and "--question-timeout" in row["error"]


# --------------------------------------------------------------------------- the run directory


def test_second_writer_is_refused_and_named(tmp_path, synthetic_video):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with RunDirectoryLock(run_dir):
        with pytest.raises(ConfigError, match=r"in use by another sleuth process \(pid \d+ on .*\)"):
            run(make_questions(synthetic_video, ["q1"]), Scripted(answer_a), run_dir)
    summary = run(make_questions(synthetic_video, ["q1"]), Scripted(answer_a), run_dir)  # released: runs
    assert summary.ok == 1


def test_trace_names_are_unique_and_bounded():
    names = {trace_filename(qid) for qid in ("a/b", "a_b", "a:b", "a b")}
    assert len(names) == 4
    long = trace_filename("x" * 5000)
    assert len(long) < 100 and long.startswith("x" * 60) and long.endswith(".json")
    assert trace_filename("../../etc/passwd").startswith("etc_passwd-")


def test_corrupt_line_is_set_aside_and_its_question_runs_again(tmp_path, synthetic_video):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    questions = make_questions(synthetic_video, ["q1", "q2", "q3"])
    good = ResultRow(question_id="q1", video="v.mp4", method="uniform", prediction="A", correct=True)
    (run_dir / RESULTS_FILE).write_text(
        good.model_dump_json() + "\n" + '{"question_id": "q2", "status": "ok"' + "\n"
        + good.model_copy(update={"question_id": "q3"}).model_dump_json() + "\n", encoding="utf-8")
    method = Scripted(answer_a)
    summary = run(questions, method, run_dir)
    assert method.calls == ["q2"] and summary.already_done == 2
    assert len(summary.rejected_lines) == 1 and "line 2" in summary.rejected_lines[0]
    assert (run_dir / REJECTED_FILE).read_text().startswith('{"question_id": "q2"')
    assert sorted(r["question_id"] for r in rows(run_dir)) == ["q1", "q2", "q3"]


def test_a_row_that_cannot_be_written_whole_is_cut_back(tmp_path, monkeypatch):
    import os

    path = tmp_path / RESULTS_FILE
    writer = ResultsWriter(path)
    writer.append(ResultRow(question_id="q1", video="v.mp4", method="uniform"))
    before = path.read_bytes()
    real_write = os.write

    def half_then_full(fd, data):  # the disk fills up halfway through the row
        if len(data) > 20:
            return real_write(fd, bytes(data[:20]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(StorageError, match="No space left on device"):
        writer.append(ResultRow(question_id="q2", video="v.mp4", method="uniform"))
    monkeypatch.undo()
    assert path.read_bytes() == before  # nothing torn
