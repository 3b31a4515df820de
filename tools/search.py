"""Text-to-frame search over cached frame indexes: ``FrameSearcher``.

One searcher holds one CLIP encoder (loaded on first use) and serves any
number of videos and threads. ``index(video)`` returns the video's frame
index from memory, from the disk cache, or by building it; a per-key lock
(a thread lock plus a file lock for other processes) makes sure one index is
built once, however many workers ask for it at the same time.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from tools.cache import (
    CacheEntryError,
    ensure_writable_dir,
    entry_path,
    file_sha256,
    index_cache_key,
)
from tools.clip import (
    PREPROCESS_VERSION,
    ClipEncoder,
    clip_labels,
    clip_model_id,
    embedding_recipe,
    load_clip,
    resolve_device,
    resolve_precision,
)
from tools.frame_index import (
    FrameIndex,
    ProgressCallback,
    SearchHit,
    build_frame_index,
    default_workers,
    load_frame_index,
    save_frame_index,
)
from tools.frame_shelf import KeepFrames
from tools.options import IndexConfig
from tools.video import VideoError, check_video_file, open_video

__all__ = ["FrameSearcher", "IndexConfig", "IndexOutcome", "SearchHit"]


@dataclass
class IndexOutcome:
    """An index plus how it was obtained (for progress lines and reports)."""

    index: FrameIndex
    source: Literal["memory", "disk", "built"]
    cache_path: Path
    seconds: float
    rebuilt_reason: str | None = None  # why a cache entry on disk was not trusted

    @property
    def cache_hit(self) -> bool:
        return self.source != "built"


class FrameSearcher:
    """Builds, caches and searches frame indexes with one CLIP encoder. Thread-safe."""

    def __init__(self, config: IndexConfig, encoder: ClipEncoder | None = None, *, memory_entries: int = 32,
                 keep_frames: KeepFrames | None = None):
        self.config = config
        self.keep_frames = keep_frames  # what a build keeps of the frames it decodes, for showing later
        self._encoder = encoder
        self._encoder_lock = threading.Lock()
        self._model_id = encoder.model_id if encoder is not None else None
        self._memory: OrderedDict[str, FrameIndex] = OrderedDict()
        self._memory_entries = max(0, memory_entries)
        self._memory_lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self._key_locks_guard = threading.Lock()
        self._text_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_dir: Path | None = None
        self._recipe = encoder.recipe if encoder is not None and hasattr(encoder, "recipe") else None

    # -- identity

    @property
    def model_id(self) -> str:
        if self._model_id is None:
            self._model_id = clip_model_id(self.config)
        return self._model_id

    @property
    def labels(self) -> list[str]:
        if self._encoder is not None:
            return list(self._encoder.labels)
        return clip_labels(self.config)

    @property
    def recipe(self) -> str:
        """Preprocessing version and number format of the embeddings (part of the cache key)."""
        if self._recipe is None:
            if self._encoder is not None and hasattr(self._encoder, "recipe"):
                self._recipe = self._encoder.recipe
            else:
                device = resolve_device(self.config.device)
                self._recipe = embedding_recipe(
                    resolve_precision(self.config.precision, device), self.config.frame_fit
                )
        return self._recipe

    @property
    def cache_dir(self) -> Path:
        if self._cache_dir is None:
            self._cache_dir = ensure_writable_dir(self.config.resolved_cache_dir())
        return self._cache_dir

    @property
    def encoder(self) -> ClipEncoder:
        """The CLIP encoder, loaded on first use (a cache hit never needs it)."""
        if self._encoder is None:
            with self._encoder_lock:
                if self._encoder is None:
                    self._encoder = load_clip(self.config)
        return self._encoder

    # -- indexes

    def cache_key(self, video: str | Path) -> str:
        path = _checked_video_path(video)
        try:
            content = file_sha256(path, memo_dir=self.cache_dir)
        except OSError as exc:
            raise VideoError(f"cannot read video ({exc.strerror or exc}): {path}") from None
        return index_cache_key(
            content_sha256=content,
            model_id=self.model_id,
            fps=self.config.fps,
            max_frames=self.config.max_frames,
            preprocess=self.recipe,
        )

    def index(self, video: str | Path, progress: ProgressCallback | None = None) -> FrameIndex:
        """The frame index of ``video``: from memory, the disk cache, or built now (then cached)."""
        return self.ensure_index(video, progress).index

    def ensure_index(self, video: str | Path, progress: ProgressCallback | None = None) -> IndexOutcome:
        """Like ``index`` but also says where the index came from and how long it took."""
        started = time.perf_counter()
        path = _checked_video_path(video)
        key = self.cache_key(path)
        cached = self._memory_get(key)
        if cached is not None:
            return IndexOutcome(cached, "memory", entry_path(self.cache_dir, key), time.perf_counter() - started)

        with self._key_lock(key):
            cached = self._memory_get(key)  # another thread may have built it meanwhile
            if cached is not None:
                return IndexOutcome(cached, "memory", entry_path(self.cache_dir, key), time.perf_counter() - started)
            target = entry_path(self.cache_dir, key)
            target.parent.mkdir(parents=True, exist_ok=True)
            from filelock import FileLock

            with FileLock(str(target.with_suffix(".lock"))):
                index, reason = self._load_from_disk(target, path)
                source: Literal["disk", "built"] = "disk"
                if index is None:
                    index = self._build(path, key, progress)
                    save_frame_index(index, target)
                    source = "built"
            self._memory_put(key, index)
        return IndexOutcome(index, source, target, time.perf_counter() - started, reason)

    def _load_from_disk(self, target: Path, path: Path) -> tuple[FrameIndex | None, str | None]:
        try:
            index = load_frame_index(target)
        except FileNotFoundError:
            return None, None
        except CacheEntryError as exc:
            return None, str(exc)
        if index.meta.model_id != self.model_id:
            return None, f"cache entry {target} was built with {index.meta.model_id}"
        # Same content may live at another path now: report the path asked about.
        index.meta = index.meta.model_copy(update={"video": index.meta.video.model_copy(update={"path": str(path)})})
        return index, None

    def _build(self, path: Path, key: str, progress: ProgressCallback | None) -> FrameIndex:
        encoder = self.encoder
        config = self.config
        with open_video(path) as video:
            return build_frame_index(
                video,
                encoder,
                fps=config.fps,
                max_frames=config.max_frames,
                batch_size=config.batch_size,
                queue_depth=config.queue_depth,
                progress=progress,
                workers=config.workers or default_workers(encoder.device),
                decode_threads=config.decode_threads,
                meta_extra=self.meta_extra(path, key),
                keep=self.keep_frames,
            )

    # -- for engines that build many indexes at once (tools.index_directory, tools.ray_index)

    def meta_extra(self, path: Path, key: str) -> dict:
        """What an entry's meta holds beyond what the build knows: its key, the content hash, the preprocessing."""
        return {
            "key": key,
            "content_sha256": file_sha256(path, memo_dir=self.cache_dir),
            "preprocess": PREPROCESS_VERSION,
        }

    def cached(self, video: str | Path) -> tuple[Path, str, IndexOutcome | None, str | None]:
        """(checked path, cache key, the outcome where the index is in memory or on disk else None,
        why an entry on disk was not trusted)."""
        started = time.perf_counter()
        path = _checked_video_path(video)
        key = self.cache_key(path)
        index = self._memory_get(key)
        target = entry_path(self.cache_dir, key)
        if index is not None:
            return path, key, IndexOutcome(index, "memory", target, time.perf_counter() - started), None
        index, reason = self._load_from_disk(target, path)
        if index is not None:
            self._memory_put(key, index)
            return path, key, IndexOutcome(index, "disk", target, time.perf_counter() - started), None
        return path, key, None, reason

    def store(
        self, path: Path, key: str, index: FrameIndex, seconds: float, rebuilt_reason: str | None = None
    ) -> IndexOutcome:
        """Write an index built elsewhere to the cache, under the locks ``ensure_index`` takes.

        If another process wrote a sound entry meanwhile, that one is kept and returned.
        """
        target = entry_path(self.cache_dir, key)
        target.parent.mkdir(parents=True, exist_ok=True)
        from filelock import FileLock

        with self._key_lock(key), FileLock(str(target.with_suffix(".lock"))):
            existing, _ = self._load_from_disk(target, path)
            if existing is not None:
                self._memory_put(key, existing)
                return IndexOutcome(existing, "disk", target, seconds)
            save_frame_index(index, target)
            self._memory_put(key, index)
        return IndexOutcome(index, "built", target, seconds, rebuilt_reason)

    def _key_lock(self, key: str) -> threading.Lock:
        with self._key_locks_guard:
            return self._key_locks.setdefault(key, threading.Lock())

    def _memory_get(self, key: str) -> FrameIndex | None:
        with self._memory_lock:
            index = self._memory.get(key)
            if index is not None:
                self._memory.move_to_end(key)
            return index

    def _memory_put(self, key: str, index: FrameIndex) -> None:
        if self._memory_entries == 0:
            return
        with self._memory_lock:
            self._memory[key] = index
            self._memory.move_to_end(key)
            while len(self._memory) > self._memory_entries:
                self._memory.popitem(last=False)

    # -- search

    def embed_text(self, text: str) -> np.ndarray:
        """(dim,) float32 normalised text embedding, memoised per text."""
        with self._memory_lock:
            cached = self._text_cache.get(text)
        if cached is not None:
            return cached
        vector = self.encoder.encode_text([text])[0]
        with self._memory_lock:
            self._text_cache[text] = vector
            while len(self._text_cache) > 256:
                self._text_cache.popitem(last=False)
        return vector

    def search(
        self,
        video: str | Path,
        text: str,
        k: int = 5,
        start: float | None = None,
        end: float | None = None,
        min_gap_s: float | None = None,
    ) -> list[SearchHit]:
        """Top-``k`` frames of ``video`` for ``text`` as (t, score), best first, at least ``min_gap_s`` apart."""
        from sleuth.errors import ConfigError

        if not isinstance(text, str) or not text.strip():
            raise ConfigError("search text must not be empty")
        index = self.index(video)
        gap = self.config.min_gap_s if min_gap_s is None else min_gap_s
        return index.search_vector(self.embed_text(text.strip()), k, start=start, end=end, min_gap_s=gap)


def _checked_video_path(video: str | Path) -> Path:
    # a stat before hashing the file: a FIFO would block the hash forever
    return check_video_file(video).resolve()
