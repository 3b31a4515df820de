"""Decode many frames of one video in a single forward pass, doing as little work as possible.

Indexing wants a frame every second or so from minutes of video. A random
access reader decodes every frame between two wanted ones and converts each
wanted one; ``SequentialScan`` does less:

- Frames no other frame refers to (most B-frames) are not decoded at all
  unless they are wanted: the decoder is told per packet to skip
  non-reference frames (libavcodec's ``skip_frame``). The frames it does
  return are bit-identical to a full decode, because skipped frames are by
  definition never used to predict other frames.
- Where a keyframe lies far enough between the last wanted frame and the
  next, the demuxer seeks to it instead of decoding up to it.
- Frames are resized right after decoding (``resize_rgb``: antialiased
  bicubic on uint8, matching PIL's), so only small frames are kept.

Frame ``i`` is the ``i``-th frame in presentation order, the same numbering
``tools.video.Video`` uses; ``timeline`` gives each frame's time so a caller
can check that both agree before trusting the scan.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import stat
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from tools.native_output import quiet_pyav

# Seek only when a keyframe lies at least this many frames past the last wanted
# frame. It is also larger than any decoder's reordering delay (H.264 keeps at
# most 16 frames), so no wanted frame can still sit in the decoder at a seek.
SEEK_MIN_FRAMES = 48


class ScanUnavailable(Exception):
    """The file cannot be scanned this way (the caller falls back to its reader)."""


_SPECIAL_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def special_file_kind(mode: int) -> str | None:
    """What a file is when its ``os.stat`` mode is not a regular file's (``"a FIFO"``, ...), else None.

    Decoders must never be handed such a path: opening a FIFO waits for a
    writer forever, and a device never ends. ``os.stat`` (which follows
    symlinks) tells without opening, so it does not wait.
    """
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _SPECIAL_KINDS if test(mode)), "a special file")


class SequentialScan:
    """A PyAV decoder that returns wanted frames by presentation index, in ascending order."""

    name = "pyav-scan"

    def __init__(self, path: str | Path, *, threads: int = 1, seek: bool = True):
        import av

        self._av = av
        self.path = Path(path)
        self.threads = int(threads)
        self.seek_enabled = seek
        self._container = None
        try:
            kind = special_file_kind(os.stat(self.path).st_mode)
        except OSError as exc:
            raise ScanUnavailable(f"cannot open: {exc}") from None
        if kind is not None:
            raise ScanUnavailable(f"not a regular file ({kind})")
        quiet_pyav()
        try:
            self._container = av.open(str(self.path), metadata_errors="replace")  # as tools.video's reader
        except Exception as exc:
            raise ScanUnavailable(f"cannot open: {exc}") from None
        try:
            if not self._container.streams.video:
                raise ScanUnavailable("no video stream")
            self._stream = self._container.streams.video[0]
            ctx = self._stream.codec_context
            if threads != 1:
                ctx.thread_type = "AUTO"
            ctx.thread_count = max(0, int(threads))  # 0: as many as libavcodec likes
            self._index_packets()
        except BaseException:
            self._container.close()
            raise

    def _index_packets(self) -> None:
        """Presentation times and keyframes from packet headers: demuxing only."""
        pts: list[int] = []
        keys: list[int] = []
        for packet in self._container.demux(self._stream):
            if packet.size == 0:
                continue
            if packet.pts is None:
                # Without presentation times per packet, wanted frames cannot be told apart before decoding.
                raise ScanUnavailable("packets without presentation times")
            pts.append(packet.pts)
            if packet.is_keyframe:
                keys.append(packet.pts)
        if not pts:
            raise ScanUnavailable("no frames")
        pts.sort()
        if len(set(pts)) != len(pts):
            raise ScanUnavailable("repeated presentation times")
        self._pts = pts
        position = {stamp: i for i, stamp in enumerate(pts)}
        self._key_indices = sorted(position[k] for k in set(keys))
        self.timeline = (np.asarray(pts, dtype=np.float64) - pts[0]) * float(self._stream.time_base)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> "SequentialScan":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- decoding

    def _keyframe_before(self, index: int) -> int:
        k = bisect.bisect_right(self._key_indices, index) - 1
        return self._key_indices[k] if k >= 0 else 0

    def _worth_seeking(self, last: int, target: int) -> bool:
        """A keyframe at or before ``target`` lies far enough past ``last`` to jump to it."""
        return self.seek_enabled and self._keyframe_before(target) - last >= SEEK_MIN_FRAMES

    def _seek_to(self, key_index: int) -> None:
        # To the keyframe's own time: containers index by decode time, and a keyframe's
        # decode time never exceeds its presentation time, so this lands on that keyframe.
        self._container.seek(self._pts[key_index], stream=self._stream, backward=True, any_frame=False)

    def read(self, indices: Sequence[int]) -> Iterator[tuple[int, np.ndarray | None, str | None]]:
        """Decode ``indices``: yields ``(index, HxWx3 uint8 RGB, None)`` or ``(index, None, reason)``, ascending."""
        wanted = sorted(set(int(i) for i in indices))
        if not wanted:
            return
        if wanted[0] < 0 or wanted[-1] >= len(self._pts):
            raise ValueError(f"frame indices must lie in 0..{len(self._pts) - 1}")
        index_of = {self._pts[i]: i for i in wanted}
        ctx = self._stream.codec_context
        nxt = 0  # position in ``wanted`` of the next frame to deliver
        try:
            while True:
                self._seek_to(self._keyframe_before(wanted[nxt]))
                jumped = False
                skipping = None
                for packet in self._container.demux(self._stream):
                    mode = "DEFAULT" if packet.size == 0 or packet.pts in index_of else "NONREF"
                    if mode != skipping:
                        ctx.skip_frame = skipping = mode
                    try:
                        frames = ctx.decode(packet)
                    except self._av.FFmpegError:
                        continue  # a damaged packet: the decoder resynchronises on the next ones
                    delivered = False
                    for frame in frames:
                        index = index_of.get(frame.pts)
                        if index is None or index < wanted[nxt]:
                            continue
                        while wanted[nxt] < index:
                            yield wanted[nxt], None, "pyav: the decoder did not return this frame"
                            nxt += 1
                        yield index, frame.to_ndarray(format="rgb24"), None
                        nxt += 1
                        delivered = True
                        if nxt == len(wanted):
                            return
                    if delivered and self._worth_seeking(wanted[nxt - 1], wanted[nxt]):
                        jumped = True
                        break
                if not jumped:
                    for index in wanted[nxt:]:
                        yield index, None, "pyav: end of stream reached before this frame"
                    return
        finally:
            try:
                ctx.skip_frame = "DEFAULT"
            except Exception:
                pass  # the container was closed meanwhile


# --------------------------------------------------------------------------- resizing


@contextlib.contextmanager
def torch_threads(n: int):
    """Run torch ops in this thread on ``n`` threads, restoring the setting afterwards.

    ``torch.set_num_threads`` sets the calling thread's OpenMP team size (and
    the default for threads started later), so a decoding thread can work on
    one core while another thread's model runs on the rest.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def resize_rgb(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """HxWx3 uint8 -> (height, width) of ``size=(width, height)``: antialiased bicubic, as PIL's ``BICUBIC``.

    torch's uint8 antialiased path matches PIL to within one level at a tenth
    of PIL's cost.
    """
    import torch

    width, height = size
    if image.shape[0] == height and image.shape[1] == width:
        return image
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).unsqueeze(0)
    resized = torch.nn.functional.interpolate(tensor, size=(height, width), mode="bicubic", antialias=True)
    return resized[0].permute(1, 2, 0).contiguous().numpy()
