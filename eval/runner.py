"""Running a method over a dataset: bounded concurrency, append-only results, resume.

Every finished question becomes one ``ResultRow`` line in
``RUN_DIR/results.jsonl``, appended, flushed and fsynced under a lock as soon
as it finishes, so a killed run loses at most the questions in flight.
Running the same command again resumes: questions that already have a row
are skipped (``retry_errors=True`` re-runs the ones whose row is an error;
the new row supersedes the old one when the file is read). A question that
fails (missing video, server down, undecodable file) gets an error row with a
one-line reason and the run goes on.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, Field

from eval.dataset import Question, RowError
from eval.methods import Method, MethodOutcome
from eval.results import CONFIG_FILE, RESULTS_FILE, TRACES_DIR, ResultRow
from eval.score import ScoreError, read_results_rows
from prompts import prompt_hashes
from sleuth.errors import ConfigError, SleuthError

# Settings that must match for a run directory to be resumed (else results would mix).
# Settings a resumed run must share with the rows already written ("retrieval": the agent's frame index).
IDENTITY_KEYS = ("method", "model", "backend_kind", "frames", "cot", "strict_official", "retrieval")

VERSIONED_PACKAGES = (
    "sleuth", "openai", "langgraph", "torch", "open_clip_torch", "faiss-cpu", "transformers",
    "decord", "av", "numpy", "pillow", "pydantic",
)


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
    replay_cache: dict[str, int] | None = None
    error_reasons: list[str] = Field(default_factory=list)  # "qid: reason", this invocation


# --------------------------------------------------------------------------- results file


def trace_filename(question_id: str) -> str:
    """A file-system-safe name for a question's trace."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", question_id).strip("._") or "question"
    return f"{safe}.json"


class ResultsWriter:
    """Appends rows to results.jsonl; thread-safe; each row is on disk before ``append`` returns."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._repair_tail()

    def _repair_tail(self) -> None:
        """A run killed mid-write can leave half a line; cut it so the next row starts clean."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        data = self.path.read_bytes()
        if data.endswith(b"\n"):
            return
        keep = data.rfind(b"\n") + 1
        with self.path.open("r+b") as fh:
            fh.truncate(keep)
            fh.flush()
            os.fsync(fh.fileno())

    def append(self, row: ResultRow) -> None:
        line = row.model_dump_json() + "\n"
        with self._lock:
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())


def read_finished(run_dir: Path) -> dict[str, ResultRow]:
    """question id -> its latest row, for resuming."""
    path = run_dir / RESULTS_FILE
    if not path.exists():
        return {}
    ResultsWriter(path)  # repairs a torn last line before reading
    try:
        return {row.question_id: row for row in read_results_rows(path)}
    except ScoreError as exc:
        raise ConfigError(f"cannot resume: {exc}") from None


