"""Running a method over a dataset: bounded concurrency, append-only results, resume.

Every finished question becomes one ``ResultRow`` line in
``RUN_DIR/results.jsonl``, written in one piece and fsynced by the worker
that finished it, so a killed run loses at most the questions in flight and
never leaves half a row. Running the same command again resumes: questions
that already have a row are skipped (``retry_errors=True`` re-runs the ones
whose row is an error; the new row supersedes the old one when the file is
read).

What a run promises:

- **Honest rows.** A question the method could not do (model unreachable, a
  tool that cannot work, its deadline passed) is an error row with its kind
  and reason, never an answer; ``--retry-errors`` re-runs it.
- **A circuit breaker.** The same configuration-class failure (see
  ``sleuth.errors.CONFIG_CLASS_KINDS``) several questions in a row stops the
  run with one line; the rows so far are kept.
- **Deadlines.** Each question runs under ``question_timeout`` (every model
  request inside it is shortened to fit); one that overruns it by the grace
  period is abandoned with an error row.
- **Clean interrupts.** The first Ctrl-C stops starting questions and waits
  (at most ``grace_s``) for those in flight, whose rows are written; the
  second quits at once. Rows already written are never lost.
- **One writer.** The run directory is locked for the run's duration.
- **No torn files.** A row that cannot be written completely (disk full) is
  cut back out and the run stops with one line.
"""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import json
import os
import platform
import queue
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, Field

from eval.benchmarks import Benchmark, get_benchmark
from eval.dataset import Question, RowError
from eval.methods import Method, MethodFailure, MethodOutcome
from eval.results import CONFIG_FILE, RESULTS_FILE, TRACES_DIR, ResultRow, read_result_rows
from eval.run_lock import RunDirectoryLock
from prompts import prompt_hashes
from sleuth import deadline as _deadline
from sleuth.errors import CONFIG_CLASS_KINDS, ConfigError, SleuthError, StorageError
from sleuth.redact import redact, redact_value


VERSIONED_PACKAGES = (
    "sleuth", "openai", "langgraph", "torch", "open_clip_torch", "faiss-cpu", "transformers",
    "decord", "av", "numpy", "pillow", "pydantic",
)

REJECTED_FILE = "results.rejected.jsonl"  # lines of results.jsonl that are not rows, set aside
DEFAULT_BREAKER = 3  # configuration-class failures in a row that stop a run
DEFAULT_QUESTION_TIMEOUT = 900.0  # seconds per question in `sleuth eval`, every model call included
DEFAULT_GRACE_S = 30.0  # after Ctrl-C (or a stop), how long questions in flight may take to finish

# Exit codes of `sleuth eval` (documented in the README).
EXIT_OK = 0  # every question has an answer row
EXIT_ERRORS = 1  # the run finished, but some questions have error rows
EXIT_STOPPED = 3  # the run stopped early (circuit breaker, disk full); rows so far are kept
EXIT_INTERRUPTED = 130  # Ctrl-C


class RunSummary(BaseModel):
    run_dir: str
    questions: int  # in the (limited) dataset
    already_done: int  # skipped because a row existed
    ran: int  # finished in this invocation
    ok: int
    errors: int
    correct: int
    accuracy: float | None  # over this invocation's ok rows
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    interrupted: bool = False
    stopped: str | None = None  # why the run stopped before every question was tried
    not_run: int = 0  # questions left without a row by an interrupt or a stop
    unanswered: int = 0  # questions whose latest row is an error, this run's and earlier ones
    replay_cache: dict[str, int] | None = None
    error_reasons: list[str] = Field(default_factory=list)  # "qid: reason", this invocation
    rejected_lines: list[str] = Field(default_factory=list)  # lines of results.jsonl set aside

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.stopped:
            return EXIT_STOPPED
        return EXIT_ERRORS if self.unanswered or self.not_run else EXIT_OK


# --------------------------------------------------------------------------- results file


