"""Frames decoded once per run, served to every question, method and tool that asks for them again.

A benchmark asks several questions about each video (MMR-V about four), and
within one agent question the overview, a view and a re-sample often land on
the same frames. Decoding is the cost that sets the pace of a run (a seek into
H.264 decodes from the previous keyframe), so a ``FrameStore`` keeps:

- the open videos (one handle per file, shared by every question on it, so a
  video's frame table is read once per run);
- the decoded frames, in a least-recently-used cache bounded by bytes;
- the rendered frames (the JPEG a model receives, ``tools.rendering``), in a
  second such cache and, given a ``FrameShelf``, on disk for later runs.

Frames come out exactly as the video's reader decodes them (the cache stores
the decoder's output and marks it read-only), so a cached frame is
bit-identical to a fresh decode, and a kept rendering is the same bytes a
fresh render gives: the official uniform protocol is unchanged.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.frame_shelf import FrameShelf
from tools.rendering import RenderedImage, Renderer
from tools.video import DecodeError, Frame, Video, open_video

DEFAULT_CACHE_BYTES = 2 * 1024**3  # about 700 frames of 720p video
DEFAULT_RENDERED_BYTES = 512 * 1024**2  # about 4,000 full-resolution 720p JPEGs
DEFAULT_OPEN_VIDEOS = 16
THUMBNAIL_BYTES = 32 * 1024**2  # thousands of thumbnails of a few kB each


@dataclass(frozen=True)
class RenderedFrame:
    index: int
    t: float  # seconds from the start of the video
    image: RenderedImage


@dataclass
class RenderedBatch:
    frames: list[RenderedFrame]  # in the order asked for
    skipped: list[tuple[int, str]]  # (frame index, why it could not be decoded)


class BoundedLRU:
    """Values by key, least recently used first out, their total size (``size_of``) at most ``max_size``.
    Thread-safe."""

    def __init__(self, max_size: int, size_of: Callable[[Any], int]):
        self.max_size = max(0, int(max_size))
        self._size_of = size_of
        self._values: OrderedDict[Hashable, Any] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            value = self._values.get(key)
            if value is not None:
                self._values.move_to_end(key)
            return value

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._values

    def put(self, key: Hashable, value: Any) -> None:
        size = self._size_of(value)
        if size > self.max_size:
            return
        with self._lock:
            previous = self._values.pop(key, None)
            self._size += size - (self._size_of(previous) if previous is not None else 0)
            self._values[key] = value
            while self._size > self.max_size:
                _, evicted = self._values.popitem(last=False)
                self._size -= self._size_of(evicted)

    @property
    def size(self) -> int:
        return self._size

    def __len__(self) -> int:
        return len(self._values)


class FrameCache:
    """Decoded frames by (video, frame index), least recently used first out, bounded by bytes. Thread-safe."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES):
        self._frames = BoundedLRU(max_bytes, lambda frame: frame.image.nbytes)
        self.max_bytes = self._frames.max_size
        self._lock = threading.Lock()  # the counts
        self.hits = 0
        self.misses = 0

    def get(self, video: str, index: int) -> Frame | None:
        frame = self._frames.get((video, index))
        with self._lock:
            if frame is None:
                self.misses += 1
            else:
                self.hits += 1
        return frame

    def contains(self, video: str, index: int) -> bool:
        """Whether the frame is cached (not counted as a hit or a miss)."""
        return (video, index) in self._frames

    def put(self, video: str, frame: Frame) -> None:
        if frame.image.nbytes <= self.max_bytes:
            frame.image.flags.writeable = False  # shared by every reader from now on
        self._frames.put((video, frame.index), frame)

    @property
    def bytes(self) -> int:
        return self._frames.size

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"frames": len(self._frames), "bytes": self._frames.size, "hits": self.hits, "misses": self.misses}