# --------------------------------------------------------------------------- config


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def build_run_config(method: Method, *, backend_info: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything needed to say how a run was made. ``backend_info`` must already be free of secrets."""
    description = method.describe()
    config: dict[str, Any] = {
        "method": method.name,
        "model": backend_info.get("model", ""),
        "backend_kind": backend_info.get("backend", ""),
        "frames": description.get("frames"),
        "cot": description.get("cot", False),
        "strict_official": description.get("strict_official", False),
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
        for key in IDENTITY_KEYS:
            if key in previous and key in config and previous[key] != config[key]:
                name, was, now_ = _first_difference(key, previous[key], config[key])
                raise ConfigError(
                    f"{run_dir} holds a run with {name}={was!r}, not {now_!r}; use another --out to keep results apart"
                )
        config["created_at"] = previous.get("created_at", now)
    else:
        config["created_at"] = now
    config["updated_at"] = now
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(config, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- rows


def official_fields(model: str, raw_response: str, prediction: str | None) -> dict[str, Any]:
    """MMR-V's own result fields, so its scoring scripts can read our rows."""
    name = model or "model"
    fields: dict[str, Any] = {f"{name}_raw_response": raw_response}
    if prediction is not None:
        fields[f"{name}_response"] = {"final_answer": prediction}
    return fields


def _base_row(question: Question, method: str, model: str) -> dict[str, Any]:
    return {
        "question_id": question.question_id,
        "video": question.video,
        "video_type": question.video_type,
        "l2": question.l2,
        "l3": question.l3,
        "category": question.category,
        "question": question.question,
        "options": question.options,
        "gold": question.answer,
        "method": method,
        "model": model,
    }


def ok_row(question: Question, method: str, outcome: MethodOutcome, trace_path: str | None) -> ResultRow:
    model = outcome.model
    return ResultRow(
        **_base_row(question, method, model),
        status="ok",
        prediction=outcome.prediction,
        correct=outcome.prediction is not None and outcome.prediction == question.answer,
        extraction=outcome.extraction,
        raw_response=outcome.raw_response,
        frames=outcome.frames,
        prompt_tokens=outcome.prompt_tokens,
        completion_tokens=outcome.completion_tokens,
        cost_usd=outcome.cost_usd,
        latency_s=round(outcome.latency_s, 4),
        trace=trace_path,
        **official_fields(model, outcome.raw_response, outcome.prediction),
    )


def error_row(question: Question, method: str, model: str, reason: str) -> ResultRow:
    return ResultRow(
        **_base_row(question, method, model),
        status="error",
        error=" ".join(reason.split()) or "unknown error",
        extraction="none",
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
    return pending


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
) -> RunSummary:
    """Run ``method`` on every question that has no row yet (or an error row, with ``retry_errors``).

    ``config`` (from ``build_run_config``) is written to ``config.json``.
    ``limit`` takes the first N questions of the dataset, so a resumed run
    with the same limit covers the same questions.
    """
    if concurrency < 1:
        raise ConfigError(f"--concurrency must be at least 1 (got {concurrency})")
    if limit is not None and limit < 0:
        raise ConfigError(f"--limit must not be negative (got {limit})")
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
    run_config["invalid_rows"] = [str(e) for e in (invalid or [])]
    write_run_config(run_dir, run_config)
    model = model or str(run_config.get("model", ""))

    finished = read_finished(run_dir)
    pending = select_pending(selected, finished, retry_errors=retry_errors)
    writer = ResultsWriter(run_dir / RESULTS_FILE)

    counts = {"ok": 0, "errors": 0, "correct": 0, "prompt": 0, "completion": 0}
    costs: list[float | None] = []
    reasons: list[str] = []
    interrupted = False

    def work(question: Question) -> ResultRow:
        video = question.video_file()
        if not video.exists():
            return error_row(question, method.name, model, f"video not found: {video}")
        try:
            outcome = method.run(question)
        except SleuthError as exc:
            return error_row(question, method.name, model, str(exc))
        except Exception as exc:  # a bug or an unexpected library error must not end the batch
            return error_row(question, method.name, model, f"{type(exc).__name__}: {exc}")
        trace_rel = None
        if outcome.trace is not None:
            trace_rel = f"{TRACES_DIR}/{trace_filename(question.question_id)}"
            try:
                outcome.trace.save(run_dir / trace_rel)
            except OSError as exc:
                return error_row(question, method.name, model, f"cannot write trace {trace_rel}: {exc}")
        outcome.model = outcome.model or model
        return ok_row(question, method.name, outcome, trace_rel)

    def record(row: ResultRow) -> None:
        writer.append(row)
        if row.status == "ok":
            counts["ok"] += 1
            counts["correct"] += int(row.correct)
            counts["prompt"] += row.prompt_tokens
            counts["completion"] += row.completion_tokens
            costs.append(row.cost_usd)
        else:
            counts["errors"] += 1
            reasons.append(f"{row.question_id}: {row.error}")

    def running_cost() -> float | None:
        # a total is only honest when every question's price is known
        if not costs or any(c is None for c in costs):
            return None
        return float(sum(c for c in costs if c is not None))

    with _Progress(len(pending), progress, console, label=f"{method.name}") as bar:
        executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="sleuth-eval")
        queue = iter(pending)
        in_flight: set[Future] = set()
        try:
            # submit at most `concurrency` at a time: an interrupt then abandons nothing but the questions in flight
            for question in queue:
                in_flight.add(executor.submit(work, question))
                if len(in_flight) >= concurrency:
                    break
            while in_flight:
                done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    record(future.result())
                    bar.update(
                        counts["ok"], counts["correct"], counts["errors"],
                        counts["prompt"] + counts["completion"], running_cost(),
                    )
                    nxt = next(queue, None)
                    if nxt is not None:
                        in_flight.add(executor.submit(work, nxt))
        except KeyboardInterrupt:
            interrupted = True
            for future in in_flight:
                future.cancel()
            raise
        finally:
            executor.shutdown(wait=not interrupted, cancel_futures=True)

    ran = counts["ok"] + counts["errors"]
    stats = None
    if cache_stats is not None:
        try:
            stats = dict(cache_stats())
        except Exception:  # statistics are a nicety; never fail a finished run over them
            stats = None
    return RunSummary(
        run_dir=str(run_dir),
        questions=len(selected),
        already_done=len(selected) - len(pending),
        ran=ran,
        ok=counts["ok"],
        errors=counts["errors"],
        correct=counts["correct"],
        accuracy=(counts["correct"] / counts["ok"]) if counts["ok"] else None,
        prompt_tokens=counts["prompt"],
        completion_tokens=counts["completion"],
        cost_usd=running_cost(),
        interrupted=interrupted,
        replay_cache=stats,
        error_reasons=reasons,
    )