def trace_filename(question_id: str) -> str:
    """A unique, bounded, file-system-safe name for a question's trace: a readable prefix plus a hash
    of the whole id (ids like ``a/b``, ``a_b`` and ``a:b`` must not share a file)."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", question_id).strip("._")[:60] or "question"
    digest = hashlib.sha256(question_id.encode("utf-8")).hexdigest()[:12]
    return f"{readable}-{digest}.json"


def _storage_error(path: Path, exc: OSError) -> StorageError:
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        reason += " (free some space, then run the same command to resume)"
    return StorageError(f"cannot write {path}: {reason}")


class ResultsWriter:
    """Appends rows to results.jsonl; thread-safe; each row is whole on disk before ``append`` returns,
    or not there at all (a partial write is cut back and ``StorageError`` raised)."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._repair_tail()

    def _repair_tail(self) -> None:
        """A run killed mid-write can leave half a line; set it aside so the next row starts clean."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        data = self.path.read_bytes()
        if data.endswith(b"\n"):
            return
        keep = data.rfind(b"\n") + 1
        try:
            _append_rejected(self.path, [data[keep:].decode("utf-8", "replace")])
            with self.path.open("r+b") as fh:
                fh.truncate(keep)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise _storage_error(self.path, exc) from None

    def append(self, row: ResultRow) -> None:
        data = (row.model_dump_json() + "\n").encode("utf-8")
        with self._lock:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError as exc:
                raise _storage_error(self.path, exc) from None
            try:
                size = os.fstat(fd).st_size
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                    os.fsync(fd)
                except OSError as exc:
                    try:
                        os.ftruncate(fd, size)  # never leave a torn row behind
                    except OSError:
                        pass
                    raise _storage_error(self.path, exc) from None
            finally:
                os.close(fd)


def _append_rejected(results: Path, lines: list[str]) -> None:
    with (results.parent / REJECTED_FILE).open("a", encoding="utf-8") as fh:
        for line in lines:
            fh.write(line.rstrip("\n") + "\n")


def read_finished(run_dir: Path) -> tuple[dict[str, ResultRow], list[str]]:
    """question id -> its latest row, for resuming; plus one line per line of results.jsonl that is
    not a row. Those lines are moved to results.rejected.jsonl: their questions run again."""
    path = run_dir / RESULTS_FILE
    if not path.exists():
        return {}, []
    ResultsWriter(path)  # sets a torn last line aside before reading
    rows, problems = read_result_rows(path)
    if problems:
        _set_aside_bad_lines(path)
    return rows, problems


def _set_aside_bad_lines(path: Path) -> None:
    """Rewrite results.jsonl without its unreadable lines (atomically), keeping them in the rejected file."""
    good: list[str] = []
    bad: list[str] = []
    # split at "\n" only: JSON keeps U+2028 and friends raw inside strings, and splitlines() breaks at them
    for line in path.read_text(encoding="utf-8", errors="replace").split("\n"):
        if not line.strip():
            continue
        try:
            ResultRow.model_validate(json.loads(line))
        except ValueError:  # JSONDecodeError and ValidationError are both ValueErrors
            bad.append(line)
            continue
        good.append(line)
    try:
        _append_rejected(path, bad)
        tmp = path.with_suffix(".jsonl.tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write("".join(line + "\n" for line in good))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise _storage_error(path, exc) from None


# --------------------------------------------------------------------------- config


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def build_run_config(
    method: Method, *, backend_info: dict[str, Any], benchmark: str = "mmr_v", variant: str | None = None,
    extra: dict[str, Any] | None = None, identity: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything needed to say how a run was made. ``backend_info`` must already be free of secrets.

    ``identity`` holds what a resumed run must share with the rows already written: the benchmark,
    the method and the method's own ``identity()``, the model, plus ``identity`` given here (e.g. the
    agent's frame index)."""
    description = method.describe()
    config: dict[str, Any] = {
        "benchmark": benchmark,
        "variant": variant,
        "method": method.name,
        "model": backend_info.get("model", ""),
        "backend_kind": backend_info.get("backend", ""),
        "frames": description.get("frames"),
        **method.identity(),  # e.g. cot and strict_official for the uniform method, strategy for the agent
        "identity": {
            "benchmark": benchmark, **({"variant": variant} if variant else {}), "method": method.name, "model": backend_info.get("model", ""),
            "backend_kind": backend_info.get("backend", ""), **method.identity(), **(identity or {}),
        },
        "method_settings": description,
        "backend": backend_info,
        "prompts": prompt_hashes(method.prompt_names()),
        "versions": package_versions(),
    }
    config.update(extra or {})
    return config


