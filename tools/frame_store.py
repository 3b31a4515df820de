"""Frames decoded once per run, served to every question, method and tool that asks for them again.

A benchmark asks several questions about each video (MMR-V about four), and
within one agent question the overview, a view and a re-sample often land on
the same frames. Decoding is the cost that sets the pace of a run (a seek into
H.264 decodes from the previous keyframe), so a ``FrameStore`` keeps:

- the open videos (one handle per file, shared by every question on it, so a
  video's frame table is read once per run);
- the decoded frames, in a least-recently-used cache bounded by bytes.

Frames come out exactly as the video's reader decodes them (the cache stores
the decoder's output and marks it read-only), so a cached frame is
bit-identical to a fresh decode: the official uniform protocol is unchanged.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from tools.video import Frame, Video, open_video

DEFAULT_CACHE_BYTES = 2 * 1024**3  # about 700 frames of 720p video
DEFAULT_OPEN_VIDEOS = 16


class FrameCache:
    """Decoded frames by (video, frame index), least recently used first out, bounded by bytes. Thread-safe."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES):
        self.max_bytes = max(0, int(max_bytes))
        self._frames: OrderedDict[tuple[str, int], Frame] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, video: str, index: int) -> Frame | None:
        with self._lock:
            frame = self._frames.get((video, index))
            if frame is None:
                self.misses += 1
                return None
            self._frames.move_to_end((video, index))
            self.hits += 1
            return frame

    def contains(self, video: str, index: int) -> bool:
        """Whether the frame is cached (not counted as a hit or a miss)."""
        with self._lock:
            return (video, index) in self._frames

    def put(self, video: str, frame: Frame) -> None:
        size = frame.image.nbytes
        if size > self.max_bytes:
            return
        frame.image.flags.writeable = False  # shared by every reader from now on
        with self._lock:
            key = (video, frame.index)
            previous = self._frames.pop(key, None)
            if previous is not None:
                self._bytes -= previous.image.nbytes
            self._frames[key] = frame
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, evicted = self._frames.popitem(last=False)
                self._bytes -= evicted.image.nbytes

    @property
    def bytes(self) -> int:
        return self._bytes

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"frames": len(self._frames), "bytes": self._bytes, "hits": self.hits, "misses": self.misses}


class FrameStore:
    """The open videos and decoded frames of one run. ``with store.video(path) as video:`` gives a shared
    ``Video`` whose reads go through the cache; it stays open for the next question until evicted."""

    def __init__(self, cache_bytes: int = DEFAULT_CACHE_BYTES, max_open: int = DEFAULT_OPEN_VIDEOS):
        self.cache = FrameCache(cache_bytes)
        self.max_open = max(1, max_open)
        self._open: OrderedDict[str, Video] = OrderedDict()
        self._users: dict[str, int] = {}
        self._lock = threading.Lock()
        self._opening: dict[str, threading.Lock] = {}

    @contextlib.contextmanager
    def video(self, path: str | Path) -> Iterator[Video]:
        key = str(Path(path).expanduser())
        video = self._acquire(key)
        try:
            yield video
        finally:
            self._release(key)

    def decode_ahead(self, path: str | Path, pick: Callable[[Video], Sequence[int]]) -> None:
        """Decode the frames ``pick(video)`` names into the cache and return when they are in, the video
        held open meanwhile (a method preparing a later question, from a background thread)."""
        with self.video(path) as video:
            indices = list(pick(video))
            thread = video.prefetch(indices, together=True) if indices else None
            if thread is not None:
                thread.join()

    def _acquire(self, key: str) -> Video:
        with self._lock:
            opening = self._opening.setdefault(key, threading.Lock())
        with opening:  # one open per file, however many questions ask at once
            with self._lock:
                video = self._open.get(key)
                if video is not None:
                    self._open.move_to_end(key)
                    self._users[key] = self._users.get(key, 0) + 1
                    return video
            video = open_video(key)
            video.frame_cache = self.cache
            with self._lock:
                self._open[key] = video
                self._users[key] = self._users.get(key, 0) + 1
                self._close_idle()
            return video

    def _release(self, key: str) -> None:
        with self._lock:
            self._users[key] = max(0, self._users.get(key, 1) - 1)
            self._close_idle()

    def _close_idle(self) -> None:
        """Close the least recently used videos nobody is reading, beyond ``max_open`` (lock held)."""
        for key in list(self._open):
            if len(self._open) <= self.max_open:
                return
            if self._users.get(key, 0) == 0:
                self._open.pop(key).close()
                self._users.pop(key, None)

    def close(self) -> None:
        with self._lock:
            for video in self._open.values():
                video.close()
            self._open.clear()
            self._users.clear()

    def stats(self) -> dict[str, int]:
        return {**self.cache.stats(), "open_videos": len(self._open)}

