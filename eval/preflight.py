"""Checks before the first question: everything a run needs, in seconds, before any money is spent.

A run that is going to fail for every question (a dead server URL, a wrong
key or model name, CLIP weights that cannot be loaded, a cache that cannot
be written, videos that are not there) fails here with one line saying what
to do, instead of producing hundreds of identical error rows. The stages run
cheapest first, and videos are checked before any model loads:

1. ``check_videos``: every video the run needs is a readable video file
   (container headers only; special files are never opened);
2. ``check_backends``: each model server lists its models and answers one
   tiny request (``Backend.preflight``);
3. ``check_frame_index``: the CLIP model loads, embeds a text, and the index
   cache directory takes a file.

``sleuth eval --dry-run`` runs them and stops.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from eval.dataset import Question
from sleuth.errors import ConfigError, SleuthError
from sleuth.redact import redact


class PreflightError(ConfigError):
    """The run cannot start; the message says what to fix."""


class PreflightReport(BaseModel):
    videos: int = 0
    unusable_videos: dict[str, str] = Field(default_factory=dict)  # path -> reason
    servers: dict[str, Any] = Field(default_factory=dict)  # role -> what the server said
    frame_index: dict[str, Any] | None = None
    seconds: dict[str, float] = Field(default_factory=dict)  # stage -> wall time


def check_videos(questions: list[Question], report: PreflightReport, *, allow_missing: bool) -> None:
    """Every video the questions need must be usable, unless ``allow_missing`` (their questions then
    get error rows and the others run)."""
    from tools.video_probe import probe_videos

    started = time.perf_counter()
    paths = list(dict.fromkeys(q.video_file() for q in questions))
    problems = probe_videos(paths)
    report.videos = len(paths)
    report.unusable_videos = {str(path): reason for path, reason in problems.items()}
    report.seconds["videos"] = round(time.perf_counter() - started, 3)
    if problems and not allow_missing:
        shown = "; ".join(f"{path.name}: {reason}" for path, reason in list(problems.items())[:3])
        more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise PreflightError(
            f"{len(problems)} of {len(paths)} videos cannot be used ({shown}{more}); fix --videos, "
            "or pass --allow-missing to run the other questions"
        )


def check_backends(backends: dict[str, Any], report: PreflightReport) -> None:
    """``{role: backend}``: each answers its own preflight (model list, one tiny request)."""
    started = time.perf_counter()
    seen: set[int] = set()
    for role, backend in backends.items():
        if backend is None or id(backend) in seen:
            continue
        seen.add(id(backend))
        check = getattr(backend, "preflight", None)
        if check is None:
            report.servers[role] = {"model": getattr(backend, "model", "")}
            continue
        report.servers[role] = check()  # raises BackendError with the fix (kind auth / not_found / connection)
    report.seconds["servers"] = round(time.perf_counter() - started, 3)


def check_frame_index(searcher: Any, report: PreflightReport) -> None:
    """The agent's frame search must work before the run starts: a run without it would answer
    from the overview alone and look like a (worse) agent."""
    started = time.perf_counter()
    try:
        encoder = searcher.encoder  # loads CLIP (ModelUnavailableError with what to do)
        searcher.embed_text("a person opening a door")
        cache_dir = Path(searcher.cache_dir)
        with tempfile.NamedTemporaryFile(dir=cache_dir, prefix=".preflight-"):
            pass
    except OSError as exc:
        raise PreflightError(
            f"the frame-index cache {searcher.config.resolved_cache_dir()} cannot be written "
            f"({exc.strerror or exc}); pass --cache-dir DIR or set SLEUTH_CACHE_DIR"
        ) from None
    except SleuthError as exc:
        raise PreflightError(f"frame search cannot work: {exc}") from None
    report.frame_index = {"clip": searcher.model_id, "device": getattr(encoder, "device", None), "cache_dir": str(cache_dir)}
    report.seconds["frame_index"] = round(time.perf_counter() - started, 3)


def describe(report: PreflightReport) -> list[str]:
    """Lines for the terminal."""
    lines = [f"videos: {report.videos} checked in {report.seconds.get('videos', 0):.2f}s"
             + (f", {len(report.unusable_videos)} unusable" if report.unusable_videos else ", all usable")]
    for path, reason in list(report.unusable_videos.items())[:10]:
        lines.append(f"  {Path(path).name}: {reason}")
    for role, facts in report.servers.items():
        offered = facts.get("models_offered") if isinstance(facts, dict) else None
        extra = f" ({len(offered)} models offered)" if offered else ""
        lines.append(redact(f"{role}: {facts.get('model', '') if isinstance(facts, dict) else ''} ready{extra}"))
    if report.servers:
        lines[-1] += f" in {report.seconds.get('servers', 0):.2f}s"
    if report.frame_index:
        lines.append(f"frame index: {report.frame_index['clip']} loaded in {report.seconds.get('frame_index', 0):.2f}s")
    return lines