def _first_difference(name: str, old: Any, new: Any) -> tuple[str, Any, Any]:
    """Where two settings differ: ``retrieval.frame_fit``, not the whole ``retrieval`` dict."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                return _first_difference(f"{name}.{key}", old.get(key), new.get(key))
    return name, old, new


def write_run_config(run_dir: Path, config: dict[str, Any]) -> Path:
    """Write config.json; refuses to resume a directory made with different identity settings."""
    path = run_dir / CONFIG_FILE
    now = _dt.datetime.now(_dt.timezone.utc).isoformat()
    config = dict(config)
    if path.exists():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: unreadable run configuration ({exc}); use a new --out") from None
        old, new = previous.get("identity"), config.get("identity")
        if isinstance(old, dict) and isinstance(new, dict) and old != new:
            name, was, now_ = _first_difference("identity", old, new)
            raise ConfigError(
                f"{run_dir} holds a run with {name.removeprefix('identity.')}={was!r}, not {now_!r}; "
                "use another --out to keep results apart"
            )
        config["created_at"] = previous.get("created_at", now)
    else:
        config["created_at"] = now
    config["updated_at"] = now
    tmp = path.with_suffix(".json.tmp")
    try:
        tmp.write_text(json.dumps(redact_value(config), indent=2, ensure_ascii=False, default=str), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _storage_error(path, exc) from None
    return path


# --------------------------------------------------------------------------- rows


def _base_row(question: Question, method: str, model: str, benchmark: Benchmark) -> dict[str, Any]:
    return {
        "question_id": question.question_id,
        "video": question.video,
        **benchmark.row_fields(question),
        "question": question.question,
        "options": question.options,
        "gold": question.answer,
        "answer_kind": question.answer_kind,
        "flags": list(question.flags),
        "benchmark": benchmark.name,
        "method": method,
        "model": model,
    }


def ok_row(
    question: Question, method: str, outcome: MethodOutcome, trace_path: str | None, benchmark: Benchmark
) -> ResultRow:
    model = outcome.model
    score = benchmark.score(outcome.prediction, question.answer, question.answer_kind)
    return ResultRow(
        **_base_row(question, method, model, benchmark),
        status="ok",
        prediction=outcome.prediction,
        correct=score == 1.0,
        score=score,
        extraction=outcome.extraction,
        raw_response=outcome.raw_response,
        frames=outcome.frames,
        prompt_tokens=outcome.prompt_tokens,
        completion_tokens=outcome.completion_tokens,
        cost_usd=outcome.cost_usd,
        latency_s=round(outcome.latency_s, 4),
        trace=trace_path,
        unseen_evidence=outcome.unseen_evidence,
        pixels=outcome.pixels,
        answer_reason=outcome.answer_reason,
        **benchmark.official_fields(model, outcome.raw_response, outcome.prediction),
    )


def error_row(
    question: Question, method: str, model: str, reason: str, *, benchmark: Benchmark, kind: str = "error",
    trace_path: str | None = None,
) -> ResultRow:
    return ResultRow(
        **_base_row(question, method, model, benchmark),
        status="error",
        error=redact(" ".join(reason.split())) or "unknown error",
        error_kind=kind,
        extraction="none",
        trace=trace_path,
    )


# --------------------------------------------------------------------------- progress


class _Progress:
    """A rich progress bar with accuracy so far, tokens and cost; silent when disabled."""

    def __init__(self, total: int, enabled: bool, console: Any = None, label: str = "eval"):
        self.enabled = enabled and total > 0
        self._progress = None
        if not self.enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("acc {task.fields[acc]}"),
            TextColumn("err {task.fields[err]}"),
            TextColumn("tok {task.fields[tok]}"),
            TextColumn("{task.fields[cost]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._task = self._progress.add_task(label, total=total, acc="-", err=0, tok=0, cost="$?")

    def __enter__(self) -> "_Progress":
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, ok: int, correct: int, errors: int, tokens: int, cost: float | None) -> None:
        if self._progress is None:
            return
        acc = f"{100.0 * correct / ok:.1f}%" if ok else "-"
        self._progress.update(
            self._task, advance=1, acc=acc, err=errors, tok=f"{tokens:,}", cost=f"${cost:.4f}" if cost is not None else "$?"
        )


# --------------------------------------------------------------------------- the run


def select_pending(
    questions: list[Question], finished: dict[str, ResultRow], *, retry_errors: bool
) -> list[Question]:
    pending = []
    for question in questions:
        row = finished.get(question.question_id)
        if row is None or (retry_errors and row.status == "error"):
            pending.append(question)
    return by_video(pending)


def _quietly(prefetch: Callable[[Question], Any], question: Question) -> None:
    """Run a speculative prefetch; whatever goes wrong is the question's own run to report."""
    try:
        prefetch(question)
    except Exception:  # noqa: BLE001
        pass


