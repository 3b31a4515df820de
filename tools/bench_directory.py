"""Directory indexing against its limits, for ``python -m tools.bench_index``.

Three measurements on the same folder of videos, side by side:

- decode: every video decoded and prepared by ``cores`` decoding processes at
  once and nothing else (all cores decoding), with their CPU seconds;
- embed: the model alone on a sample of the folder's prepared frames, in the
  batches the directory pipeline uses;
- pipeline: ``tools.index_directory.index_videos`` into an empty cache, as
  ``sleuth index DIR`` runs it (once per ``--decode-workers`` value asked for).

The limit depends on where the model runs. On a CPU decoding and the model
share the cores: ``cores / (decode + embed CPU-seconds per frame)``. On a GPU
they do not: ``min(embed-only rate, all cores decoding)``.
"""

from __future__ import annotations

import queue
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tools.cores import available_cores
from tools.decode_worker import DecodeSettings, video_batches
from tools.stopwatch import Stopwatch

EMBED_SAMPLE_FRAMES = 512  # enough model calls to time the model on its own, on any device


def _others(watch: Stopwatch) -> float | None:
    """Cores other processes on the machine kept busy meanwhile: the noise in a figure."""
    return None if watch.others_cores is None else round(watch.others_cores, 2)


def decode_all_cores(videos: list[Path], prep, settings: DecodeSettings, processes: int) -> dict[str, Any]:
    """Frames per second with ``processes`` decoding processes and no model, and their CPU seconds per frame."""
    import multiprocessing

    from tools import decode_worker

    context = multiprocessing.get_context("spawn")
    tasks, results = context.Queue(), context.Queue(maxsize=4 * processes)
    for number, video in enumerate(videos):
        tasks.put((number, str(video)))
    for _ in range(processes):
        tasks.put(None)
    watch = Stopwatch(children=True).__enter__()
    workers = [
        context.Process(target=decode_worker.run, args=(tasks, results, prep, settings), daemon=True)
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    frames, open_videos, started = 0, len(videos), None
    try:
        while open_videos:
            try:
                message = results.get(timeout=1.0)
            except queue.Empty:
                if not any(w.is_alive() for w in workers):
                    raise RuntimeError("the decoding processes exited before decoding every video") from None
                continue
            if started is None:  # from the first video opened: process start-up is not decoding
                started = time.perf_counter()
            if message[0] == "batch":
                frames += len(message[3])
            elif message[0] in ("end", "error"):
                open_videos -= 1
        wall = time.perf_counter() - (started or time.perf_counter())
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.terminate()
                worker.join()
    watch.__exit__(None, None, None)
    return {
        "processes": processes,
        "frames": frames,
        "fps": round(frames / wall, 2) if wall > 0 else None,
        "cpu_ms_per_frame": round(1000 * watch.cpu / frames, 2) if frames else None,
        "others_cores": _others(watch),
    }


def embed_only(encoder, videos: list[Path], settings: DecodeSettings, batch: int, workers: int) -> dict[str, Any]:
    """The model alone on up to EMBED_SAMPLE_FRAMES of the folder's frames, ``batch`` frames per call."""
    import torch

    from tools.frame_index import DecodedBatch, embed_batches

    prep = encoder.pixel_prep
    pixels: list[np.ndarray] = []
    have = 0
    for video in videos:
        for message in video_batches(video, prep, settings):
            if message[0] == "batch" and message[5] is not None:
                pixels.append(message[5])
                have += len(message[5])
            if have >= EMBED_SAMPLE_FRAMES:
                break
        if have >= EMBED_SAMPLE_FRAMES:
            break
    frames = np.concatenate(pixels)[:EMBED_SAMPLE_FRAMES]
    batches = [
        DecodedBatch(list(range(len(chunk))), [0.0] * len(chunk), torch.from_numpy(chunk))
        for chunk in (frames[k : k + batch] for k in range(0, len(frames), batch))
    ]
    encoder.encode_pixels(batches[0].pixels)  # first call: kernels chosen, memory allocated
    with encoder.embedding_threads(workers) as setup, Stopwatch() as watch:
        embed_batches(iter(batches), encoder.encode_pixels, len(frames), workers=workers, setup=setup)
        if encoder.device.startswith("cuda"):
            torch.cuda.synchronize()
    return {
        "frames": len(frames),
        "batch": batch,
        "fps": round(len(frames) / watch.wall, 2),
        "cpu_ms_per_frame": round(1000 * watch.cpu / len(frames), 2),
        "others_cores": _others(watch),
    }


def pipeline(encoder, config, videos: list[Path], decode_workers: int) -> dict[str, Any]:
    """``index_videos`` into an empty cache: frames per second over the building, model already loaded."""
    from tools.index_directory import index_videos
    from tools.search import FrameSearcher

    with tempfile.TemporaryDirectory(prefix="sleuth-bench-dir-") as cache:
        searcher = FrameSearcher(config.model_copy(update={"cache_dir": Path(cache)}), encoder)
        with Stopwatch(children=True) as watch:
            run = index_videos(searcher, videos, decode_workers=decode_workers)
    failed = [r.error for r in run.results if r.error]
    return {
        "decode_workers": decode_workers,
        "videos": len(videos),
        "failed": len(failed),
        "frames": run.frames_built,
        "seconds": round(run.build_seconds, 3),  # from the first video opened: process start-up is apart
        "startup_s": round(run.startup_seconds, 3),
        "fps": round(run.frames_built / run.build_seconds, 2) if run.build_seconds > 0 else None,
        "cpu_ms_per_frame": round(1000 * watch.cpu / run.frames_built, 2) if run.frames_built else None,
        "others_cores": _others(watch),
    }


def measure_directory(
    encoder,
    config,
    videos: list[Path],
    *,
    decode_workers: list[int],
    embed_batch: int,
    embed_workers: int,
    repeat: int = 1,
    emit: Callable[[dict[str, Any]], None] = lambda record: None,
) -> dict[str, Any]:
    """Decode-only (all cores), embed-only and pipeline figures for a folder, each emitted as soon as measured."""
    cores = available_cores()
    settings = DecodeSettings(config.fps, config.max_frames, config.batch_size, "auto", config.decode_threads)
    on_cpu = encoder.device == "cpu"
    decodes, embeds, pipelines = [], [], {w: [] for w in decode_workers}
    for round_number in range(1, max(1, repeat) + 1):
        decodes.append(decode_all_cores(videos, encoder.pixel_prep, settings, cores))
        emit({"measure": "directory_decode", "round": round_number, **decodes[-1]})
        embeds.append(embed_only(encoder, videos, settings, embed_batch, embed_workers))
        emit({"measure": "directory_embed", "round": round_number, **embeds[-1]})
        for workers in decode_workers:
            pipelines[workers].append(pipeline(encoder, config, videos, workers))
            emit({"measure": "directory_pipeline", "round": round_number, **pipelines[workers][-1]})
    decode = max(decodes, key=lambda d: d["fps"] or 0)
    embed = max(embeds, key=lambda e: e["fps"])
    decode_cpu = min(d["cpu_ms_per_frame"] for d in decodes) / 1000
    embed_cpu = min(e["cpu_ms_per_frame"] for e in embeds) / 1000
    core_bound = cores / (decode_cpu + embed_cpu)
    device_bound = min(decode["fps"], embed["fps"])
    bound = core_bound if on_cpu else device_bound
    best = {w: max(runs, key=lambda p: p["fps"] or 0) for w, runs in pipelines.items()}
    summary = {
        "measure": "directory",
        "videos": len(videos),
        "frames": best[decode_workers[0]]["frames"],
        "cores": cores,
        "device": encoder.device,
        "rounds": max(1, repeat),
        "decode_all_cores_fps": decode["fps"],
        "embed_fps": embed["fps"],
        "decode_cpu_ms_per_frame": round(1000 * decode_cpu, 2),
        "embed_cpu_ms_per_frame": round(1000 * embed_cpu, 2),
        "core_bound_fps": round(core_bound, 2),
        "device_bound_fps": round(device_bound, 2),
        "bound": "core" if on_cpu else "min(embed, all cores decoding)",
        "bound_fps": round(bound, 2),
        "pipelines": [
            {**best[w], "vs_bound": round(best[w]["fps"] / bound, 3) if best[w]["fps"] else None}
            for w in decode_workers
        ],
    }
    emit(summary)
    return summary
