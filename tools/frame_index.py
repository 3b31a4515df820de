"""A video's frame index: timestamps + CLIP embeddings in a faiss inner-product index.

Building one is a producer/consumer pipeline: a background thread decodes and
preprocesses frames into a bounded queue (``decode_batches`` in ``prefetch``)
while one or more threads embed them (``embed_batches``). Both halves are
plain functions so they can be timed and tuned on their own
(``python -m tools.bench_index`` does).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable, Iterator, NamedTuple, Sequence

import numpy as np
from pydantic import BaseModel, Field

from sleuth.errors import ConfigError, SleuthError
from tools.cores import available_cores
from tools.frame_shelf import KeepFrames
from tools.options import DEFAULT_BATCH_SIZE, DEFAULT_MIN_GAP_S, DEFAULT_QUEUE_DEPTH
from tools.video import DecodeError, ScanDecoder, Video, VideoMeta, WindowError

ProgressCallback = Callable[[int, int], None]  # (frames done, frames total)

INDEX_FORMAT = 1


class SearchHit(BaseModel):
    t: float  # seconds from the start of the video
    score: float  # cosine similarity between the query and the frame


class IndexMeta(BaseModel):
    """What an index was built from and with. Stored with every cache entry."""

    format: int = INDEX_FORMAT
    key: str = ""
    video: VideoMeta
    content_sha256: str = ""
    model_id: str
    random_weights: bool = False
    labels: list[str] = Field(default_factory=list)
    fps: float
    max_frames: int
    preprocess: str = ""
    precision: str = ""  # number format of the image embeddings (fp32, bf16, fp16)
    decoder: str = ""  # what decoded the frames: pyav-scan, decord or pyav
    dim: int
    n_indexed: int
    skipped: list[tuple[int, str]] = Field(default_factory=list)  # frames that could not be decoded
    build_s: float = 0.0
    created: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))


class FrameIndex:
    """Frame timestamps (N,) ascending and L2-normalised embeddings (N, dim), searchable by vector."""

    def __init__(self, timestamps: np.ndarray, embeddings: np.ndarray, meta: IndexMeta):
        import faiss

        timestamps = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[0] != timestamps.shape[0]:
            raise ValueError(f"embeddings {embeddings.shape} do not match {timestamps.shape[0]} timestamps")
        order = np.argsort(timestamps, kind="stable")
        if not np.array_equal(order, np.arange(len(order))):
            timestamps, embeddings = timestamps[order], embeddings[order]
        self.timestamps = timestamps
        self.embeddings = embeddings
        self.meta = meta
        self.dim = int(embeddings.shape[1])
        self.faiss_index = faiss.IndexFlatIP(self.dim)
        if len(timestamps):
            self.faiss_index.add(embeddings)

    def __len__(self) -> int:
        return int(self.timestamps.shape[0])

    def __repr__(self) -> str:
        return f"FrameIndex({self.meta.video.path!r}, frames={len(self)}, model={self.meta.model_id!r})"

    @property
    def labels(self) -> list[str]:
        return list(self.meta.labels)

    def search_vector(
        self,
        query: np.ndarray,
        k: int,
        start: float | None = None,
        end: float | None = None,
        min_gap_s: float = DEFAULT_MIN_GAP_S,
    ) -> list[SearchHit]:
        """Top ``k`` frames by inner product with ``query``, best first.

        Only frames with ``start <= t <= end`` compete (``WindowError`` if the
        window lies entirely outside the video). Temporal non-maximum
        suppression: a hit within ``min_gap_s`` seconds of a better kept hit is
        dropped, so the k hits are k different moments.
        """
        import faiss

        if isinstance(k, bool) or int(k) != k or k < 1:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        if not np.isfinite(min_gap_s) or min_gap_s < 0:
            raise ConfigError(f"minimum gap must be >= 0 seconds, got {min_gap_s!r}")
        q = np.asarray(query, dtype=np.float32).reshape(1, -1)
        if q.shape[1] != self.dim:
            raise ConfigError(f"query has {q.shape[1]} dimensions, the index {self.dim}")
        norm = float(np.linalg.norm(q))
        if not np.isfinite(norm) or norm == 0:
            raise ConfigError("query vector is zero or not finite")
        q = np.ascontiguousarray(q / norm)

        lo, hi = self._window_ids(start, end)
        n_candidates = hi - lo
        if n_candidates <= 0:
            return []
        params = None
        if n_candidates < len(self):
            params = faiss.SearchParameters(sel=faiss.IDSelectorRange(lo, hi))
        scores, ids = self.faiss_index.search(q, n_candidates, params=params)
        hits: list[SearchHit] = []
        kept: list[float] = []
        for score, i in zip(scores[0], ids[0]):
            if i < 0:
                break
            t = float(self.timestamps[i])
            if min_gap_s > 0 and any(abs(t - other) < min_gap_s for other in kept):
                continue
            kept.append(t)
            hits.append(SearchHit(t=t, score=float(score)))
            if len(hits) == k:
                break
        return hits

    def _window_ids(self, start: float | None, end: float | None) -> tuple[int, int]:
        """Half-open id range [lo, hi) of frames inside the window."""
        duration = self.meta.video.duration_s
        lo_t = 0.0 if start is None else float(start)
        hi_t = max(duration, float(self.timestamps[-1]) if len(self) else 0.0) if end is None else float(end)
        where = self.meta.video.path
        if not (np.isfinite(lo_t) and np.isfinite(hi_t)):
            raise WindowError(f"window bounds must be finite numbers: {where}")
        if hi_t < 0 or lo_t > duration:
            raise WindowError(f"window [{lo_t:.3f}s, {hi_t:.3f}s] is outside the video (0-{duration:.3f}s): {where}")
        if lo_t > hi_t:
            raise WindowError(f"window start {lo_t:.3f}s is after its end {hi_t:.3f}s: {where}")
        lo = int(np.searchsorted(self.timestamps, lo_t - 1e-9, side="left"))
        hi = int(np.searchsorted(self.timestamps, hi_t + 1e-9, side="right"))
        return lo, hi


# --------------------------------------------------------------------------- building


@dataclass
class DecodedBatch:
    indices: list[int]
    timestamps: list[float]
    pixels: Any  # whatever ``preprocess`` returned for these frames (a tensor for CLIP)
    skipped: list[tuple[int, str]] = field(default_factory=list)


def decode_batches(
    video: Video,
    indices: Sequence[int],
    preprocess: Callable[[list[np.ndarray]], Any],
    batch_size: int,
    *,
    size: tuple[int, int] | None = None,
    decoder: ScanDecoder = "auto",
    threads: int = 1,
    keep: KeepFrames | None = None,
) -> Iterator[DecodedBatch]:
    """Decode ``indices`` and preprocess them ``batch_size`` frames at a time.

    Frames are decoded with ``video.scan`` (``size``, ``decoder``, ``threads``:
    see there), so each is resized as soon as it is decoded and only small
    frames wait for their batch. Frames that fail to decode are carried in
    ``skipped`` of the next batch (a final batch may hold only skips, with
    ``pixels=None``). ``keep`` renders each frame at full resolution onto the
    shelf first, and also decodes and keeps the extra frames it names (an
    agent's overview), which are not embedded.
    """
    images: list[np.ndarray] = []
    batch_indices: list[int] = []
    times: list[float] = []
    skipped: list[tuple[int, str]] = []
    keeper, extra = None, set()
    if keep is not None:
        keeper = keep.keeper(video.path)
        extra = set(keep.extra_indices(video.meta.n_frames)) - set(indices)
    for item in video.scan([*indices, *extra], size=size, decoder=decoder, threads=threads, on_frame=keeper):
        index = item[0] if isinstance(item, tuple) else item.index
        if index in extra:
            continue  # kept for showing, not part of the index
        if isinstance(item, tuple):
            skipped.append(item)
            continue
        images.append(item.image)
        batch_indices.append(item.index)
        times.append(item.t)
        if len(images) == batch_size:
            yield DecodedBatch(batch_indices, times, preprocess(images), skipped)
            images, batch_indices, times, skipped = [], [], [], []
    if images or skipped:
        yield DecodedBatch(batch_indices, times, preprocess(images) if images else None, skipped)


_DONE = object()


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


def prefetch(items: Iterable, depth: int, *, context: Callable[[], ContextManager] | None = None) -> Iterator:
    """Run ``items`` in a background thread, at most ``depth`` results ahead of the consumer.

    The worker takes one of ``depth`` slots before it computes a result and
    the consumer frees it when it takes the result, so at most ``depth``
    results are ever computed-or-computing and not yet taken: memory stays
    bounded however slow the consumer is. The worker runs inside ``context()``
    where given. An exception in the worker is raised in the consumer;
    closing the consumer stops the worker.
    """
    slots = threading.Semaphore(max(1, depth))
    box: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()

    def produce() -> None:
        with context() if context is not None else contextlib.nullcontext():
            work()

    def work() -> None:
        iterator = None
        try:
            iterator = iter(items)
            while True:
                while not slots.acquire(timeout=0.1):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                try:
                    value = next(iterator)
                except StopIteration:
                    box.put(_DONE)
                    return
                box.put(value)
        except BaseException as exc:  # handed to the consumer, raised there
            box.put(_Failure(exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()  # releases what the generator holds, in the thread that ran it

    worker = threading.Thread(target=produce, name="sleuth-frame-decoder", daemon=True)
    worker.start()
    try:
        while True:
            value = box.get()
            if value is _DONE:
                return
            if isinstance(value, _Failure):
                raise value.exc
            slots.release()
            yield value
    finally:
        stop.set()
        worker.join(timeout=10)


def embed_batches(
    batches: Iterable[DecodedBatch],
    encode: Callable[[Any], np.ndarray],
    total: int,
    progress: ProgressCallback | None = None,
    *,
    workers: int = 1,
    setup: Callable[[], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
    """Embed decoded batches: returns (timestamps (N,), embeddings (N, D), skipped frames).

    With ``workers > 1``, that many threads (each first running ``setup``)
    embed batches at the same time; results are put together in order, and
    at most ``workers + 1`` batches are taken from ``batches`` before their
    embeddings are done.
    """
    times: list[float] = []
    parts: list[np.ndarray] = []
    skipped: list[tuple[int, str]] = []
    done = 0

    def finish(batch: DecodedBatch, embedding: np.ndarray | None) -> None:
        nonlocal done
        skipped.extend(batch.skipped)
        if batch.indices:
            parts.append(embedding)
            times.extend(batch.timestamps)
        done += len(batch.indices) + len(batch.skipped)
        if progress is not None:
            progress(done, total)

    if workers <= 1:
        for batch in batches:
            finish(batch, encode(batch.pixels) if batch.indices else None)
    else:
        pending: deque[tuple[DecodedBatch, Future | None]] = deque()
        pool = ThreadPoolExecutor(max_workers=workers, initializer=setup, thread_name_prefix="sleuth-embed")
        try:
            for batch in batches:
                pending.append((batch, pool.submit(encode, batch.pixels) if batch.indices else None))
                while len(pending) > workers:
                    batch, job = pending.popleft()
                    finish(batch, job.result() if job is not None else None)
            while pending:
                batch, job = pending.popleft()
                finish(batch, job.result() if job is not None else None)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    embeddings = np.concatenate(parts, axis=0) if parts else np.zeros((0, 0), dtype=np.float32)
    return np.asarray(times, dtype=np.float64), embeddings, skipped


def run_pipeline(
    batches: Iterable[DecodedBatch],
    encode: Callable[[Any], np.ndarray],
    total: int,
    progress: ProgressCallback | None = None,
    *,
    workers: int = 2,
    depth: int = DEFAULT_QUEUE_DEPTH,
    setup: Callable[[], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
    """Decode and embed with ``workers`` threads that each take whichever task is due.

    Where decoding and the model share a few CPU cores, a dedicated decoding
    thread next to the model's threads means more runnable threads than
    cores: they preempt each other, evict each other's caches and wait on
    each other. Here every thread (each first running ``setup``) does one
    task at a time: it decodes the next batch when fewer than
    ``min(workers, depth)`` decoded batches are waiting and nobody else is
    decoding (decoding is sequential), else embeds the oldest waiting batch.
    So ``workers`` threads keep ``workers`` cores busy with useful work, and
    at most ``min(workers, depth)`` batches are ever decoded-or-decoding and
    not yet taken for embedding. Returns what ``embed_batches`` returns; the
    first exception in any thread stops the others and is raised here.

    ``batches`` itself always runs on one thread of its own (the worker whose
    turn it is waits for it), since decoders and the locks they hold belong
    to the thread that uses them.
    """
    decoder = ThreadPoolExecutor(max_workers=1, initializer=setup, thread_name_prefix="sleuth-decode")
    source = iter(batches)
    end = object()
    low_water = max(1, min(workers, depth))
    state = threading.Condition()
    ready: deque[tuple[int, DecodedBatch]] = deque()
    results: dict[int, tuple[DecodedBatch, np.ndarray | None]] = {}
    failure: list[BaseException] = []
    decoding = False
    exhausted = False
    produced = 0
    done_frames = 0

    def next_task() -> tuple[str, Any] | None:
        nonlocal decoding
        with state:
            while True:
                if failure:
                    return None
                decoder_free = not decoding and not exhausted
                if decoder_free and len(ready) < low_water:
                    decoding = True
                    return "decode", None
                if ready:
                    return "embed", ready.popleft()
                if exhausted and not decoding:
                    return None
                state.wait()

    def work() -> None:
        nonlocal decoding, exhausted, produced, done_frames
        try:
            if setup is not None:
                setup()
            while (task := next_task()) is not None:
                kind, item = task
                if kind == "decode":
                    batch = decoder.submit(next, source, end).result()
                    if batch is end:
                        batch = None
                    with state:
                        decoding = False
                        if batch is None:
                            exhausted = True
                        else:
                            ready.append((produced, batch))
                            produced += 1
                        state.notify_all()
                    continue
                seq, batch = item
                embedding = encode(batch.pixels) if batch.indices else None
                batch = replace(batch, pixels=None)  # keep the timestamps, let the pixels go: memory stays bounded
                with state:
                    results[seq] = (batch, embedding)
                    done_frames += len(batch.indices) + len(batch.skipped)
                    if progress is not None:
                        progress(done_frames, total)
                    state.notify_all()
        except BaseException as exc:  # raised in the caller
            with state:
                failure.append(exc)
                decoding = False
                state.notify_all()

    threads = [threading.Thread(target=work, name=f"sleuth-index-{k}", daemon=True) for k in range(max(1, workers))]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            decoder.submit(close).result()  # on the thread that ran it
        decoder.shutdown(wait=True)
    if failure:
        raise failure[0]
    times: list[float] = []
    parts: list[np.ndarray] = []
    skipped: list[tuple[int, str]] = []
    for seq in range(produced):
        batch, embedding = results[seq]
        skipped.extend(batch.skipped)
        if batch.indices:
            parts.append(embedding)
            times.extend(batch.timestamps)
    embeddings = np.concatenate(parts, axis=0) if parts else np.zeros((0, 0), dtype=np.float32)
    return np.asarray(times, dtype=np.float64), embeddings, skipped


def effective_batch_size(batch_size: int, total: int, workers: int) -> int:
    """``batch_size``, smaller for a short video so that its few batches still overlap.

    With ``workers`` threads, aim at four batches each (no smaller than 8
    frames, or one batch each where there are fewer frames than that): the
    first decode and the last embedding run alone, so the shorter they are
    the better, while below ~8 frames a batch costs more per frame.
    """
    if workers <= 1 or total <= 0:
        return max(1, batch_size)
    per_worker = -(-total // workers)
    return max(1, min(batch_size, max(-(-total // (4 * workers)), min(8, per_worker))))


def default_workers(device: str, cores: int | None = None) -> int:
    """Worker threads for ``workers=0``.

    On a CPU, two (``run_pipeline``), each with half of torch's threads:
    decoding and embedding then share the cores without a thread too many,
    and no forward pass is split so thin that its threads mostly wait on
    each other. Elsewhere one embedding thread next to the decoding thread:
    the device does the model's work.
    """
    if device != "cpu":
        return 1
    cores = cores or available_cores()
    return 2 if cores >= 2 else 1


def _decode_failures_named(batches: Iterator[DecodedBatch], path: Path) -> Iterator[DecodedBatch]:
    """Re-raise an unexpected exception from decoding as a one-line ``DecodeError`` naming the file."""
    try:
        yield from batches
    except SleuthError:
        raise
    except Exception as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if len(reason) > 200:
            reason = reason[:197] + "..."
        raise DecodeError(f"decoding failed ({type(exc).__name__}: {reason}): {path}") from exc


def _one_torch_thread() -> ContextManager:
    # Decoding-side torch work (resizing) stays on one core, leaving the others to the model.
    from tools.video_scan import torch_threads

    return torch_threads(1)


class DecodePlan(NamedTuple):
    """What to decode for an index and how: frame indices, resize target, preprocessing, batch size."""

    indices: list[int]
    size: tuple[int, int] | None  # frames are resized to this while decoding; None: left as they are
    preprocess: Callable[[list[np.ndarray]], Any]
    batch_size: int


def decode_plan(video: Video, encoder, *, fps: float, max_frames: int, batch_size: int, workers: int) -> DecodePlan:
    """The frames ``build_frame_index`` decodes for ``video`` and how it prepares them for ``encoder``."""
    indices = video.fps_indices(fps, max_frames=max_frames).tolist()
    size = None
    preprocess = encoder.preprocess_frames
    frame_size = getattr(encoder, "frame_size", None)
    if frame_size is not None and hasattr(encoder, "pixels_from_frames"):
        size = frame_size(video.meta.width, video.meta.height)
        if size is not None:
            preprocess = encoder.pixels_from_frames
    return DecodePlan(indices, size, preprocess, effective_batch_size(batch_size, len(indices), workers))


def build_frame_index(
    video: Video,
    encoder,
    *,
    fps: float,
    max_frames: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
    queue_depth: int = DEFAULT_QUEUE_DEPTH,
    progress: ProgressCallback | None = None,
    meta_extra: dict[str, Any] | None = None,
    workers: int = 1,
    decode_threads: int = 1,
    decoder: ScanDecoder = "auto",
    keep: KeepFrames | None = None,
) -> FrameIndex:
    """Sample ``video`` at ``fps`` (at most ``max_frames``), embed with ``encoder`` and index.

    With ``workers=1`` a background thread decodes and preprocesses batches
    (at most ``queue_depth`` ahead, ``prefetch``) while the calling thread
    embeds them; with more, that many threads share decoding and embedding
    (``run_pipeline``), each with its share of torch's threads. Frames are
    decoded by ``video.scan`` (``decoder``, ``decode_threads``: see there).
    Unexpected decoding failures become a ``DecodeError`` naming the file.
    ``encoder`` needs ``preprocess_frames``, ``encode_pixels``, ``model_id``,
    ``random_weights``, ``labels`` and ``dim`` (a ``tools.clip.ClipEncoder``);
    where it also has ``frame_size`` and ``pixels_from_frames``, frames are
    resized while decoding and batches travel as uint8.
    ``keep``: frames kept for showing (``decode_batches``).
    Raises ``DecodeError`` when no frame can be decoded.
    """
    started = time.perf_counter()
    plan = decode_plan(video, encoder, fps=fps, max_frames=max_frames, batch_size=batch_size, workers=workers)
    indices = plan.indices
    total = len(indices)
    if progress is not None:
        progress(0, total)
    used_decoder = video.scan_decoder(indices, decoder, decode_threads)
    source = _decode_failures_named(
        decode_batches(
            video, indices, plan.preprocess, plan.batch_size, size=plan.size, decoder=decoder, threads=decode_threads,
            keep=keep,
        ),
        video.path,
    )
    threads = getattr(encoder, "embedding_threads", None)
    if workers > 1:
        with threads(workers) if threads is not None else contextlib.nullcontext(None) as setup:
            timestamps, embeddings, skipped = run_pipeline(
                source, encoder.encode_pixels, total, progress, workers=workers, depth=queue_depth, setup=setup
            )
    else:
        batches = prefetch(source, queue_depth, context=_one_torch_thread)
        try:
            timestamps, embeddings, skipped = embed_batches(batches, encoder.encode_pixels, total, progress)
        finally:
            batches.close()
    return assemble_index(
        video.meta,
        encoder,
        timestamps,
        embeddings,
        skipped,
        fps=fps,
        max_frames=max_frames,
        decoder=used_decoder,
        build_s=time.perf_counter() - started,
        meta_extra=meta_extra,
    )


def assemble_index(
    video_meta: VideoMeta,
    encoder,
    timestamps: np.ndarray,
    embeddings: np.ndarray,
    skipped: list[tuple[int, str]],
    *,
    fps: float,
    max_frames: int,
    decoder: str,
    build_s: float,
    meta_extra: dict[str, Any] | None = None,
) -> FrameIndex:
    """A built index from its parts: every engine (one video, a directory, Ray) ends here, so their entries agree.

    ``encoder`` needs ``model_id``, ``random_weights``, ``labels`` (and
    ``precision`` where it has one). Raises ``DecodeError`` when no frame
    was decoded.
    """
    if len(timestamps) == 0:
        reason = sorted(skipped)[0][1] if skipped else "no frames"
        raise DecodeError(f"no frame could be decoded for the index ({reason}): {video_meta.path}")
    meta = IndexMeta(
        video=video_meta,
        model_id=encoder.model_id,
        random_weights=encoder.random_weights,
        labels=list(encoder.labels),
        fps=fps,
        max_frames=max_frames,
        dim=int(embeddings.shape[1]),
        n_indexed=int(len(timestamps)),
        skipped=sorted(skipped),
        build_s=round(build_s, 3),
        precision=getattr(encoder, "precision", ""),
        decoder=decoder,
        **(meta_extra or {}),
    )
    return FrameIndex(timestamps, embeddings, meta)


# --------------------------------------------------------------------------- persistence


def save_frame_index(index: FrameIndex, path: Path) -> None:
    from tools.cache import write_entry

    write_entry(path, index.timestamps, index.embeddings, index.meta.model_dump(mode="json"))


def load_frame_index(path: Path) -> FrameIndex:
    """Load and verify a cached index; ``CacheEntryError`` if it is not sound."""
    from pydantic import ValidationError

    from tools.cache import CacheEntryError, read_entry

    timestamps, embeddings, raw_meta = read_entry(path)
    try:
        meta = IndexMeta.model_validate(raw_meta)
    except ValidationError as exc:
        raise CacheEntryError(f"cache entry {path} has invalid meta ({exc.error_count()} errors)") from None
    if meta.format != INDEX_FORMAT:
        raise CacheEntryError(f"cache entry {path} has format {meta.format}, expected {INDEX_FORMAT}")
    if meta.n_indexed != len(timestamps) or meta.dim != embeddings.shape[1]:
        raise CacheEntryError(f"cache entry {path} disagrees with its meta about its size")
    if not (np.all(np.isfinite(embeddings)) and np.all(np.isfinite(timestamps))):
        raise CacheEntryError(f"cache entry {path} holds non-finite numbers")
    return FrameIndex(timestamps, embeddings, meta)
