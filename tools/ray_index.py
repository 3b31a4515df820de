"""Directory indexing as a Ray Data pipeline: ``sleuth index DIR --engine ray``.

Videos are decoded by Ray tasks on CPU workers (one video per task, frames
prepared for the model where they are decoded), then embedded by actors that
hold the model (one GPU each where the cluster has GPUs), in batches of
``embed_batch`` frames across videos. The driver puts each video's frames
back together and writes its entry with ``assemble_index`` and
``FrameSearcher.store``, exactly as the local engine does, so either engine
reads the other's index.

Ray is imported only here, and only when this engine is asked for.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from sleuth.errors import ConfigError
from sleuth.ray_support import require_ray
from tools.decode_worker import DecodeSettings, one_line, video_batches
from tools.frame_index import assemble_index
from tools.index_directory import (
    DEFAULT_EMBED_BATCH_GPU,
    DirectoryRun,
    FramesCallback,
    ResultCallback,
    VideoResult,
    finish_duplicates,
    split_cached,
)
from tools.search import FrameSearcher
from tools.video import VideoError, VideoMeta

HEADER = -1  # the ``index`` of a video's first row, which carries its meta (or its error) instead of a frame


# --------------------------------------------------------------------------- the stages (run on Ray workers)


def decode_rows(item: dict, prep, settings: DecodeSettings) -> list[dict]:
    """One video -> a header row, then one row per sampled frame (a frame that failed: ``ok`` False)."""
    side = prep.spec.side
    blank = np.zeros((side, side, 3), dtype=np.uint8)

    def row(index: int, t: float, pixels: np.ndarray, ok: bool, note: str) -> dict:
        return {"job": item["job"], "index": index, "t": t, "pixels": pixels, "ok": ok, "note": note}

    rows: list[dict] = []
    try:
        for message in video_batches(Path(item["path"]), prep, settings):
            if message[0] == "start":
                _, _, _, meta, total, decoder = message
                rows.append(row(HEADER, 0.0, blank, True, json.dumps({"meta": meta, "total": total, "decoder": decoder})))
            elif message[0] == "batch":
                _, _, _, indices, timestamps, pixels, skipped = message
                for k, (index, t) in enumerate(zip(indices, timestamps)):
                    rows.append(row(int(index), float(t), pixels[k], True, ""))
                for index, reason in skipped:
                    rows.append(row(int(index), 0.0, blank, False, reason))
    except Exception as exc:  # the video fails, the run goes on
        return [row(HEADER, 0.0, blank, False, one_line(exc, Path(item["path"])))]
    return rows


class Embedder:
    """A Ray actor holding the model: frames in, embeddings out (zeros for rows that are not frames)."""

    def __init__(self, loader: Callable[[], Any]):
        self.encoder = loader()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        frames = batch["ok"] & (batch["index"] != HEADER)
        embeddings = np.zeros((len(frames), self.encoder.dim), dtype=np.float32)
        if frames.any():
            embeddings[frames] = self.encoder.encode_pixels(torch.from_numpy(np.ascontiguousarray(batch["pixels"][frames])))
        return {key: batch[key] for key in ("job", "index", "t", "ok", "note")} | {"embedding": embeddings}


def load_encoder(config):
    from tools.clip import load_clip

    return load_clip(config)


# --------------------------------------------------------------------------- the driver


def index_videos_ray(
    searcher: FrameSearcher,
    videos: list[Path],
    *,
    on_result: ResultCallback | None = None,
    on_frames: FramesCallback | None = None,
    embed_batch: int | None = None,
) -> DirectoryRun:
    """Index ``videos`` on Ray (the running session, or a local one started here); see the module docstring."""
    ray = require_ray()
    report = on_result or (lambda result: None)
    frames_cb = on_frames or (lambda done, total: None)
    results, pending = split_cached(searcher, videos, report)
    firsts = {k: group[0] for k, group in enumerate(pending.values())}
    if not firsts:
        return DirectoryRun(results, 0, 0.0)

    config = searcher.config
    # The driver's model says how frames are prepared and names the entries; the actors embed with the
    # same number format, so the embeddings are what the cache key says they are.
    identity = searcher.encoder
    prep = identity.pixel_prep
    if not prep.supported:
        raise ConfigError(f"--engine ray cannot prepare frames for {identity.model_id} outside the model; "
                          "use --engine local")
    actor_config = config.model_copy(update={"precision": identity.precision, "device": "auto"})
    loader = functools.partial(load_encoder, actor_config)
    settings = DecodeSettings(config.fps, config.max_frames, config.batch_size, "auto", config.decode_threads,
                              searcher.keep_frames)

    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # sleuth shows its own progress
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    batch = embed_batch or (DEFAULT_EMBED_BATCH_GPU if gpus else config.batch_size)
    items = [{"job": job, "path": str(result.path)} for job, result in firsts.items()]
    dataset = ray.data.from_items(items, override_num_blocks=len(items)).flat_map(
        decode_rows, fn_kwargs={"prep": prep, "settings": settings}, num_cpus=1
    )
    embed_options: dict[str, Any] = {"num_gpus": 1} if gpus else {"num_cpus": 1}
    dataset = dataset.map_batches(
        Embedder,
        fn_constructor_kwargs={"loader": loader},
        batch_size=batch,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=max(1, gpus)),
        **embed_options,
    )

    started = time.perf_counter()
    jobs = {job: _Assembly() for job in firsts}
    frames_built = 0
    for rows in dataset.iter_batches(batch_format="numpy", batch_size=None):
        for k in range(len(rows["job"])):
            job = int(rows["job"][k])
            assembly = jobs[job]
            index = int(rows["index"][k])
            if index == HEADER:
                if not rows["ok"][k]:
                    assembly.error = str(rows["note"][k])
                else:
                    header = json.loads(str(rows["note"][k]))
                    assembly.meta, assembly.total, assembly.decoder = header["meta"], header["total"], header["decoder"]
                    assembly.started = time.perf_counter()
                    frames_cb(0, assembly.total)
            elif rows["ok"][k]:
                assembly.frames.append((index, float(rows["t"][k]), rows["embedding"][k]))
                frames_cb(1, 0)
            else:
                assembly.skipped.append((index, str(rows["note"][k])))
                frames_cb(1, 0)
            if assembly.complete and not assembly.done:
                assembly.done = True
                frames_built += _finish(searcher, firsts[job], assembly, identity, report)
    for job, assembly in jobs.items():
        if not assembly.done:  # the pipeline ended without all of this video's rows: say so, never hang
            result = firsts[job]
            result.error = assembly.error or f"the Ray pipeline returned {len(assembly.frames)} of its frames: {result.path}"
            report(result)
    build_seconds = time.perf_counter() - started
    finish_duplicates(searcher, pending, report)
    return DirectoryRun(results, frames_built, build_seconds)


@dataclass
class _Assembly:
    meta: dict | None = None
    total: int = -1
    decoder: str = ""
    started: float = 0.0
    error: str | None = None
    done: bool = False

    def __post_init__(self) -> None:
        self.frames: list[tuple[int, float, np.ndarray]] = []
        self.skipped: list[tuple[int, str]] = []

    @property
    def complete(self) -> bool:
        return self.error is not None or (self.total >= 0 and len(self.frames) + len(self.skipped) == self.total)


def _finish(searcher: FrameSearcher, result: VideoResult, assembly: _Assembly, identity, report) -> int:
    if assembly.error is not None:
        result.error = assembly.error
        report(result)
        return 0
    frames = sorted(assembly.frames, key=lambda frame: frame[0])  # rows arrive in any order; the index is by time
    timestamps = np.asarray([t for _, t, _ in frames], dtype=np.float64)
    embeddings = np.stack([e for _, _, e in frames]).astype(np.float32) if frames else np.zeros((0, 0), np.float32)
    try:
        key = searcher.cache_key(result.path)
        index = assemble_index(
            VideoMeta.model_validate(assembly.meta),
            identity,
            timestamps,
            embeddings,
            assembly.skipped,
            fps=searcher.config.fps,
            max_frames=searcher.config.max_frames,
            decoder=assembly.decoder,
            build_s=time.perf_counter() - assembly.started,
            meta_extra=searcher.meta_extra(result.path, key),
        )
        result.outcome = searcher.store(result.path, key, index, time.perf_counter() - assembly.started,
                                        result.rebuilt_reason)
    except VideoError as exc:
        result.error = str(exc)
    report(result)
    return len(result.outcome.index) if result.outcome is not None and result.outcome.source == "built" else 0
