"""An evaluation sharded over Ray workers, merged and resumable as one run.

The driver holds the run directory, takes the questions that have no row
yet, splits them by video into shards (a video's questions stay together, so
each worker opens each video once) and starts one Ray task per shard. A task
rebuilds the run from the run specification (``RunSpec``: nothing else
travels; the API key comes from the worker's environment), picks a healthy
model server from the pool (``eval.servers``), and runs its questions with
the ordinary runner into a directory of its own, ``shards/shard-K``, with its
own resumable ``results.jsonl``. A worker that dies is retried by Ray and
resumes its shard from the rows it wrote. When the tasks are done, their rows
and traces are merged into the run directory; rows left by a run that was
stopped are merged when the same command runs again, so no finished row is
lost and no question runs twice.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel

from eval.results import CONFIG_FILE, RESULTS_FILE, TRACES_DIR, ResultRow
from eval.run_lock import RunDirectoryLock
from eval.runner import ResultsWriter, by_video, read_finished, select_pending
from eval.servers import choose_server
from eval.spec import RunSpec, load_dataset, write_spec
from sleuth.errors import ConfigError, SleuthError
from sleuth.ray_support import require_ray

SHARDS_DIR = "shards"


class ShardedSummary(BaseModel):
    run_dir: str
    questions: int
    already_done: int
    shards: int
    ran: int
    ok: int
    errors: int
    servers: dict[str, str]  # shard -> the server it used

    @property
    def exit_code(self) -> int:
        return 1 if self.errors else 0


def shard_dir(run_dir: Path, shard: int) -> Path:
    return Path(run_dir) / SHARDS_DIR / f"shard-{shard:03d}"


def split_by_video(questions: list[Any], shards: int) -> list[list[str]]:
    """Question ids in ``shards`` groups, whole videos at a time, the biggest videos spread first."""
    videos: dict[str, list[str]] = {}
    for question in by_video(questions):
        videos.setdefault(str(question.video_file()), []).append(question.question_id)
    groups: list[list[str]] = [[] for _ in range(max(1, shards))]
    for ids in sorted(videos.values(), key=len, reverse=True):
        min(groups, key=len).extend(ids)
    return [group for group in groups if group]


def run_shard(spec_data: dict[str, Any], shard: int, question_ids: list[str], servers: list[str]) -> dict[str, Any]:
    """One shard, in a Ray worker: the run rebuilt from its specification, on a healthy server."""
    from eval.runner import build_run_config, run_evaluation
    from eval.spec import make_spec, prepare

    spec = make_spec(spec_data)
    server = choose_server(servers, shard, api_key=spec.backend.api_key) if servers else spec.backend.base_url
    spec = spec.model_copy(update={"backend": spec.backend.model_copy(update={"base_url": server})})
    benchmark, dataset = load_dataset(spec)
    wanted = set(question_ids)
    questions = [q for q in dataset.questions if q.question_id in wanted]
    run = prepare(spec, benchmark, dataset)
    config = build_run_config(run.method, backend_info=spec.backend.public_dict(), benchmark=benchmark.name,
                              variant=spec.variant, extra=run.config_extra, identity=run.identity_extra)
    summary = run_evaluation(
        questions, run.method, shard_dir(spec.out, shard), config=config, concurrency=spec.concurrency,
        retry_errors=spec.retry_errors, progress=False, model=spec.backend.model,
        question_timeout=spec.question_timeout, breaker=spec.stop_after, handle_signals=False, benchmark=benchmark,
    )
    return {"shard": shard, "server": server, "ran": summary.ran, "ok": summary.ok, "errors": summary.errors}


def merge_shards(run_dir: Path) -> int:
    """Move every shard's rows and traces into the run directory; returns the rows merged.

    A row is appended before its shard file is removed, and a row the run
    directory already holds identically is not appended again, so a merge cut
    short loses nothing and duplicates nothing when it runs again.
    """
    root = Path(run_dir) / SHARDS_DIR
    if not root.is_dir():
        return 0
    finished, _ = read_finished(run_dir)
    writer = ResultsWriter(Path(run_dir) / RESULTS_FILE)
    merged = 0
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        rows, _ = read_finished(folder)
        traces = folder / TRACES_DIR
        if traces.is_dir():
            (Path(run_dir) / TRACES_DIR).mkdir(parents=True, exist_ok=True)
            for trace in traces.iterdir():
                os.replace(trace, Path(run_dir) / TRACES_DIR / trace.name)
        for row in rows.values():
            if _same(finished.get(row.question_id), row):
                continue
            writer.append(row)
            merged += 1
        main_config, shard_config = Path(run_dir) / CONFIG_FILE, folder / CONFIG_FILE
        if not main_config.exists() and shard_config.exists():
            shutil.copyfile(shard_config, main_config)
        shutil.rmtree(folder)
    try:
        root.rmdir()  # every shard merged
    except OSError:
        pass
    return merged


def _inherit_identity(run_dir: Path, folder: Path) -> None:
    """A shard starts from the run's config.json, so the runner refuses a shard that is not the same run."""
    main_config = Path(run_dir) / CONFIG_FILE
    if main_config.exists() and not (folder / CONFIG_FILE).exists():
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(main_config, folder / CONFIG_FILE)


