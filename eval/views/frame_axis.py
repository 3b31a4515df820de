"""Every run's frames for one question on one shared time axis (the side-by-side page).

A run with a trace has its frames' times. A uniform run records only how many
frames it showed, so its times are derived the way it chose them: the
benchmark's own frame-index rule (``Benchmark.sample_indices``) over the
video's frame count, each index at ``index / fps``. The frame count and rate
come from a trace of the same question (traces record the video's metadata)
or, failing that, from the video file's headers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.trace import Trace
from eval.views.analysis import axis_ticks, timeline_marks

UNIFORM_SOURCE = "uniform"


@dataclass(frozen=True)
class VideoFacts:
    n_frames: int
    fps: float
    duration_s: float


@dataclass(frozen=True)
class AxisMark:
    t: float
    source: str
    evidence: bool
    shown: bool
    href: str | None  # the frame in the run's trace page, when it has one

    def left_pct(self, span: float) -> float:
        return max(0.0, min(100.0, 100.0 * self.t / span)) if span > 0 else 0.0


@dataclass(frozen=True)
class AxisRow:
    run: str
    method: str
    marks: list[AxisMark]
    derived: bool  # times worked out from the benchmark's frame-index rule, not recorded
    note: str | None  # why a run has no marks


def facts_from_trace(trace: Trace) -> VideoFacts | None:
    video = trace.settings.get("video")
    if not isinstance(video, dict):
        return None
    try:
        facts = VideoFacts(int(video["n_frames"]), float(video["fps"]), float(video.get("duration_s") or 0.0))
    except (KeyError, TypeError, ValueError):
        return None
    return facts if facts.n_frames > 0 and facts.fps > 0 else None


def facts_from_file(path: Path) -> VideoFacts | None:
    """The video's frame count and rate from its headers (None when it cannot be read)."""
    from sleuth.errors import SleuthError

    if not path.is_file():
        return None
    try:
        from tools.video import open_video

        with open_video(path) as video:
            meta = video.meta
    except (ImportError, SleuthError):
        return None
    return VideoFacts(meta.n_frames, meta.fps, meta.duration_s) if meta.n_frames > 0 and meta.fps > 0 else None


def video_file_of(row: Any, config: dict[str, Any]) -> Path | None:
    """Where a result row's video lives: its path inside the run's videos folder (never outside it)."""
    from eval.dataset import relative_video_path

    videos = (config.get("data") or {}).get("videos") if isinstance(config.get("data"), dict) else None
    if not videos or not row.video:
        return None
    try:
        return Path(videos) / relative_video_path(row.video)
    except ValueError:
        return None


def uniform_times(benchmark: Any, facts: VideoFacts, count: int) -> list[float]:
    """The moments a uniform run showed: the benchmark's frame indices at ``index / fps``."""
    return [round(i / facts.fps, 3) for i in benchmark.sample_indices(facts.n_frames, count)]


def shared_axis(columns: list[dict[str, Any]], facts: VideoFacts | None, benchmark_of: Any) -> dict[str, Any]:
    """The rows of the shared axis, its span and ticks. Each column needs ``run``, ``row``, ``trace``,
    ``trace_href`` and ``config``; ``benchmark_of(column)`` gives the benchmark (with its variant) of a run."""
    rows: list[AxisRow] = []
    for c in columns:
        trace, row = c["trace"], c["row"]
        if trace is not None:
            href = f"../{c['trace_href']}" if c["trace_href"] else None
            marks = [AxisMark(m.t, m.source, m.evidence, m.shown, f"{href}#frame-{m.index}" if href else None)
                     for m in timeline_marks(trace)]
            rows.append(AxisRow(c["run"], row.method, marks, False, None if marks else "no frames in its trace"))
        elif row.status == "error":
            rows.append(AxisRow(c["run"], row.method, [], False, "error row: no frames"))
        elif facts is None:
            rows.append(AxisRow(c["run"], row.method, [], False,
                                "video length unknown (no trace of this question and no readable video): frames not placed"))
        else:
            count = int(c["config"].get("frames") or row.frames or 0)
            times = uniform_times(benchmark_of(c), facts, count) if count else []
            rows.append(AxisRow(c["run"], row.method, [AxisMark(t, UNIFORM_SOURCE, False, True, None) for t in times],
                                True, None if times else "no frames recorded"))
    seen = [m.t for r in rows for m in r.marks]
    durations = [facts.duration_s] if facts and facts.duration_s > 0 else []
    durations += [c["trace"].duration_s for c in columns if c["trace"] is not None and c["trace"].duration_s]
    span = max(durations) if durations else (max(seen) * 1.05 if seen and max(seen) > 0 else 1.0)
    return {"rows": rows, "span": span, "ticks": axis_ticks(span), "known": bool(durations)}


__all__ = ["AxisMark", "AxisRow", "VideoFacts", "facts_from_file", "facts_from_trace", "shared_axis", "uniform_times",
           "video_file_of"]