class FrameStore:
    """The open videos and decoded frames of one run. ``with store.video(path) as video:`` gives a shared
    ``Video`` whose reads go through the cache; it stays open for the next question until evicted.
    ``store.render(video, indices, renderer)`` gives frames as a model receives them, each rendered once
    (and kept on ``shelf``, when given, for later runs)."""

    def __init__(self, cache_bytes: int = DEFAULT_CACHE_BYTES, max_open: int = DEFAULT_OPEN_VIDEOS, *,
                 shelf: FrameShelf | None = None, rendered_bytes: int = DEFAULT_RENDERED_BYTES):
        self.cache = FrameCache(cache_bytes)
        self.rendered = BoundedLRU(rendered_bytes, _jpeg_bytes)  # (video, renderer key, index) -> RenderedImage
        self.shelf = shelf
        self._contents: dict[str, str | None] = {}
        self._thumbnails = BoundedLRU(THUMBNAIL_BYTES, _jpeg_bytes)  # (video, renderer key, index, side) -> image
        self.rendered_from = {"memory": 0, "shelf": 0, "decoded": 0}  # where each rendered frame came from
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

    def decode_ahead(self, path: str | Path, pick: Callable[[Video], Sequence[int]],
                     renderer: Renderer | None = None) -> None:
        """Decode the frames ``pick(video)`` names into the cache (and render them, given ``renderer``) and
        return when they are in, the video held open meanwhile (a method preparing a later question, from
        a background thread)."""
        with self.video(path) as video:
            indices = list(pick(video))
            if renderer is not None:
                self._render_speculatively(video, indices, renderer)
                return
            thread = video.prefetch(indices, together=True) if indices else None
            if thread is not None:
                thread.join()

    # -- rendered frames

    def render(self, video: Video, indices: Sequence[int], renderer: Renderer) -> RenderedBatch:
        """Frames ``indices`` of ``video`` as ``renderer`` makes them, in the order given (duplicates allowed):
        from memory, from the shelf, or decoded (in one read) and rendered now, then kept in both.
        Raises ``DecodeError`` when none can be had."""
        indices = [int(i) for i in indices]
        got: dict[int, RenderedImage] = {}
        missing: list[int] = []
        for i in dict.fromkeys(indices):
            image = self._kept(video, renderer, i)
            if image is None:
                missing.append(i)
            else:
                got[i] = image
        skipped: list[tuple[int, str]] = []
        if missing:
            try:
                batch = video.read(missing)
            except DecodeError:
                if not got:
                    raise
                batch = None
                skipped = [(i, "could not be decoded") for i in missing]
            if batch is not None:
                skipped = batch.skipped
                content = self._content(video)
                for frame in batch.frames:
                    image = got[frame.index] = renderer(frame.image)
                    self.rendered.put((str(video.path), renderer.key, frame.index), image)
                    if content is not None:
                        self.shelf.put(content, renderer.key, frame.index, image)
                    self._count("decoded")
        frames = [RenderedFrame(i, video.time_of(i), got[i]) for i in indices if i in got]
        return RenderedBatch(frames=frames, skipped=skipped)

    def thumbnail(self, video: Video, frame: RenderedFrame, renderer: Renderer, max_side: int) -> RenderedImage:
        """A rendered frame's thumbnail (``RenderedImage.thumbnail``), made once per run: the same overview
        frames appear in the trace of every question about a video."""
        key = (str(video.path), renderer.key, frame.index, max_side)
        made = self._thumbnails.get(key)
        if made is None:
            made = frame.image.thumbnail(max_side)
            self._thumbnails.put(key, made)
        return made

    def render_ahead(self, video: Video, indices: Sequence[int], renderer: Renderer) -> threading.Thread | None:
        """Render these frames in the background (a model reading search hits it may then ask to see)."""
        # not a daemon, as Video.prefetch's: a thread torn down inside the native decoder aborts the process
        thread = threading.Thread(target=self._render_speculatively, args=(video, indices, renderer),
                                  name="sleuth-render-ahead", daemon=False)
        thread.start()
        return thread

    def _render_speculatively(self, video: Video, indices: Sequence[int], renderer: Renderer) -> None:
        """Render the frames not rendered yet, decoding them in one read that yields to real reads
        (``Video.prefetch``); whatever fails is left for the real read to report."""
        wanted = self._not_rendered(video, [i for i in indices if 0 <= i < video.meta.n_frames], renderer)
        if not wanted:
            return
        decoding = video.prefetch(wanted, together=True)  # one read: cheaper than one per frame
        if decoding is not None:
            decoding.join()
        if threading.main_thread().is_alive() and not video.closed:
            with contextlib.suppress(Exception):
                self.render(video, wanted, renderer)

    def _kept(self, video: Video, renderer: Renderer, index: int) -> RenderedImage | None:
        key = (str(video.path), renderer.key, index)
        image = self.rendered.get(key)
        if image is not None:
            self._count("memory")
            return image
        content = self._content(video)
        if content is None:
            return None
        image = self.shelf.get(content, renderer.key, index)
        if image is not None:
            self.rendered.put(key, image)
            self._count("shelf")
        return image

    def _count(self, where: str) -> None:
        with self._lock:
            self.rendered_from[where] += 1

    def _not_rendered(self, video: Video, indices: Sequence[int], renderer: Renderer) -> list[int]:
        return [i for i in dict.fromkeys(int(i) for i in indices) if self._kept(video, renderer, i) is None]

    def _content(self, video: Video) -> str | None:
        """The video's content hash (the shelf's key), once per file per run; None without a shelf."""
        if self.shelf is None:
            return None
        key = str(video.path)
        if key not in self._contents:
            try:
                self._contents[key] = self.shelf.content(video.path)
            except OSError:
                self._contents[key] = None  # unreadable now: render without the shelf
        return self._contents[key]

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
        return {**self.cache.stats(), "open_videos": len(self._open), "rendered": len(self.rendered),
                **{f"rendered_from_{where}": n for where, n in self.rendered_from.items()}}


def _jpeg_bytes(image: RenderedImage) -> int:
    return image.nbytes
