"""Keep native decoders' messages out of the user's terminal, and hand them to sleuth's errors.

decord (C++) and the copy of FFmpeg it bundles print straight to file
descriptor 2 when they meet a broken file::

    [mov,mp4,m4a,3gp,3g2,mj2 @ 0x55e04fe029c0] moov atom not found
    [09:53:33] /github/workspace/src/video/video_reader.cc:83: ERROR opening: clip.mp4, Invalid data ...

Replacing ``sys.stderr`` cannot catch these: they never pass through Python.
``capture_native_stderr`` points fd 2 itself at a temporary file for the
length of a block, and the block reads back what landed there
(``NativeOutput.text``, ``NativeOutput.detail``) so that sleuth's own
one-line error can name the cause.

fd 2 belongs to the whole process, so overlapping captures (nested, or in
several threads) share one redirection, kept by a module lock and a count:
the first to begin redirects fd 2, the last to end restores it, exactly
once. Anything written to fd 2 meanwhile that is not a native decoder's line
(a warning or progress output from another thread) is copied to the real
stderr when the redirection ends, so it is delayed, never lost. Keep blocks
short for that reason.

PyAV's own copy of FFmpeg logs through a callback rather than printing;
``quiet_pyav`` makes sure that callback discards everything.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import tempfile
import threading
from typing import IO, Iterator

# FFmpeg's default log callback prefixes a message with its context: "[h264 @ 0x55d0c1e2a340] ".
_FFMPEG_LINE = re.compile(r"\[[^\]\n]+ @ 0x[0-9a-fA-F]+\] ?")
# decord logs through dmlc: "[09:53:33] /src/video/video_reader.cc:83: ...", stack traces after fatal ones.
_DECORD_LINE = re.compile(r"\[\d{2}:\d{2}:\d{2}\] \S+:\d+: |Stack trace returned \d+ entries:|\[bt\] \(\d+\) ")

_lock = threading.Lock()
_users = 0  # captures now running
_saved_fd: int | None = None  # the real fd 2, while it is redirected
_sink: IO[bytes] | None = None  # the temporary file fd 2 points at meanwhile


def is_native_line(line: str) -> bool:
    """Whether a line of stderr output comes from FFmpeg's or decord's own logging."""
    return bool(_FFMPEG_LINE.match(line) or _DECORD_LINE.match(line))


class NativeOutput:
    """What reached fd 2 during one ``capture_native_stderr`` block."""

    def __init__(self, sink: IO[bytes] | None, start: int = 0):
        self._sink = sink  # None: fd 2 could not be captured (e.g. it is closed); text stays empty
        self._start = start
        self._final: str | None = None

    @property
    def text(self) -> str:
        """Everything written to fd 2 since the block began: so far while it runs, all of it after."""
        if self._final is not None:
            return self._final
        if self._sink is None:
            return ""
        return _read_from(self._sink.fileno(), self._start).decode("utf-8", "replace")

    @property
    def detail(self) -> str | None:
        """FFmpeg's first message (e.g. ``moov atom not found``), without its prefix; None if it said nothing.

        The first is usually the cause; later ones tend to be its consequences.
        decord's own lines are left out: they repeat the exception decord raises.
        """
        for line in self.text.splitlines():
            prefix = _FFMPEG_LINE.match(line)
            if prefix and line[prefix.end() :].strip():
                return line[prefix.end() :].strip()
        return None


@contextlib.contextmanager
def capture_native_stderr() -> Iterator[NativeOutput]:
    """Send fd 2 to a temporary file for the block; yields a ``NativeOutput`` to read it.

    Thread-safe and nestable. When the last running capture ends, fd 2 is
    restored and the non-native lines written meanwhile are copied to it.
    """
    output = _begin()
    try:
        yield output
    finally:
        _end(output)


def _begin() -> NativeOutput:
    global _users, _saved_fd, _sink
    with _lock:
        if _users == 0:
            _flush_python_stderr()  # what Python printed before the block belongs on the terminal now
            try:
                saved = os.dup(2)
            except OSError:  # no fd 2 at all (a detached process): nothing to capture or protect
                return NativeOutput(None)
            try:
                sink = tempfile.TemporaryFile(prefix="sleuth-native-")
            except OSError:  # no writable temporary folder: let the noise through rather than fail
                os.close(saved)
                return NativeOutput(None)
            os.dup2(sink.fileno(), 2)
            _saved_fd, _sink = saved, sink
        _users += 1
        return NativeOutput(_sink, os.fstat(_sink.fileno()).st_size)


def _end(output: NativeOutput) -> None:
    global _users, _saved_fd, _sink
    if output._sink is None:
        return
    with _lock:
        _flush_python_stderr()  # Python's buffered writes made inside the block land in the sink too
        output._final = output.text
        _users -= 1
        if _users:
            return
        os.dup2(_saved_fd, 2)
        os.close(_saved_fd)
        captured = _read_from(_sink.fileno(), 0)
        _sink.close()
        _saved_fd = _sink = None
        # Still under the lock, so a capture starting now cannot take these lines in.
        lines = captured.splitlines(keepends=True)
        _write_all(2, b"".join(line for line in lines if not is_native_line(line.decode("utf-8", "replace"))))


def _read_from(fd: int, offset: int) -> bytes:
    # pread leaves the file position alone: fd 2 shares it and keeps appending there.
    chunks = []
    while chunk := os.pread(fd, 1 << 16, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError:
        pass  # stderr closed or a broken pipe: nobody is reading it


def _flush_python_stderr() -> None:
    for stream in (sys.stderr, sys.__stderr__):
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):  # closed or detached streams
                stream.flush()


@functools.cache
def quiet_pyav() -> None:
    """Have PyAV discard FFmpeg's log messages (once per process).

    That is PyAV's default, set explicitly because ``restore_default_callback``
    or another library could have turned printing back on. Once only, so a
    developer can still call ``av.logging.set_level(av.logging.VERBOSE)``
    after sleuth's first open to debug.
    """
    import av.logging

    av.logging.set_level(None)
