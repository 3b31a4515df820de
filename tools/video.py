"""Open a video and sample frames, each with its exact presentation time.

Two readers sit behind one ``Video`` class: decord (fast random access) and
PyAV (slower, but opens and decodes nearly anything). ``open_video`` tries
decord first and falls back to PyAV where decord cannot open or decode the
file; ``Video.reader`` says which one is in use.

Timestamps are the container's presentation times (not ``index / fps``), so
variable-frame-rate files get true times. They are measured from the first
frame, which is what players show.

Only regular files reach the decoders (a FIFO would block them forever), and
what decord and FFmpeg print about a broken file is kept off the terminal:
the first such line goes into sleuth's own error instead (``tools.native_output``).
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import os
import re
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Literal, Sequence

import numpy as np
from pydantic import BaseModel

from sleuth.errors import SleuthError
from tools.native_output import NativeOutput, capture_native_stderr, quiet_pyav
from tools.video_scan import ScanUnavailable, SequentialScan, resize_rgb, special_file_kind

ReaderName = Literal["decord", "pyav"]
ScanDecoder = Literal["auto", "scan", "reader"]

_DECODE_CHUNK = 16  # frames per decord batch: bounds memory, keeps seeks amortised
# Scattered frames (each a seek from its keyframe) are split over several decord readers decoding at
# once, with at least this many frames each, on at most this many readers (decord releases the GIL).
PARALLEL_MIN_FRAMES = 4
PARALLEL_MAX_READERS = 4
PARALLEL_MIN_SPAN = 300  # frames the request spans: closer together, one reader's single pass is cheaper
# ``Video.scan`` uses the sequential scan when the wanted frames spread over at
# least this many frames, and at least SCAN_MIN_STRIDE frames per wanted one.
SCAN_MIN_SPAN = 300
SCAN_MIN_STRIDE = 2


# --------------------------------------------------------------------------- errors


class VideoError(SleuthError):
    """A video could not be opened or read. The message names the file and the reason."""

    kind = "video"


class VideoNotFoundError(VideoError):
    """The path does not exist."""


class NotAVideoError(VideoError):
    """The file exists but holds no decodable video stream."""


class EmptyVideoError(VideoError):
    """The video stream has no frames."""


class WindowError(VideoError):
    """A time window (or sampling request) does not fit the video."""


class DecodeError(VideoError):
    """None of the requested frames could be decoded."""


# --------------------------------------------------------------------------- data


class VideoMeta(BaseModel):
    path: str
    duration_s: float
    fps: float
    n_frames: int
    width: int
    height: int
    reader: ReaderName


@dataclass
class Frame:
    index: int
    t: float  # presentation time in seconds from the first frame
    image: np.ndarray = field(repr=False)  # HxWx3 uint8 RGB


@dataclass
class FrameBatch:
    frames: list[Frame]
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (frame index, why it could not be decoded)

    @property
    def timestamps(self) -> list[float]:
        return [f.t for f in self.frames]

    def __len__(self) -> int:
        return len(self.frames)


# --------------------------------------------------------------------------- readers


_NATIVE_PREFIX = re.compile(r"^\[[\d:]+\] \S+:\d+: (Check failed: .*\(-?\d+ vs\. -?\d+\)\s*)?")


def _one_line(exc: BaseException) -> str:
    # PyAV's errors (and OSError) carry the bare reason; str() adds "[Errno N]" and a file name.
    strerror = getattr(exc, "strerror", None)
    # decord's messages start with "[hh:mm:ss] /src/file.cc:123: Check failed: ...": keep the reason.
    text = " ".join((strerror if isinstance(strerror, str) else str(exc)).split()) or type(exc).__name__
    text = _NATIVE_PREFIX.sub("", text)
    if "ERROR " in text:
        text = text.split("ERROR ", 1)[1]
    return text if len(text) <= 200 else text[:197] + "..."


class _DecordReader:
    name: ReaderName = "decord"

    def __init__(self, path: Path):
        import decord

        self._vr = decord.VideoReader(str(path), ctx=decord.cpu(0))
        n = len(self._vr)
        if n == 0:
            self.times = np.zeros(0)
            self.duration = 0.0
        else:
            ts = np.asarray(self._vr.get_frame_timestamp(np.arange(n)), dtype=np.float64).reshape(n, 2)
            # decord computes times in float32: round off the noise (1 us is far below a frame).
            origin = ts[0, 0]
            self.times = np.round(ts[:, 0] - origin, 6)
            self.duration = float(np.round(max(ts[-1, 1], ts[-1, 0]) - origin, 6))
        self.fps = float(self._vr.get_avg_fps() or 0.0)
        shape = self._vr[0].shape if n else (0, 0, 3)
        self._park()
        self.height, self.width = int(shape[0]), int(shape[1])

    def _park(self) -> None:
        # After a read, decord's decoding thread goes on decoding the rest of the video into
        # memory (gigabytes for a long one) and keeps a core busy; a seek to the start stops it.
        try:
            self._vr.seek(0)
        except Exception:
            pass

    def read(self, indices: Sequence[int]) -> Iterator[tuple[int, np.ndarray | None, str | None]]:
        try:
            for start in range(0, len(indices), _DECODE_CHUNK):
                chunk = list(indices[start : start + _DECODE_CHUNK])
                try:
                    images = self._vr.get_batch(chunk).asnumpy()
                except Exception:
                    # One bad frame fails the whole batch: retry one by one to find which.
                    for i in chunk:
                        try:
                            yield i, self._vr[i].asnumpy(), None
                        except Exception as exc:
                            yield i, None, f"decord: {_one_line(exc)}"
                    continue
                for i, image in zip(chunk, images):
                    yield i, image, None
        finally:
            if self._vr is not None:
                self._park()

    def close(self) -> None:
        self._vr = None


class _PyAVReader:
    name: ReaderName = "pyav"

    def __init__(self, path: Path):
        import av

        quiet_pyav()
        self._av = av
        # Tags in another encoding than UTF-8 (Latin-1 titles are common) must not make the video unreadable.
        self._container = av.open(str(path), metadata_errors="replace")
        try:
            if not self._container.streams.video:
                raise _NoVideoStream()
            self._stream = self._container.streams.video[0]
            self._stream.thread_type = "AUTO"
            self._scan_packets()
        except BaseException:
            self._container.close()
            raise
        ctx = self._stream.codec_context
        self.width, self.height = int(ctx.width or 0), int(ctx.height or 0)

    def _scan_packets(self) -> None:
        """Frame times from packet timestamps: demuxing only, no decoding."""
        stream = self._stream
        pts: list[int] = []
        keys: list[int] = []
        last_duration = 0
        for packet in self._container.demux(stream):
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is None or packet.size == 0:
                continue
            pts.append(stamp)
            if packet.is_keyframe:
                keys.append(stamp)
            last_duration = packet.duration or last_duration
        pts.sort()
        self._pts = pts
        self._keys = sorted(keys)
        tb = float(stream.time_base)
        rate = stream.average_rate or stream.guessed_rate
        if pts:
            origin = pts[0]
            self.times = (np.asarray(pts, dtype=np.float64) - origin) * tb
            step = last_duration * tb or (1.0 / float(rate) if rate else 0.0)
            self.duration = float(self.times[-1] + step)
        else:
            self.times = np.zeros(0)
            self.duration = 0.0
        self.fps = float(rate) if rate else (len(pts) / self.duration if self.duration > 0 else 0.0)

    def _needs_seek(self, current_pts: int | None, target_pts: int) -> bool:
        if current_pts is None or current_pts > target_pts:
            return True
        # Seeking pays off when a keyframe lies between here and the target.
        k = bisect.bisect_right(self._keys, current_pts)
        return k < len(self._keys) and self._keys[k] <= target_pts

    def read(self, indices: Sequence[int]) -> Iterator[tuple[int, np.ndarray | None, str | None]]:
        wanted = sorted(set(int(i) for i in indices))
        decoded: dict[int, tuple[np.ndarray | None, str | None]] = {}
        frames = None
        current = None  # last decoded av.VideoFrame
        exhausted = False
        for i in wanted:
            target = self._pts[i]
            if exhausted:
                decoded[i] = (None, "pyav: end of stream reached before this frame")
                continue
            if frames is None or self._needs_seek(current.pts if current is not None else None, target):
                try:
                    self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
                except self._av.FFmpegError as exc:
                    decoded[i] = (None, f"pyav: seek failed: {_one_line(exc)}")
                    frames = None
                    continue
                frames = self._container.decode(self._stream)
                current = None
            try:
                while current is None or current.pts is None or current.pts < target:
                    current = next(frames)
            except StopIteration:
                exhausted = True
                decoded[i] = (None, "pyav: end of stream reached before this frame")
                continue
            except self._av.FFmpegError as exc:
                decoded[i] = (None, f"pyav: {_one_line(exc)}")
                frames, current = None, None
                continue
            if current.pts == target:
                decoded[i] = (current.to_ndarray(format="rgb24"), None)
            else:
                decoded[i] = (None, "pyav: the decoder did not return this frame")
        for i in indices:
            image, reason = decoded[int(i)]
            yield int(i), image, reason

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


class _NoVideoStream(Exception):
    pass


# --------------------------------------------------------------------------- Video


class Video:
    """An open video. Use as a context manager, or call ``close()``.

    Sampling methods return a ``FrameBatch``: decoded frames in request order
    plus the frames that could not be decoded (skipped, with the reason). A
    request where no frame decodes raises ``DecodeError``.
    """

    def __init__(self, path: Path, impl: _DecordReader | _PyAVReader, *, allow_fallback: bool = False):
        self.path = path
        # decoded frames shared across readers of this file (``tools.frame_store``); None: decode every time
        self.frame_cache = None
        self._helpers: list[_DecordReader] = []  # extra decord readers for parallel decoding, opened on demand
        self._impl = impl
        self._allow_fallback = allow_fallback
        self._lock = threading.RLock()  # readers are not thread-safe
        self._closed = False
        self._waiting = 0  # real reads waiting for the lock: a prefetch lets them go first
        self._waiting_lock = threading.Lock()
        self._scan: SequentialScan | None | bool = None  # False: the file cannot be scanned
        self._refresh_meta()

    def _refresh_meta(self) -> None:
        impl = self._impl
        self._times = impl.times
        fps = impl.fps if impl.fps > 0 else (len(impl.times) / impl.duration if impl.duration > 0 else 0.0)
        self.meta = VideoMeta(
            path=str(self.path),
            duration_s=float(impl.duration),
            fps=float(fps),
            n_frames=len(impl.times),
            width=impl.width,
            height=impl.height,
            reader=impl.name,
        )

    # -- basics

    @property
    def reader(self) -> ReaderName:
        return self._impl.name

    @property
    def timestamps(self) -> np.ndarray:
        """Presentation time (s) of every frame, ascending."""
        return self._times.copy()

    def time_of(self, index: int) -> float:
        """Presentation time (s) of frame ``index``."""
        return float(self._times[index])

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "Video":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._impl is not None:
                self._impl.close()
            for helper in self._helpers:
                helper.close()
            self._helpers = []
            if self._scan:
                self._scan.close()
            self._scan = None

    def __repr__(self) -> str:
        return f"Video({str(self.path)!r}, reader={self.reader!r}, n_frames={self.meta.n_frames})"

    # -- index <-> time

    def nearest_indices(self, timestamps: Sequence[float]) -> np.ndarray:
        """Index of the frame whose presentation time is nearest each timestamp (ties: the earlier)."""
        t = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(t)):
            raise WindowError(f"timestamps must be finite numbers: {self.path}")
        times = self._times
        right = np.clip(np.searchsorted(times, t, side="left"), 0, len(times) - 1)
        left = np.clip(right - 1, 0, len(times) - 1)
        take_left = np.abs(t - times[left]) <= np.abs(times[right] - t)
        return np.where(take_left, left, right).astype(np.int64)

    def _check_window(self, start: float | None, end: float | None) -> tuple[float, float]:
        duration = self.meta.duration_s
        lo = 0.0 if start is None else float(start)
        hi = duration if end is None else float(end)
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise WindowError(f"window bounds must be finite numbers: {self.path}")
        if hi < 0 or lo > duration:
            raise WindowError(
                f"window [{lo:.3f}s, {hi:.3f}s] is outside the video (0-{duration:.3f}s): {self.path}"
            )
        if lo > hi:
            raise WindowError(f"window start {lo:.3f}s is after its end {hi:.3f}s: {self.path}")
        return max(lo, 0.0), min(hi, duration)

    # -- sampling

    def sample_uniform(self, n: int) -> FrameBatch:
        """``n`` frames at ``uniform_indices`` (MMR-V's protocol)."""
        return self.read(uniform_indices(self.meta.n_frames, _positive_count(n, self.path)))

    def sample_fps(
        self,
        fps: float,
        start: float | None = None,
        end: float | None = None,
        max_frames: int | None = None,
    ) -> FrameBatch:
        """One frame every ``1 / fps`` seconds in [start, end] (default: the whole video).

        Where that gives more than ``max_frames`` frames, ``max_frames`` of them
        are kept, evenly spread, so the whole window stays covered.
        """
        return self.read(self.fps_indices(fps, start, end, max_frames).tolist())

    def fps_indices(
        self,
        fps: float,
        start: float | None = None,
        end: float | None = None,
        max_frames: int | None = None,
    ) -> np.ndarray:
        """The frame indices ``sample_fps`` would decode (no decoding)."""
        if not (np.isfinite(fps) and fps > 0):
            raise WindowError(f"sampling rate must be a positive number of frames per second, got {fps}: {self.path}")
        lo, hi = self._check_window(start, end)
        count = int(np.floor((hi - lo) * fps + 1e-9)) + 1
        times = lo + np.arange(count, dtype=np.float64) / fps
        if count > 1 and times[-1] >= hi and hi > lo and end is None:
            times = times[:-1]  # the video's end time itself shows no new frame
        indices = _unique_in_order(self.nearest_indices(times))
        if max_frames is not None:
            max_frames = _positive_count(max_frames, self.path)
            if len(indices) > max_frames:
                keep = np.round(np.linspace(0, len(indices) - 1, max_frames)).astype(int)
                indices = indices[keep]
        return indices

    def sample_window(self, start: float, end: float, n: int) -> FrameBatch:
        """``n`` evenly spaced frames in [start, end] (clamped to the video; repeated frames dropped)."""
        return self.read(self.window_indices(start, end, n))

    def window_indices(self, start: float, end: float, n: int) -> list[int]:
        """The frame indices ``sample_window`` decodes (no decoding)."""
        n = _positive_count(n, self.path)
        lo, hi = self._check_window(start, end)
        return _unique_in_order(self.nearest_indices(np.linspace(lo, hi, n))).tolist()

    def frames_at(self, timestamps: list[float]) -> FrameBatch:
        """The frame nearest each timestamp, in the order given."""
        if len(timestamps) == 0:
            return FrameBatch(frames=[], skipped=[])
        return self.read(self.nearest_indices(timestamps).tolist())

    # -- decoding

    def read(self, indices: Sequence[int]) -> FrameBatch:
        """Decode frames by index (duplicates allowed, decoded once); raises ``DecodeError`` if none decodes."""
        indices = [int(i) for i in indices]
        if not indices:
            return FrameBatch(frames=[], skipped=[])
        n = self.meta.n_frames
        bad = [i for i in indices if not 0 <= i < n]
        if bad:
            raise WindowError(f"frame index {bad[0]} is outside 0..{n - 1}: {self.path}")
        unique = list(dict.fromkeys(indices))
        got: dict[int, Frame] = {}
        skipped: dict[int, str] = {}
        cache, key = self.frame_cache, str(self.path)
        with self._reading():  # check and fill the cache as one step: concurrent readers decode a frame once
            if cache is not None:
                got = {i: frame for i in unique if (frame := cache.get(key, i)) is not None}
            missing = [i for i in unique if i not in got]
            parallel = self._read_in_parallel(missing)
            if len(parallel) == len(missing):
                for i, frame in parallel.items():
                    got[i] = frame
                    if cache is not None:
                        cache.put(key, frame)
                missing = []
            # else: nothing tried, or a frame failed: the sequential path decodes, falls back and reports as ever
            for item in self.iter_frames(missing) if missing else ():
                if isinstance(item, Frame):
                    got[item.index] = item
                    if cache is not None:
                        cache.put(key, item)
                else:
                    skipped[item[0]] = item[1]
        if not got:
            reason = next(iter(skipped.values()), "unknown reason")
            raise DecodeError(f"none of {len(unique)} requested frames could be decoded ({reason}): {self.path}")
        frames = [got[i] for i in indices if i in got]
        return FrameBatch(frames=frames, skipped=sorted(skipped.items()))

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """The reader's lock for a read, announced while waiting so that a prefetch lets it go first (a
        thread releasing a lock often takes it straight back: without this a prefetch could starve it)."""
        with self._waiting_lock:
            self._waiting += 1
        try:
            self._lock.acquire()
        finally:
            with self._waiting_lock:
                self._waiting -= 1
        try:
            yield
        finally:
            self._lock.release()

    def prefetch(self, indices: Sequence[int], *, together: bool = False) -> threading.Thread | None:
        """Decode these frames into the frame cache in the background, while the caller waits on something
        else (a model reading search hits it may then ask to see, or another video's questions).

        Speculative and harmless: by default each frame takes the reader's lock on its own, so a real read
        waits for at most one frame; ``together`` decodes them a few at a time (several readers at once, for
        a video nobody reads yet). A frame already cached is skipped; a failure ends the prefetch quietly (a
        real read of that frame reports it). Nothing happens without a frame cache to keep the frames in."""
        cache, key = self.frame_cache, str(self.path)
        if cache is None:
            return None
        wanted = [i for i in dict.fromkeys(int(i) for i in indices) if 0 <= i < self.meta.n_frames]

        def work() -> None:
            # together: reads of a few frames each (several readers at once, and a short wait at exit)
            step = 2 * PARALLEL_MIN_FRAMES if together else 1
            for start in range(0, len(wanted), step):
                batch = wanted[start:start + step]
                while self._waiting and not self._closed:  # a real read goes first
                    time.sleep(0.002)
                with self._lock:
                    if self._closed or not threading.main_thread().is_alive():  # closed, or the program is ending
                        return
                    batch = [i for i in batch if not cache.contains(key, i)]
                    if not batch:
                        continue
                    try:
                        self.read(batch)
                    except Exception:  # noqa: BLE001 (speculative: the real read reports what went wrong)
                        return

        # not a daemon: one torn down inside the native decoder at exit aborts the process, so the program
        # waits for the frame under way (the loop then sees the main thread has ended and stops)
        thread = threading.Thread(target=work, name="sleuth-prefetch", daemon=False)
        thread.start()
        return thread

    def _read_in_parallel(self, indices: list[int]) -> dict[int, Frame]:
        """Decode scattered frames with several decord readers at once (bit-identical: the same decoder
        on the same file); {} when too few frames, close together, one core, or another reader. A frame a
        reader cannot decode is left out (the caller then decodes the whole request sequentially)."""
        from concurrent.futures import ThreadPoolExecutor

        from tools.cores import available_cores

        workers = min(PARALLEL_MAX_READERS, available_cores(), len(indices) // PARALLEL_MIN_FRAMES)
        if workers < 2 or self._impl is None or self._impl.name != "decord":
            return {}
        if max(indices) - min(indices) < PARALLEL_MIN_SPAN:
            return {}  # close together: one reader decodes them in one pass, cheaper than opening more
        try:
            while len(self._helpers) < workers - 1:
                self._helpers.append(_DecordReader(self.path))
        except Exception:
            return {}  # the main reader still works; decode sequentially
        readers = [self._impl, *self._helpers[: workers - 1]]
        parts = [part.tolist() for part in np.array_split(np.sort(np.asarray(indices)), workers)]

        def decode(reader: _DecordReader, part: list[int]) -> list[tuple[int, np.ndarray]]:
            return [(i, image) for i, image, _ in reader.read(part) if image is not None]

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sleuth-decode") as pool:
            decoded = [item for chunk in pool.map(decode, readers, parts) for item in chunk]
        return {i: Frame(index=i, t=float(self._times[i]), image=_as_rgb(image)) for i, image in decoded}

    def iter_frames(self, indices: Sequence[int]) -> Iterator[Frame | tuple[int, str]]:
        """Decode frames one by one: yields a ``Frame``, or ``(index, reason)`` for a frame that failed.

        In ``auto`` mode, if decord decodes none of the first frames asked of
        it, the video switches to PyAV and starts over.
        """
        indices = [int(i) for i in indices]
        with self._lock:
            held: list[tuple[int, str]] = []  # decord failures before any success: maybe retried with PyAV
            decoded_any = False
            for i, image, reason in self._impl.read(indices):
                if image is not None:
                    decoded_any = True
                    yield from held
                    held = []
                    yield Frame(index=i, t=float(self._times[i]), image=_as_rgb(image))
                    continue
                failure = (i, reason or "could not be decoded")
                if decoded_any or not (self._allow_fallback and self._impl.name == "decord"):
                    yield failure
                    continue
                held.append(failure)
                if len(held) >= min(len(indices), _DECODE_CHUNK):
                    self._allow_fallback = False
                    if self._switch_to_pyav():
                        n = self.meta.n_frames
                        yield from self.iter_frames([j for j in indices if j < n])
                        yield from ((j, "pyav: beyond the last frame") for j in indices if j >= n)
                        return
                    yield from held
                    held = []
            yield from held

    # -- bulk decoding

    def scan_decoder(self, indices: Sequence[int], decoder: ScanDecoder = "auto", threads: int = 1) -> str:
        """Which decoder ``scan`` will use for ``indices``: ``"pyav-scan"`` or this video's reader name.

        ``auto`` picks the sequential scan (``tools.video_scan``) when the frames
        to decode between wanted ones are many (sampling well below the frame
        rate over a long stretch), since that is where skipping non-reference
        frames and seeking across keyframes pay off; otherwise it keeps the
        video's reader. ``scan`` forces the scan where the file allows it,
        ``reader`` forces the reader.
        """
        if decoder not in ("auto", "scan", "reader"):
            raise VideoError(f"unknown scan decoder {decoder!r} (expected auto, scan or reader): {self.path}")
        wanted = sorted(set(int(i) for i in indices))
        if decoder == "reader" or not wanted:
            return self.reader
        if decoder == "auto":
            span = wanted[-1] - wanted[0] + 1
            if span < SCAN_MIN_SPAN or span < SCAN_MIN_STRIDE * len(wanted):
                return self.reader
        return SequentialScan.name if self._scanner(threads) is not None else self.reader

    def _scanner(self, threads: int = 1) -> SequentialScan | None:
        """A scanner whose frame numbering matches this video's, or None (opened once per thread count, kept)."""
        with self._lock:
            if self._scan and self._scan.threads != threads:
                self._scan.close()
                self._scan = None
            if self._scan is None:
                self._scan = self._open_scanner(threads)
            return self._scan or None

    def _open_scanner(self, threads: int) -> SequentialScan | bool:
        scan = None
        try:
            scan = SequentialScan(self.path, threads=threads)
            times = scan.timeline
            # decord computes times in float32: a millisecond is far below a frame and far above its noise.
            if len(times) != len(self._times) or not np.allclose(times, self._times, rtol=0, atol=1e-3):
                raise ScanUnavailable("its frame times differ from the reader's")
        except Exception:
            if scan is not None:
                scan.close()
            return False
        return scan

    def scan(
        self,
        indices: Sequence[int],
        *,
        size: tuple[int, int] | None = None,
        decoder: ScanDecoder = "auto",
        threads: int = 1,
        on_frame: Callable[[Frame], None] | None = None,
    ) -> Iterator[Frame | tuple[int, str]]:
        """Decode many frames for bulk work (indexing): yields a ``Frame`` or ``(index, reason)`` per index.

        Frames come in ascending index order, each once. ``size=(width,
        height)`` resizes every frame right after decoding (antialiased
        bicubic, as PIL), so only small frames are held. ``decoder``: see
        ``scan_decoder``; ``threads``: decoder threads for the scan (0: as many
        as libavcodec likes). Frames the scan cannot decode are retried with
        the video's reader and reported at the end; a frame is skipped only
        if both fail. ``on_frame`` sees each decoded frame at full resolution
        before it is resized (the index build keeps frames for showing).
        """
        wanted = sorted(set(int(i) for i in indices))
        n = self.meta.n_frames
        bad = [i for i in wanted if not 0 <= i < n]
        if bad:
            raise WindowError(f"frame index {bad[0]} is outside 0..{n - 1}: {self.path}")

        def shrunk(frame: Frame) -> Frame:
            if on_frame is not None:
                on_frame(frame)
            if size is not None:
                frame.image = resize_rgb(frame.image, size)
            return frame

        retry = wanted
        if self.scan_decoder(wanted, decoder, threads) == SequentialScan.name:
            scanner = self._scanner(threads)
            retry = []
            for i, image, _reason in scanner.read(wanted):
                if image is None:
                    retry.append(i)
                else:
                    yield shrunk(Frame(index=i, t=float(self._times[i]), image=_as_rgb(image)))
        for start in range(0, len(retry), _DECODE_CHUNK):
            for item in self.iter_frames(retry[start : start + _DECODE_CHUNK]):
                yield shrunk(item) if isinstance(item, Frame) else item

    def _switch_to_pyav(self) -> bool:
        try:
            if special_file_kind(os.stat(self.path).st_mode) is not None:
                return False  # replaced since it was opened: PyAV would block on a FIFO
            impl = _PyAVReader(self.path)
        except Exception:
            return False
        if len(impl.times) == 0:
            impl.close()
            return False
        self._impl.close()
        self._impl = impl
        self._allow_fallback = False
        if self._scan:
            self._scan.close()
        self._scan = None  # checked again against the new reader's times
        self._refresh_meta()
        return True


def _as_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    return np.ascontiguousarray(image, dtype=np.uint8)


def _unique_in_order(indices: np.ndarray) -> np.ndarray:
    _, first = np.unique(indices, return_index=True)
    return indices[np.sort(first)]


def uniform_indices(n_frames: int, n: int) -> list[int]:
    """``n`` frame indices spread evenly over a video: ``numpy.linspace(0, n_frames - 1, n, dtype=int)``."""
    return np.linspace(0, n_frames - 1, n, dtype=int).tolist()


def _positive_count(n: int, path: Path) -> int:
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise WindowError(f"number of frames must be a positive integer, got {n!r}: {path}")
    return int(n)


# --------------------------------------------------------------------------- open


def check_video_file(path: str | Path) -> Path:
    """``path`` (``~`` expanded) when it is a readable, non-empty regular file; raises ``VideoError`` otherwise.

    Looks with ``os.stat`` before opening anything, so a FIFO, socket or
    device fails at once (``NotAVideoError``) rather than blocking a reader.
    Raises ``VideoNotFoundError`` when nothing is there, ``NotAVideoError``
    for a directory, special or empty file, ``VideoError`` when it cannot be read.
    """
    path = Path(path).expanduser()
    try:
        info = os.stat(path)  # follows symlinks: a link to a FIFO is a FIFO
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            raise VideoNotFoundError(f"video not found: {path}") from None
        raise VideoError(f"cannot read video ({exc.strerror or exc}): {path}") from None
    if stat.S_ISDIR(info.st_mode):
        raise NotAVideoError(f"not a video file (it is a directory): {path}")
    kind = special_file_kind(info.st_mode)
    if kind is not None:
        raise NotAVideoError(f"not a regular file ({kind}): {path}")
    if info.st_size == 0:
        raise NotAVideoError(f"not a video file (the file is empty): {path}")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise VideoError(f"cannot read video ({exc.strerror or exc}): {path}") from None
    return path


def open_video(path: str | Path, reader: Literal["auto", "decord", "pyav"] = "auto") -> Video:
    """Open a video file for sampling.

    ``reader="auto"`` uses decord and falls back to PyAV where decord cannot
    open the file or decode its first frame. Raises ``VideoNotFoundError``,
    ``NotAVideoError`` or ``EmptyVideoError`` (all ``VideoError``).
    """
    if reader not in ("auto", "decord", "pyav"):
        raise VideoError(f"unknown video reader {reader!r} (expected auto, decord or pyav): {path}")
    path = check_video_file(path)
    # decord and its FFmpeg print to fd 2 about a broken file: keep that off the terminal (also
    # when PyAV then opens the file fine), and name FFmpeg's complaint in the error instead.
    with capture_native_stderr() as native:
        decord_reason = None
        if reader in ("auto", "decord"):
            try:
                impl = _DecordReader(path)
            except Exception as exc:
                decord_reason = _one_line(exc)
            else:
                if len(impl.times) == 0:
                    impl.close()
                    if reader == "decord":
                        raise EmptyVideoError(f"video has no frames: {path}")
                elif reader == "decord" or _decord_decodes_first_frame(impl):
                    return Video(path, impl, allow_fallback=(reader == "auto"))
                else:
                    decord_reason = "decord could not decode the first frame"
                    impl.close()
            if reader == "decord":
                raise NotAVideoError(f"not a readable video (decord: {_with_native(decord_reason, native)}): {path}")

        try:
            impl = _PyAVReader(path)
        except _NoVideoStream:
            raise NotAVideoError(f"not a video file (no video stream): {path}") from None
        except Exception as exc:
            raise NotAVideoError(f"not a readable video ({_with_native(_one_line(exc), native)}): {path}") from None
    if len(impl.times) == 0:
        impl.close()
        raise EmptyVideoError(f"video has no frames: {path}")
    return Video(path, impl)


def _with_native(reason: str, native: NativeOutput) -> str:
    """``reason`` plus FFmpeg's own first complaint, which often says more (``moov atom not found``)."""
    detail = native.detail
    return reason if detail is None or detail in reason else f"{reason}; FFmpeg: {detail}"


def _decord_decodes_first_frame(impl: _DecordReader) -> bool:
    try:
        return next(iter(impl.read([0])))[1] is not None
    except Exception:
        return False
