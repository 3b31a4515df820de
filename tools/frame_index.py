"""A video's frame index: timestamps + CLIP embeddings in a faiss inner-product index.

Building one is a producer/consumer pipeline: a background thread decodes and
preprocesses frames into a bounded queue (``decode_batches``) while the
calling thread embeds them (``embed_batches``). Both halves are plain
functions so they can be timed and tuned on their own.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
from pydantic import BaseModel, Field

from sleuth.errors import ConfigError
from tools.options import DEFAULT_MIN_GAP_S
from tools.video import DecodeError, Video, VideoMeta, WindowError

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
) -> Iterator[DecodedBatch]:
    """Decode ``indices`` and preprocess them ``batch_size`` frames at a time.

    Frames that fail to decode are carried in ``skipped`` of the next batch
    (a final batch may hold only skips, with ``pixels=None``).
    """
    images: list[np.ndarray] = []
    batch_indices: list[int] = []
    times: list[float] = []
    skipped: list[tuple[int, str]] = []
    for item in video.iter_frames(indices):
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


def prefetch(items: Iterable, depth: int) -> Iterator:
    """Run ``items`` in a background thread, ``depth`` results ahead of the consumer."""
    box: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(value) -> bool:
        while not stop.is_set():
            try:
                box.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for value in items:
                if not put(value):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            put(_Failure(exc))
            return
        put(_DONE)

    worker = threading.Thread(target=produce, name="sleuth-frame-decoder", daemon=True)
    worker.start()
    try:
        while True:
            value = box.get()
            if value is _DONE:
                return
            if isinstance(value, _Failure):
                raise value.exc
            yield value
    finally:
        stop.set()
        worker.join(timeout=10)


def embed_batches(
    batches: Iterable[DecodedBatch],
    encode: Callable[[Any], np.ndarray],
    total: int,
    progress: ProgressCallback | None = None,
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
    """Embed decoded batches: returns (timestamps (N,), embeddings (N, D), skipped frames)."""
    times: list[float] = []
    parts: list[np.ndarray] = []
    skipped: list[tuple[int, str]] = []
    done = 0
    for batch in batches:
        skipped.extend(batch.skipped)
        if batch.indices:
            parts.append(encode(batch.pixels))
            times.extend(batch.timestamps)
        done += len(batch.indices) + len(batch.skipped)
        if progress is not None:
            progress(done, total)
    embeddings = np.concatenate(parts, axis=0) if parts else np.zeros((0, 0), dtype=np.float32)
    return np.asarray(times, dtype=np.float64), embeddings, skipped


def build_frame_index(
    video: Video,
    encoder,
    *,
    fps: float,
    max_frames: int,
    batch_size: int = 32,
    queue_depth: int = 4,
    progress: ProgressCallback | None = None,
    meta_extra: dict[str, Any] | None = None,
) -> FrameIndex:
    """Sample ``video`` at ``fps`` (at most ``max_frames``), embed with ``encoder`` and index.

    ``encoder`` needs ``preprocess_frames``, ``encode_pixels``, ``model_id``,
    ``random_weights``, ``labels`` and ``dim`` (a ``tools.clip.ClipEncoder``).
    Raises ``DecodeError`` when no frame can be decoded.
    """
    started = time.perf_counter()
    indices = video.fps_indices(fps, max_frames=max_frames)
    total = len(indices)
    if progress is not None:
        progress(0, total)
    batches = prefetch(decode_batches(video, indices.tolist(), encoder.preprocess_frames, batch_size), queue_depth)
    timestamps, embeddings, skipped = embed_batches(batches, encoder.encode_pixels, total, progress)
    if len(timestamps) == 0:
        reason = skipped[0][1] if skipped else "no frames"
        raise DecodeError(f"no frame could be decoded for the index ({reason}): {video.path}")
    meta = IndexMeta(
        video=video.meta,
        model_id=encoder.model_id,
        random_weights=encoder.random_weights,
        labels=list(encoder.labels),
        fps=fps,
        max_frames=max_frames,
        dim=int(embeddings.shape[1]),
        n_indexed=int(len(timestamps)),
        skipped=sorted(skipped),
        build_s=round(time.perf_counter() - started, 3),
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