def _same(old: ResultRow | None, new: ResultRow) -> bool:
    return old is not None and old.model_dump(mode="json") == new.model_dump(mode="json")


def run_sharded(
    spec: RunSpec,
    *,
    shards: int,
    servers: list[str] | None = None,
    task_retries: int = 3,
    on_shard: Callable[[dict[str, Any]], None] | None = None,
) -> ShardedSummary:
    """Run ``spec`` as ``shards`` Ray tasks (see the module docstring); Ray must be installed."""
    ray = require_ray()
    if shards < 1:
        raise ConfigError(f"--shards must be at least 1 (got {shards})")
    run_dir = Path(spec.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunDirectoryLock(run_dir):
        merge_shards(run_dir)  # rows an interrupted run's workers wrote
        write_spec(spec, run_dir)
        benchmark, dataset = load_dataset(spec)
        selected = dataset.questions[: spec.limit] if spec.limit is not None else dataset.questions
        finished, _ = read_finished(run_dir)
        pending = select_pending(selected, finished, retry_errors=spec.retry_errors)
        groups = split_by_video(pending, shards)
        outcomes: list[dict[str, Any]] = []
        if groups:
            if not ray.is_initialized():
                key = spec.backend.api_key
                if key is not None and "OPENAI_API_KEY" not in os.environ:
                    # a Ray started here: its workers inherit this environment, the key stays out of files
                    os.environ["OPENAI_API_KEY"] = key.get_secret_value()
                ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
            for k in range(len(groups)):
                _inherit_identity(run_dir, shard_dir(run_dir, k))
            task = ray.remote(run_shard).options(max_retries=task_retries, num_cpus=1)
            data = spec_for_workers(spec)
            refs = [task.remote(data, k, ids, list(servers or [])) for k, ids in enumerate(groups)]
            try:
                for ref in refs:
                    try:
                        outcomes.append(ray.get(ref))
                    except ray.exceptions.RayTaskError as exc:
                        if isinstance(exc.cause, SleuthError):
                            raise exc.cause from None  # sleuth's own one-line error, not a remote traceback
                        raise
                    if on_shard is not None:
                        on_shard(outcomes[-1])
            finally:
                merge_shards(run_dir)
        latest, _ = read_finished(run_dir)
    rows = [latest[q.question_id] for q in pending if q.question_id in latest]
    return ShardedSummary(
        run_dir=str(run_dir),
        questions=len(selected),
        already_done=len(selected) - len(pending),
        shards=len(groups),
        ran=len(rows),
        ok=sum(1 for r in rows if r.status == "ok"),
        errors=sum(1 for r in rows if r.status == "error"),
        servers={str(o["shard"]): str(o["server"]) for o in outcomes},
    )


def spec_for_workers(spec: RunSpec) -> dict[str, Any]:
    """The specification as workers rebuild it: without the API key (theirs comes from their environment)."""
    data = spec.model_dump(mode="json")
    data["backend"].pop("api_key", None)
    return json.loads(json.dumps(data))
