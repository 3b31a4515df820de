"""``sleuth eval`` under signals, a full disk and a second process, through the real command.

Each test starts ``python -m sleuth eval`` in a subprocess against the fake
OpenAI server and checks what a person at the terminal would see: the exit
code, the lines printed, and a ``results.jsonl`` that never holds a torn
line or a question twice. Replies are held at a gate (a ``threading.Event``)
rather than slept for, so "which questions are in flight when the signal
lands" is fixed by the test, not by timing.

SIGKILL mid-run is covered by ``test_eval_runner.py``.
"""

from __future__ import annotations

import io
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from eval.dataset import Question
from eval.methods import MethodOutcome
from eval.results import RESULTS_FILE
from eval.runner import EXIT_INTERRUPTED, REJECTED_FILE, run_evaluation
from tests.cli_helpers import run_cli
from tests.fake_openai import Fault, Text

REPO = Path(__file__).parents[1]
SAMPLE = Path(__file__).parent / "data" / "mmrv_sample_questions.json"
QUESTIONS = 6

# stdout is a pipe, as when a run is logged to a file: rich then lays out 80 columns, and every message
# checked here must still be one whole line (paths included) for grep and copy-paste.
CHILD_ENV = {**{k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}, "PYTHONUNBUFFERED": "1"}


# --------------------------------------------------------------------------- setup helpers (as in test_eval_runner)


@pytest.fixture
def mmrv(tmp_path, synthetic_video):
    """``make(n) -> (questions_file, videos_dir, records)``: the first n sample records, videos symlinked."""

    def make(n: int) -> tuple[Path, Path, list[dict]]:
        records = json.loads(SAMPLE.read_text(encoding="utf-8"))[:n]
        videos = tmp_path / "videos"
        videos.mkdir(exist_ok=True)
        for record in records:
            target = videos / record["video"]
            if not target.exists():
                os.symlink(synthetic_video, target)
        data = tmp_path / "questions.json"
        data.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
        return data, videos, records

    return make


def eval_args(fake_openai, data: Path, videos: Path, out: Path, *extra: str) -> list[str]:
    return [
        "eval", "--data", str(data), "--videos", str(videos), "--method", "uniform", "--out", str(out),
        "--model", "fake-model", "--base-url", fake_openai.base_url, "--api-key", "sk-test-not-a-secret",
        "--frames", "4", "--max-retries", "0", "--timeout", "30", "--no-progress", *extra,
    ]


def question_of(body: dict) -> str:
    text = body["messages"][0]["content"][0]["text"]
    return text.split("[[QUESTION]]\n", 2)[2].split("\n[[END OF QUESTION]]", 1)[0]


def result_lines(run_dir: Path) -> list[str]:
    path = run_dir / RESULTS_FILE
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def intact_rows(run_dir: Path) -> list[dict]:
    """Every line of results.jsonl, each a complete JSON row; the file ends with a newline."""
    path = run_dir / RESULTS_FILE
    if not path.exists():
        return []
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), f"torn last line: {data[-80:]!r}"
    rows = [json.loads(line) for line in data.decode("utf-8").splitlines()]  # raises on a torn line
    for row in rows:
        assert row["question_id"] and row["status"] in ("ok", "error"), row
    return rows


def wait_until(condition, timeout: float, what: str, child: "Child | None" = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if child is not None and child.process.poll() is not None:
            pytest.fail(f"eval ended (code {child.process.returncode}) before {what}:\n{child.output()}")
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}" + (f":\n{child.output()}" if child else ""))