def by_video(questions: list[Question]) -> list[Question]:
    """The questions with those on the same video next to each other (videos in order of first
    appearance, questions in dataset order within each), so that a video's frames are decoded once
    and served to all its questions while they are in the frame store."""
    groups: dict[str, list[Question]] = {}
    for question in questions:
        groups.setdefault(str(question.video_file()), []).append(question)
    return [question for group in groups.values() for question in group]


def run_evaluation(
    questions: list[Question],
    method: Method,
    run_dir: str | Path,
    *,
    config: dict[str, Any] | None = None,
    concurrency: int = 1,
    retry_errors: bool = False,
    limit: int | None = None,
    invalid: list[RowError] | None = None,
    progress: bool = True,
    console: Any = None,
    cache_stats: Callable[[], dict[str, int]] | None = None,
    model: str = "",
    question_timeout: float | None = None,
    breaker: int = DEFAULT_BREAKER,
    grace_s: float = DEFAULT_GRACE_S,
    handle_signals: bool = True,
    unusable_videos: dict[str, str] | None = None,
    benchmark: Benchmark | None = None,
    on_start: Callable[[Path], Any] | None = None,
) -> RunSummary:
    """Run ``method`` on every question that has no row yet (or an error row, with ``retry_errors``).

    ``config`` (from ``build_run_config``) is written to ``config.json``.
    ``limit`` takes the first N questions of the dataset, so a resumed run
    with the same limit covers the same questions. ``question_timeout`` bounds
    each question (None: no limit); ``breaker`` configuration-class failures
    in a row stop the run (0: never); ``handle_signals`` lets the first
    Ctrl-C stop the run gracefully (main thread only). ``unusable_videos``
    (path -> reason, from the preflight) gives those questions error rows
    without running them.
    """
    if concurrency < 1:
        raise ConfigError(f"--concurrency must be at least 1 (got {concurrency})")
    if limit is not None and limit < 0:
        raise ConfigError(f"--limit must not be negative (got {limit})")
    if question_timeout is not None and question_timeout <= 0:
        raise ConfigError(f"--question-timeout must be positive (got {question_timeout:g})")
    run_dir = Path(run_dir)
    try:
        (run_dir / TRACES_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{run_dir}: cannot create the run directory ({exc.strerror or exc})") from None

    selected = questions[:limit] if limit is not None else list(questions)
    run_config = dict(config or {"method": method.name, "model": model})
    run_config.setdefault("method", method.name)
    run_config.setdefault("model", model)
    run_config["limit"] = limit
    run_config["concurrency"] = concurrency
    run_config["question_timeout_s"] = question_timeout
    run_config["invalid_rows"] = [str(e) for e in (invalid or [])]
    model = model or str(run_config.get("model", ""))
    benchmark = benchmark or get_benchmark(str(run_config.get("benchmark", "mmr_v")), run_config.get("variant"))

    with RunDirectoryLock(run_dir):
        write_run_config(run_dir, run_config)
        if on_start is not None:
            on_start(run_dir)  # e.g. record the run specification, under the lock
        finished, rejected = read_finished(run_dir)
        if rejected and console is not None:
            console.print(
                f"[yellow]warning:[/] {len(rejected)} unreadable line(s) in {run_dir / RESULTS_FILE} moved to "
                f"{REJECTED_FILE}; their questions run again (first: {rejected[0]})", highlight=False, soft_wrap=True,
            )
        run = _Run(
            method, run_dir, model=model, concurrency=concurrency, question_timeout=question_timeout,
            breaker=breaker, grace_s=grace_s, console=console, unusable_videos=unusable_videos, benchmark=benchmark,
        )
        pending = select_pending(selected, finished, retry_errors=retry_errors)
        with _Progress(len(pending), progress, console, label=f"{method.name}") as bar:
            with _SigintHandler(run, enabled=handle_signals):
                run.execute(pending, bar)
        if run.worker_interrupt:
            raise KeyboardInterrupt  # Ctrl-C reached a worker (in-process use): rows so far are on disk

    latest = {**finished, **run.rows}
    stats = None
    if cache_stats is not None:
        try:
            stats = dict(cache_stats())
        except Exception:  # statistics are a nicety; never fail a finished run over them
            stats = None
    counts = run.counts
    return RunSummary(
        run_dir=str(run_dir),
        questions=len(selected),
        already_done=len(selected) - len(pending),
        ran=counts["ok"] + counts["errors"],
        ok=counts["ok"],
        errors=counts["errors"],
        correct=counts["correct"],
        accuracy=(counts["correct"] / counts["ok"]) if counts["ok"] else None,
        prompt_tokens=counts["prompt"],
        completion_tokens=counts["completion"],
        cost_usd=run.running_cost(),
        interrupted=run.interrupts > 0,
        stopped=run.stop_reason if run.interrupts == 0 else None,
        not_run=run.not_run,
        unanswered=sum(1 for q in selected if q.question_id in latest and latest[q.question_id].status == "error"),
        replay_cache=stats,
        error_reasons=run.reasons,
        rejected_lines=rejected,
    )


@dataclass
class _Slot:
    """One question in flight. ``settled`` turns True once its row is written or it is given up:
    whichever of the worker and the main thread gets there first decides, under ``lock``."""

    question: Question
    deadline: _deadline.Deadline
    started: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)
    settled: bool = False


