"""``sleuth index`` and ``sleuth search``: build frame indexes and search them by text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from sleuth.options import JsonOpt
from tools.options import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CLIP_MODEL,
    DEFAULT_FPS,
    DEFAULT_FRAME_FIT,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MIN_GAP_S,
    BatchSizeOpt,
    CacheDirOpt,
    ClipCheckpointOpt,
    ClipModelOpt,
    DecodeThreadsOpt,
    DecodeWorkersOpt,
    EngineOpt,
    ClipDeviceOpt,
    FpsOpt,
    FrameFitOpt,
    MaxFramesOpt,
    MinGapOpt,
    PrecisionOpt,
    PretrainedOpt,
    RandomWeightsOpt,
    WorkersOpt,
    index_config_from_options,
)


RANDOM_WEIGHTS_WARNING = "RANDOM WEIGHTS: scores are meaningless (smoke run)"


def format_time(t: float) -> str:
    """Seconds as m:ss.ss (h:mm:ss.ss past an hour)."""
    minutes, seconds = divmod(max(0.0, t), 60.0)
    hours, minutes = divmod(int(minutes), 60)
    if hours:
        return f"{hours}:{minutes:02d}:{seconds:05.2f}"
    return f"{minutes}:{seconds:05.2f}"


def _stdout():
    from rich.console import Console

    return Console(highlight=False)


def _stderr():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _print_json(payload: Any) -> None:
    typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))


def _title(base: str, model_id: str, labels: list[str]) -> str:
    title = f"{base} · {model_id}"
    if labels:
        title += f" · [bold red]{RANDOM_WEIGHTS_WARNING}[/]"
    return title


def index_command(
    videos: Annotated[
        list[Path],
        typer.Argument(help="Video files, or folders to index every video in (recursively).", show_default=False),
    ],
    as_json: JsonOpt = False,
    clip_model: ClipModelOpt = DEFAULT_CLIP_MODEL,
    pretrained: PretrainedOpt = None,
    clip_checkpoint: ClipCheckpointOpt = None,
    random_weights: RandomWeightsOpt = False,
    fps: FpsOpt = DEFAULT_FPS,
    max_frames: MaxFramesOpt = DEFAULT_MAX_FRAMES,
    cache_dir: CacheDirOpt = None,
    clip_device: ClipDeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    frame_fit: FrameFitOpt = DEFAULT_FRAME_FIT,
    batch_size: BatchSizeOpt = DEFAULT_BATCH_SIZE,
    workers: WorkersOpt = 0,
    decode_threads: DecodeThreadsOpt = 1,
    decode_workers: DecodeWorkersOpt = None,
    engine: EngineOpt = "local",
    keep_frames: Annotated[
        str,
        typer.Option("--keep-frames", metavar="SIZE",
                     help="Also keep the sampled frames as an agent shows them (cache directory, frames/), so its "
                     "later looks at search hits and its first look at the video decode nothing: full (full resolution, as sleuth eval shows "
                     "MMR-V's frames), a longest side in pixels (as --image-max-side), or none."),
    ] = "full",
) -> None:
    """Sample each video at --fps, embed the frames with CLIP and cache the index.

    Folders are searched recursively for video files. The model is loaded
    once for all videos; with --decode-workers (the default on a GPU) several
    videos are decoded at once by worker processes feeding the model.
    Progress shows videos done and frames per second over the whole run. A
    second run on the same file (same content, model and sampling) is a
    cache hit and decodes nothing. Videos that cannot be read are reported
    one line each; the others are still indexed, and the exit status is 2.
    """
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from sleuth.errors import ConfigError
    from tools.index_directory import VideoResult, default_decode_workers
    from tools.frame_shelf import KeepFrames
    from tools.search import FrameSearcher
    from tools.video_files import expand_video_paths

    if engine not in ("local", "ray"):
        raise ConfigError(f"invalid --engine {engine!r}: expected local or ray")
    if decode_workers is not None and decode_workers < 0:
        raise ConfigError(f"invalid --decode-workers {decode_workers}: expected 0 or more")
    config = index_config_from_options(
        clip_model=clip_model,
        pretrained=pretrained,
        clip_checkpoint=clip_checkpoint,
        random_weights=random_weights,
        fps=fps,
        max_frames=max_frames,
        cache_dir=cache_dir,
        device=clip_device,
        precision=precision,
        frame_fit=frame_fit,
        batch_size=batch_size,
        workers=workers,
        decode_threads=decode_threads,
    )
    if engine == "ray":
        from sleuth.ray_support import require_ray

        require_ray()  # before anything slow: a missing extra is a one-line error
    listing = expand_video_paths(videos)
    keep = parse_keep_frames(keep_frames)
    # and the 8-frame overview an agent with the default budget opens with
    searcher = FrameSearcher(config, keep_frames=KeepFrames(config.resolved_cache_dir(), keep, uniform=(OVERVIEW,))
                             if keep else None)
    err = _stderr()
    rows: dict[int, dict[str, Any]] = {}
    failed = 0
    empty_rows = []
    for folder in listing.empty_dirs:
        failed += 1
        message = f"no video files in folder {folder}"
        err.print(f"[red]error:[/] {message}", markup=True, soft_wrap=True, highlight=False)
        empty_rows.append({"video": str(folder), "error": message})

    started = time.perf_counter()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as progress:
        overall = progress.add_task("videos", total=len(listing.videos), rate="")
        frames_task = progress.add_task("frames", total=None, rate="")
        frame_counts = {"done": 0, "total": 0, "since": None}

        def on_frames(done: int, total: int) -> None:
            if frame_counts["since"] is None:
                frame_counts["since"] = time.perf_counter()
            frame_counts["done"] += done
            frame_counts["total"] += total
            elapsed = time.perf_counter() - frame_counts["since"]
            rate = f"{frame_counts['done'] / elapsed:.1f} frames/s" if frame_counts["done"] and elapsed > 0 else ""
            progress.update(frames_task, completed=frame_counts["done"], total=frame_counts["total"], rate=rate)

        def on_result(result: VideoResult) -> None:
            nonlocal failed
            if result.error is not None:
                failed += 1
                err.print(f"[red]error:[/] {result.error}", markup=True, soft_wrap=True, highlight=False)
                rows[result.number] = {"video": str(listing.videos[result.number]), "error": result.error}
            else:
                rows[result.number] = _index_row(listing.videos[result.number], result.outcome)
            progress.update(overall, completed=len(rows))

        if engine == "ray":
            from tools.ray_index import index_videos_ray

            run = index_videos_ray(searcher, listing.videos, on_result=on_result, on_frames=on_frames)
        else:
            from tools.index_directory import index_videos

            if decode_workers is None:
                decode_workers = default_decode_workers(_device_of(searcher))
            run = index_videos(
                searcher, listing.videos, decode_workers=decode_workers, on_result=on_result, on_frames=on_frames
            )
        if run.build_seconds > 0 and run.frames_built:
            progress.update(overall, rate=f"{run.frames_built / run.build_seconds:.1f} frames/s")

    ordered = empty_rows + [rows[number] for number in sorted(rows)]
    labels = searcher.labels
    summary = {
        "videos": len(listing.videos) + len(listing.empty_dirs),
        "indexed": sum(1 for r in ordered if "error" not in r),
        "built": sum(1 for r in ordered if r.get("source") == "built"),
        "failed": failed,
        "frames_built": run.frames_built,
        "seconds": round(time.perf_counter() - started, 3),
        "startup_s": round(run.startup_seconds, 3),  # decoding processes starting
        # Over the building itself (model loading and cache hits left out), across all videos at once.
        "frames_per_s": round(run.frames_built / run.build_seconds, 2) if run.build_seconds > 0 and run.frames_built else None,
    }
    built_frames = run.frames_built
    if as_json:
        _print_json({"model": searcher.model_id, "labels": labels, "summary": summary, "videos": ordered})
    else:
        table = Table(
            title=_title("Frame index", searcher.model_id, labels),
            title_justify="left",
            caption=f"cache: {searcher.cache_dir / 'frame-index'}"
            + (f" · built {built_frames} frames at {summary['frames_per_s']:.1f} frames/s" if built_frames else ""),
            caption_justify="left",
        )
        for column in ("video", "frames", "skipped", "cache", "reader", "seconds", "entry"):
            table.add_column(column, overflow="fold", justify="right" if column in ("frames", "skipped", "seconds") else "left")
        for row in ordered:
            if "error" in row:
                table.add_row(Path(row["video"]).name, "-", "-", "[red]failed[/]", "-", "-", "-")
                continue
            cache = "hit" if row["cache"] == "hit" else ("rebuilt" if row["rebuilt_reason"] else "miss")
            table.add_row(
                Path(row["video"]).name,
                str(row["frames"]),
                str(len(row["skipped"])),
                cache,
                row["reader"] if row["source"] != "built" or not row["decoder"] else row["decoder"],
                f"{row['seconds']:.2f}",
                Path(row["cache_path"]).stem[:12],
            )
        _stdout().print(table)
    if failed:
        raise typer.Exit(code=2)


OVERVIEW = 8  # agent.config.AgentConfig's overview at its default budget (tools/ does not import agent/)


def parse_keep_frames(value: str) -> Any:
    """``--keep-frames``: a ``Rendering`` (full, or a longest side), or None for none."""
    from sleuth.errors import ConfigError
    from tools.rendering import Rendering

    text = value.strip().lower()
    if text == "none":
        return None
    if text == "full":
        return Rendering()
    if text.isdigit() and int(text) >= 16:
        return Rendering(int(text))
    raise ConfigError(f"invalid --keep-frames {value!r}: expected full, a longest side of 16 pixels or more, or none")


def _device_of(searcher) -> str:
    from tools.clip import resolve_device

    return resolve_device(searcher.config.device)


def _index_row(video: Path, outcome) -> dict[str, Any]:
    index = outcome.index
    built = outcome.source == "built"
    return {
        "video": str(video),
        "frames": len(index),
        "skipped": [{"index": i, "reason": r} for i, r in index.meta.skipped],
        "cache": "hit" if outcome.cache_hit else "miss",
        "source": outcome.source,
        "rebuilt_reason": outcome.rebuilt_reason,
        "cache_path": str(outcome.cache_path),
        "reader": index.meta.video.reader,
        "decoder": index.meta.decoder or None,
        "precision": index.meta.precision or None,
        "duration_s": index.meta.video.duration_s,
        "seconds": round(outcome.seconds, 3),
        "frames_per_s": round(len(index) / index.meta.build_s, 2) if built and index.meta.build_s > 0 else None,
    }


def search_command(
    video: Annotated[Path, typer.Argument(help="Video file to search.", show_default=False)],
    text: Annotated[str, typer.Argument(help='What to look for, e.g. "a rabbit under a tree".', show_default=False)],
    k: Annotated[int, typer.Option("-k", "--top-k", help="Number of hits to return.")] = 5,
    start: Annotated[Optional[float], typer.Option("--start", help="Search only from this time (s).")] = None,
    end: Annotated[Optional[float], typer.Option("--end", help="Search only up to this time (s).")] = None,
    min_gap: MinGapOpt = DEFAULT_MIN_GAP_S,
    as_json: JsonOpt = False,
    clip_model: ClipModelOpt = DEFAULT_CLIP_MODEL,
    pretrained: PretrainedOpt = None,
    clip_checkpoint: ClipCheckpointOpt = None,
    random_weights: RandomWeightsOpt = False,
    fps: FpsOpt = DEFAULT_FPS,
    max_frames: MaxFramesOpt = DEFAULT_MAX_FRAMES,
    cache_dir: CacheDirOpt = None,
    clip_device: ClipDeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    frame_fit: FrameFitOpt = DEFAULT_FRAME_FIT,
) -> None:
    """Find the moments of VIDEO that best match TEXT (CLIP text-to-frame similarity).

    Indexes the video first if it is not cached. Hits are at least --min-gap
    seconds apart, so the k hits are k different moments.
    """
    from rich.table import Table

    from tools.search import FrameSearcher

    config = index_config_from_options(
        clip_model=clip_model,
        pretrained=pretrained,
        clip_checkpoint=clip_checkpoint,
        random_weights=random_weights,
        fps=fps,
        max_frames=max_frames,
        cache_dir=cache_dir,
        device=clip_device,
        min_gap_s=min_gap,
        precision=precision,
        frame_fit=frame_fit,
    )
    searcher = FrameSearcher(config)
    outcome = searcher.ensure_index(video)
    hits = searcher.search(video, text, k=k, start=start, end=end, min_gap_s=min_gap)
    labels = searcher.labels
    if as_json:
        _print_json(
            {
                "video": str(video),
                "query": text,
                "model": searcher.model_id,
                "labels": labels,
                "k": k,
                "start": start,
                "end": end,
                "min_gap_s": min_gap,
                "cache": "hit" if outcome.cache_hit else "miss",
                "hits": [hit.model_dump() for hit in hits],
            }
        )
        return
    table = Table(title=_title(f'"{text}" in {video.name}', searcher.model_id, labels), title_justify="left")
    table.add_column("rank", justify="right")
    table.add_column("time", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("score", justify="right")
    for rank, hit in enumerate(hits, 1):
        table.add_row(str(rank), format_time(hit.t), f"{hit.t:.3f}", f"{hit.score:.4f}")
    console = _stdout()
    console.print(table)
    if not hits:
        console.print("no frames in that window were indexed; widen the window or raise --fps")


def register(app: typer.Typer) -> None:
    """Add ``index`` and ``search`` to the ``sleuth`` command."""
    app.command("index", help=index_command.__doc__)(index_command)
    app.command("search", help=search_command.__doc__)(search_command)


__all__ = ["register", "format_time"]