class Child:
    """``python -m sleuth ARGS`` in a subprocess; stdout and stderr collected by threads as they come."""

    def __init__(self, args: list[str], **popen):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sleuth", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=REPO, env=CHILD_ENV, **popen,
        )
        self.pid = self.process.pid
        self._out: list[bytes] = []
        self._err: list[bytes] = []
        self._readers = [
            threading.Thread(target=self._drain, args=(self.process.stdout, self._out), daemon=True),
            threading.Thread(target=self._drain, args=(self.process.stderr, self._err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _drain(stream, sink: list[bytes]) -> None:
        for line in iter(stream.readline, b""):
            sink.append(line)

    @property
    def stdout(self) -> str:
        return b"".join(self._out).decode("utf-8", "replace")

    @property
    def stderr(self) -> str:
        return b"".join(self._err).decode("utf-8", "replace")

    def output(self) -> str:
        return f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"

    def wait(self, timeout: float) -> int:
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"eval still running after {timeout}s:\n{self.output()}")
        for reader in self._readers:
            reader.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def children():
    """Start children with ``children(args, **popen)``; any still running at the end is killed."""
    started: list[Child] = []

    def start(args: list[str], **popen) -> Child:
        child = Child(args, **popen)
        started.append(child)
        return child

    yield start
    for child in started:
        child.kill()


class Gate:
    """A responder: the first ``immediate`` questions are answered at once, the rest wait until ``open()``
    (then take ``delay`` seconds more). At teardown the waiting ones are dropped, so no server thread
    outlives its test by long."""

    def __init__(self, immediate: int, delay: float = 0.0):
        self.immediate = immediate
        self.delay = delay
        self._opened = threading.Event()
        self._abandoned = False
        self._lock = threading.Lock()
        self._count = 0

    def __call__(self, body: dict):
        with self._lock:
            self._count += 1
            held = self._count > self.immediate
        if held:
            self._opened.wait(120)
            if self._abandoned:
                return Fault.drop()
            time.sleep(self.delay)
        return Text("[[B]]", usage=(1000, 10))

    def open(self) -> None:
        self._opened.set()

    def abandon(self) -> None:
        self._abandoned = True
        self._opened.set()


@pytest.fixture
def gate(fake_openai):
    """``gate(immediate, delay=0.0)`` sets a ``Gate`` as the fake server's responder."""
    made: list[Gate] = []

    def make(immediate: int, delay: float = 0.0) -> Gate:
        made.append(Gate(immediate, delay))
        fake_openai.responder = made[-1]
        return made[-1]

    yield make
    for g in made:
        g.abandon()


def requested(fake_openai) -> list[str]:
    """The questions whose request reached the server, in order."""
    return [question_of(body) for body in list(fake_openai.requests)]


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def resume_line(run_dir: Path, have: int, not_run: int) -> str:
    return (f"{have} of {QUESTIONS} questions have rows in {run_dir}/{RESULTS_FILE} ({not_run} not run); "
            "run the same command to resume")


# --------------------------------------------------------------------------- Ctrl-C


def test_first_ctrl_c_finishes_the_questions_in_flight_and_resume_does_the_rest(
    fake_openai, gate, mmrv, tmp_path, children, capsys
):
    data, videos, records = mmrv(QUESTIONS)
    run_dir = tmp_path / "run"
    args = eval_args(fake_openai, data, videos, run_dir, "--concurrency", "2")
    gate(immediate=1, delay=0.5)  # question 1 answers; 2 and 3 then wait in flight, held at the gate
    child = children(args)
    wait_until(lambda: len(result_lines(run_dir)) == 1 and len(fake_openai.requests) == 3, 60,
               "one row and two questions in flight", child)
    in_flight = requested(fake_openai)[1:]

    child.process.send_signal(signal.SIGINT)
    wait_until(lambda: "starting no new questions" in child.stdout, 10, "the Ctrl-C message", child)
    assert ("Ctrl-C: starting no new questions; waiting up to 30s for the 2 in flight "
            "(Ctrl-C again to quit now)") in child.stdout.splitlines()
    time.sleep(0.5)  # it waits: nothing new starts, nothing is given up
    assert len(fake_openai.requests) == 3 and child.process.poll() is None

    gate_opened = time.monotonic()
    fake_openai.responder.open()
    code = child.wait(timeout=30)
    assert code == EXIT_INTERRUPTED, child.output()
    assert time.monotonic() - gate_opened < 10
    assert "Traceback" not in child.stderr and "Traceback" not in child.stdout, child.output()

    rows = intact_rows(run_dir)
    assert len(rows) == 3  # the row written before Ctrl-C, and the two in flight
    assert len({r["question_id"] for r in rows}) == 3
    assert {r["question"] for r in rows} == set(requested(fake_openai))  # every question started has its row
    assert set(in_flight) <= {r["question"] for r in rows if r["status"] == "ok"}
    assert last_line(child.stdout) == resume_line(run_dir, 3, 3), child.output()

    # the same command again runs the other three, and only them
    fake_openai.reset()
    fake_openai.responder = lambda body: Text("[[B]]", usage=(1000, 10))
    code, out, err = run_cli(args, capsys)
    assert code == 0, out + err
    assert f"{QUESTIONS} questions, 3 already done, 3 run now (3 ok, 0 errors)" in out
    assert len(fake_openai.requests) == 3 and not set(requested(fake_openai)) & {r["question"] for r in rows}
    final = intact_rows(run_dir)
    assert sorted(r["question_id"] for r in final) == sorted({r["question_id"] for r in final})
    assert {r["question"] for r in final} == {r["question"] for r in records}


def test_second_ctrl_c_quits_at_once_and_keeps_the_rows(fake_openai, gate, mmrv, tmp_path, children):
    data, videos, _ = mmrv(QUESTIONS)
    run_dir = tmp_path / "run"
    gate(immediate=1)  # the questions in flight after the first never answer during the test
    child = children(eval_args(fake_openai, data, videos, run_dir, "--concurrency", "2"))
    wait_until(lambda: len(result_lines(run_dir)) == 1 and len(fake_openai.requests) == 3, 60,
               "one row and two questions in flight", child)
    before = (run_dir / RESULTS_FILE).read_bytes()

    child.process.send_signal(signal.SIGINT)
    wait_until(lambda: "starting no new questions" in child.stdout, 10, "the Ctrl-C message", child)
    second = time.monotonic()
    child.process.send_signal(signal.SIGINT)
    code = child.wait(timeout=30)
    elapsed = time.monotonic() - second
    assert code == EXIT_INTERRUPTED, child.output()
    assert elapsed < 3, f"{elapsed:.1f}s after the second Ctrl-C\n{child.output()}"
    assert "Traceback" not in child.stderr and "Traceback" not in child.stdout, child.output()

    assert (run_dir / RESULTS_FILE).read_bytes() == before  # the row already written, intact and alone
    assert len(intact_rows(run_dir)) == 1
    assert len(fake_openai.requests) == 3  # nothing started after the first Ctrl-C
    assert last_line(child.stdout) == resume_line(run_dir, 1, 5), child.output()
    assert not (run_dir / ".lock.holder.json").exists()  # the lock was let go


# --------------------------------------------------------------------------- the grace period (no CLI flag: in-process)


def make_questions(video: Path, ids: list[str]) -> list[Question]:
    return [
        Question(question_id=qid, video=video.name, video_path=video, question=f"q {qid}?",
                 options=["(A) x", "(B) y"], letters=["A", "B"], answer="A")
        for qid in ids
    ]


class Blocking:
    """A method that answers at once, except for the question ``stuck``, which waits on ``release``."""

    name = "uniform"

    def __init__(self, stuck: str):
        self.stuck = stuck
        self.started = threading.Event()
        self.release = threading.Event()
        self.calls: list[str] = []

    def run(self, question):
        self.calls.append(question.question_id)
        if question.question_id == self.stuck:
            self.started.set()
            self.release.wait(60)  # stuck below any check, like a native decoder
        return MethodOutcome(prediction="A", extraction="brackets", raw_response="[[A]]", frames=1)

    def describe(self):
        return {"method": "uniform"}

    def prompt_names(self):
        return []


def test_ctrl_c_gives_up_a_question_that_outlasts_the_grace_period(tmp_path, synthetic_video):
    from rich.console import Console

    assert threading.current_thread() is threading.main_thread()  # the SIGINT handler needs it
    questions = make_questions(synthetic_video, ["q1", "q2", "q3"])
    method = Blocking(stuck="q2")
    run_dir = tmp_path / "run"
    sent: dict[str, float] = {}

    def interrupt() -> None:
        if method.started.wait(30):  # q2 is in flight, inside run_evaluation's signal handler
            sent["at"] = time.monotonic()
            os.kill(os.getpid(), signal.SIGINT)

    previous_handler = signal.getsignal(signal.SIGINT)
    console = Console(file=io.StringIO(), width=1000)
    timer = threading.Thread(target=interrupt, daemon=True)
    timer.start()
    try:
        summary = run_evaluation(
            questions, method, run_dir, progress=False, model="m", concurrency=1,
            grace_s=0.5, handle_signals=True, console=console,
        )
        returned = time.monotonic()
    finally:
        method.release.set()
        timer.join(5)
    assert "at" in sent
    assert returned - sent["at"] < 2, returned - sent["at"]
    assert signal.getsignal(signal.SIGINT) is previous_handler

    assert summary.interrupted and summary.exit_code == EXIT_INTERRUPTED
    assert summary.ran == 1 and summary.ok == 1
    assert summary.not_run == 2  # q2 given up after the grace period, q3 never started
    assert method.calls == ["q1", "q2"]
    assert "waiting up to 0.5s for the 1 in flight" in console.file.getvalue()
    assert [r["question_id"] for r in intact_rows(run_dir)] == ["q1"]
    time.sleep(0.3)  # q2's thread, released, finishes: it must not add a row for a question given up
    assert [r["question_id"] for r in intact_rows(run_dir)] == ["q1"]

    # resuming runs the two questions without a row
    again = Blocking(stuck="none")
    summary = run_evaluation(questions, again, run_dir, progress=False, model="m", handle_signals=False)
    assert again.calls == ["q2", "q3"] and summary.already_done == 1 and summary.exit_code == 0
    assert sorted(r["question_id"] for r in intact_rows(run_dir)) == ["q1", "q2", "q3"]


# --------------------------------------------------------------------------- full disk


def test_full_disk_stops_the_run_with_one_line_and_no_torn_row(fake_openai, mmrv, tmp_path, children, capsys):
    data, videos, records = mmrv(QUESTIONS)
    fake_openai.responder = lambda body: Text("[[B]]", usage=(1000, 10))

    # measure what a run writes, in a directory whose path is as long as the real one
    measure = tmp_path / "runA"
    code, out, err = run_cli(eval_args(fake_openai, data, videos, measure), capsys)
    assert code == 0, out + err
    config_size = (measure / "config.json").stat().st_size
    ends, total = [], 0
    for line in (measure / RESULTS_FILE).read_bytes().splitlines(keepends=True):
        total += len(line)
        ends.append(total)
    # the smallest number of rows whose file is larger than config.json (which must fit), and a limit
    # halfway between that many rows and one more: they fit, the next row does not
    fit = next(k for k in range(1, QUESTIONS + 1) if ends[k - 1] >= config_size + 64)
    assert fit < QUESTIONS, f"config.json ({config_size} B) is as large as all rows ({ends})"
    limit = (ends[fit - 1] + ends[fit]) // 2

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead

    fake_openai.reset()
    fake_openai.responder = lambda body: Text("[[B]]", usage=(1000, 10))
    run_dir = tmp_path / "runB"
    args = eval_args(fake_openai, data, videos, run_dir)
    child = children(args, preexec_fn=small_disk)
    code = child.wait(timeout=60)
    assert code == 3, child.output()
    assert "Traceback" not in child.stderr and "Traceback" not in child.stdout, child.output()
    results = run_dir / RESULTS_FILE
    stopped = [line for line in child.stdout.splitlines() if "cannot write" in line]
    assert stopped == [f"stopped: cannot write {results}: File too large "
                       "(free some space, then run the same command to resume)"], child.output()
    rows = intact_rows(run_dir)
    assert len(rows) == fit and len({r["question_id"] for r in rows}) == fit  # the rows that fit, each whole
    assert len(fake_openai.requests) == fit + 1  # the question whose row did not fit was answered, not kept
    assert last_line(child.stdout) == resume_line(run_dir, fit, QUESTIONS - fit), child.output()

    # room again: the same command resumes and completes every question exactly once
    fake_openai.reset()
    fake_openai.responder = lambda body: Text("[[B]]", usage=(1000, 10))
    code, out, err = run_cli(args, capsys)
    assert code == 0, out + err
    assert f"{QUESTIONS} questions, {fit} already done, {QUESTIONS - fit} run now" in out
    final = intact_rows(run_dir)
    assert len(final) == QUESTIONS and {r["question"] for r in final} == {r["question"] for r in records}
    assert len({r["question_id"] for r in final}) == QUESTIONS
    assert not (run_dir / REJECTED_FILE).exists()  # there was no torn line to set aside


# --------------------------------------------------------------------------- one writer per run directory


def test_second_run_on_the_same_directory_is_refused_then_resumes(
    fake_openai, gate, mmrv, tmp_path, children, capsys
):
    data, videos, records = mmrv(QUESTIONS)
    run_dir = tmp_path / "run"
    held = gate(immediate=0)
    first = children(eval_args(fake_openai, data, videos, run_dir, "--limit", "3"))
    wait_until(lambda: len(fake_openai.requests) == 1, 60, "the first run's first question", first)
    config_before = (run_dir / "config.json").read_bytes()

    started = time.monotonic()
    second = children(eval_args(fake_openai, data, videos, run_dir))
    code = second.wait(timeout=30)
    elapsed = time.monotonic() - started
    assert code == 2, second.output()
    assert elapsed < 5, f"refused after {elapsed:.1f}s"
    assert f"is in use by another sleuth process (pid {first.pid} on " in second.stderr, second.output()
    assert "Traceback" not in second.stderr, second.output()
    assert len(fake_openai.requests) == 1  # the second run asked no question
    assert (run_dir / "config.json").read_bytes() == config_before
    assert first.process.poll() is None  # the first run goes on

    held.open()
    assert first.wait(timeout=60) == 0, first.output()
    assert len(intact_rows(run_dir)) == 3
    assert not (run_dir / ".lock.holder.json").exists()

    code, out, err = run_cli(eval_args(fake_openai, data, videos, run_dir), capsys)  # the second, again
    assert code == 0, out + err
    assert f"{QUESTIONS} questions, 3 already done, 3 run now" in out
    final = intact_rows(run_dir)
    assert len(final) == QUESTIONS and len({r["question_id"] for r in final}) == QUESTIONS
    assert {r["question"] for r in final} == {r["question"] for r in records}