# A question still running this long after its deadline (or as long again, for short deadlines) is
# stuck below any check (a native decoder, a tool); it is abandoned with an error row, its thread
# left to finish on its own.
HARD_DEADLINE_GRACE_S = 15.0


class _Run:
    """The worker threads and the main loop of one invocation."""

    def __init__(self, method: Method, run_dir: Path, *, model: str, concurrency: int,
                 question_timeout: float | None, breaker: int, grace_s: float, console: Any,
                 benchmark: Benchmark, unusable_videos: dict[str, str] | None = None):
        self.method = method
        self.run_dir = run_dir
        self.model = model
        self.concurrency = concurrency
        self.question_timeout = question_timeout
        self.breaker = breaker
        self.grace_s = grace_s
        self.console = console
        self.benchmark = benchmark
        self.unusable_videos = dict(unusable_videos or {})
        self.writer = ResultsWriter(run_dir / RESULTS_FILE)
        self.done: queue.Queue = queue.Queue()
        self.rows: dict[str, ResultRow] = {}
        self.counts = {"ok": 0, "errors": 0, "correct": 0, "prompt": 0, "completion": 0}
        self.costs: list[float | None] = []
        self.reasons: list[str] = []
        self.stop_reason: str | None = None
        self.stop_started: float | None = None
        self.interrupts = 0
        self.announced = 0  # interrupts already reported to the user
        self.worker_interrupt = False
        self.not_run = 0
        self._streak_kind: str | None = None
        self._streak = 0
        self._prefetched: set[str] = set()  # videos whose frames a method was asked to decode ahead

    # -- worker side

    def work(self, slot: _Slot) -> None:
        try:
            with _deadline.use(slot.deadline):
                row = self.answer(slot.question)
            with slot.lock:
                if slot.settled:  # given up by the main thread meanwhile: it already accounted for it
                    return
                self.writer.append(row)
                slot.settled = True
            self.done.put((slot, row, None))
        except BaseException as exc:  # StorageError, or Ctrl-C raised inside a method: the main thread decides
            self.done.put((slot, None, exc))

    def answer(self, question: Question) -> ResultRow:
        name, model = self.method.name, self.model
        video = question.video_file()
        if not video.exists():
            return self.error(question, f"video not found: {video}", kind="video")
        if str(video) in self.unusable_videos:
            return self.error(question, f"video {video}: {self.unusable_videos[str(video)]}", kind="video")
        try:
            outcome = self.method.run(question)
        except MethodFailure as exc:
            trace_rel = self.save_trace(question, exc.trace) if exc.trace is not None else None
            return self.error(question, str(exc), kind=exc.kind, trace_path=trace_rel)
        except SleuthError as exc:
            return self.error(question, str(exc), kind=exc.kind)
        except Exception as exc:  # a bug or an unexpected library error must not end the batch
            return self.error(question, f"{type(exc).__name__}: {exc}", kind="internal")
        trace_rel = self.save_trace(question, outcome.trace) if outcome.trace is not None else None
        outcome.model = outcome.model or model
        return ok_row(question, name, outcome, trace_rel, self.benchmark)

    def error(self, question: Question, reason: str, **kwargs: Any) -> ResultRow:
        return error_row(question, self.method.name, self.model, reason, benchmark=self.benchmark, **kwargs)

    def save_trace(self, question: Question, trace: Any) -> str:
        rel = f"{TRACES_DIR}/{trace_filename(question.question_id)}"
        try:
            trace.save(self.run_dir / rel)
        except OSError as exc:
            raise _storage_error(self.run_dir / rel, exc) from None
        return rel

    # -- main thread

    def execute(self, pending: list[Question], bar: "_Progress") -> None:
        queue_ = list(reversed(pending))
        in_flight: dict[int, _Slot] = {}
        while True:
            self._announce(len(in_flight))
            while self.stop_reason is None and queue_ and len(in_flight) < self.concurrency:
                slot = _Slot(queue_.pop(), _deadline.Deadline(self.question_timeout))
                in_flight[id(slot)] = slot
                threading.Thread(target=self.work, args=(slot,), daemon=True, name="sleuth-question").start()
                self._prefetch_next_video(slot.question, queue_)
            if not in_flight or self.interrupts > 1:
                break
            try:
                slot, row, exc = self.done.get(timeout=0.1)
            except queue.Empty:
                self._enforce_deadlines(in_flight, bar)
                self._enforce_grace(in_flight)
                continue
            in_flight.pop(id(slot), None)
            if exc is not None:
                self.not_run += 1  # it ended without a row (none written, or cut back): it runs again on resume
                self._on_worker_exception(exc)
            else:
                self._record(row, bar)
        self.not_run += len(queue_) + len(in_flight)  # += : keeps those given up by _enforce_grace
        for slot in in_flight.values():  # the second Ctrl-C: leave them, their threads end with the process
            slot.deadline.cancel()

    def _prefetch_next_video(self, started: Question, queue_: list[Question]) -> None:
        """Questions come video by video: while this video's questions wait on the model, a method that can
        (``prefetch(question)``) decodes the next video's frames. Once per video; never fails the run."""
        prefetch = getattr(self.method, "prefetch", None)
        if prefetch is None:
            return
        for upcoming in reversed(queue_[-64:]):  # the next questions to start, in order
            if upcoming.video != started.video:
                if upcoming.video not in self._prefetched:
                    self._prefetched.add(upcoming.video)
                    threading.Thread(target=_quietly, args=(prefetch, upcoming), daemon=True,
                                     name="sleuth-prefetch").start()
                return

    def stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            self.stop_started = time.monotonic()

    def _announce(self, in_flight: int) -> None:
        """Report interrupts from the main loop (a signal handler must not print while rich draws)."""
        if self.interrupts == self.announced or self.console is None:
            return
        self.announced = self.interrupts
        if self.interrupts == 1:
            self.console.print(
                f"[yellow]Ctrl-C: starting no new questions; waiting up to {self.grace_s:g}s for the {in_flight} "
                "in flight (Ctrl-C again to quit now)[/]", highlight=False, soft_wrap=True,
            )

    def _record(self, row: ResultRow, bar: "_Progress") -> None:
        self.rows[row.question_id] = row
        if row.status == "ok":
            self.counts["ok"] += 1
            self.counts["correct"] += int(row.correct)
            self.counts["prompt"] += row.prompt_tokens
            self.counts["completion"] += row.completion_tokens
            self.costs.append(row.cost_usd)
            self._streak_kind, self._streak = None, 0
        else:
            self.counts["errors"] += 1
            self.reasons.append(f"{row.question_id}: {row.error}")
            self._trip_breaker(row)
        bar.update(
            self.counts["ok"], self.counts["correct"], self.counts["errors"],
            self.counts["prompt"] + self.counts["completion"], self.running_cost(),
        )

    def _trip_breaker(self, row: ResultRow) -> None:
        kind = row.error_kind or ""
        if kind not in CONFIG_CLASS_KINDS:
            return
        self._streak = self._streak + 1 if kind == self._streak_kind else 1
        self._streak_kind = kind
        if self.breaker and self._streak >= self.breaker:
            self.stop(f"{self._streak} questions in a row failed the same way ({kind}): {row.error}")

    def _on_worker_exception(self, exc: BaseException) -> None:
        if isinstance(exc, KeyboardInterrupt):
            self.worker_interrupt = True
            self.stop("interrupted")
        elif isinstance(exc, SleuthError):  # StorageError: nothing more can be saved
            self.stop(str(exc))
        else:
            self.stop(f"{type(exc).__name__}: {exc}")

    def _enforce_deadlines(self, in_flight: dict[int, _Slot], bar: "_Progress") -> None:
        if self.question_timeout is None:
            return
        limit = self.question_timeout + min(HARD_DEADLINE_GRACE_S, self.question_timeout)
        now = time.monotonic()
        for key, slot in list(in_flight.items()):
            if now - slot.started < limit:
                continue
            slot.deadline.cancel()
            row = self.error(
                slot.question,
                f"no result within {limit:g}s (--question-timeout {self.question_timeout:g}); the question was abandoned",
                kind="deadline",
            )
            with slot.lock:
                if slot.settled:
                    continue  # its row arrived just now; it is in the queue
                try:
                    self.writer.append(row)
                except StorageError as exc:
                    self.stop(str(exc))
                    continue
                slot.settled = True
            del in_flight[key]
            self._record(row, bar)

    def _enforce_grace(self, in_flight: dict[int, _Slot]) -> None:
        """Once stopping, questions in flight get ``grace_s`` to finish; then they are given up, unrecorded
        (they run again on resume), and their threads are told to stop at their next check."""
        if self.stop_started is None or time.monotonic() - self.stop_started < self.grace_s:
            return
        for key, slot in list(in_flight.items()):
            with slot.lock:
                if slot.settled:
                    continue
                slot.settled = True
            slot.deadline.cancel()
            del in_flight[key]
            self.not_run += 1

    def running_cost(self) -> float | None:
        # a total is only honest when every question's price is known
        if not self.costs or any(c is None for c in self.costs):
            return None
        return float(sum(c for c in self.costs if c is not None))


class _SigintHandler:
    """While a run is executing, Ctrl-C asks it to stop (first press) or to quit now (second press)
    instead of raising KeyboardInterrupt wherever the main thread happens to be."""

    def __init__(self, run: _Run, *, enabled: bool):
        self.run = run
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self._previous: Any = None

    def __enter__(self) -> "_SigintHandler":
        if self.enabled:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: Any) -> None:
        self.run.interrupts += 1
        self.run.stop("interrupted")
