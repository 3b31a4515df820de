"""A decoding process for directory indexing: videos in, prepared frame batches out.

``tools.index_directory`` starts several of these; each takes one video at a
time from a task queue, samples it as ``build_frame_index`` does
(``Video.fps_indices``, ``Video.scan``), prepares the frames for the model
with a ``PixelPrep`` (no model in this process) and sends batches back on
its pipe (or a bounded queue), so decoding never runs far ahead of the
model. Messages, all tuples:

- ``("start", job, pid, video meta as a dict, frames to decode, decoder used)``
- ``("batch", job, seq, indices, timestamps, uint8 pixels (N, S, S, 3) or None, skipped)``
- ``("end", job, batches sent)``
- ``("error", job, one-line message)``
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from sleuth.errors import SleuthError


@dataclass(frozen=True)
class DecodeSettings:
    """How every video is sampled and batched (the same for all of a directory's videos)."""

    fps: float
    max_frames: int
    batch_size: int
    decoder: str = "auto"
    threads: int = 1
    keep: Any = None  # tools.frame_shelf.KeepFrames: frames kept for showing, rendered onto the shelf


def video_batches(path: Path, prep, settings: DecodeSettings) -> Iterator[tuple]:
    """The messages for one video, ``start`` first and ``end`` last (``job`` left as None)."""
    from tools.frame_index import decode_batches
    from tools.video import open_video

    with open_video(path) as video:
        indices = video.fps_indices(settings.fps, max_frames=settings.max_frames).tolist()
        size = prep.frame_size(video.meta.width, video.meta.height)
        used = video.scan_decoder(indices, settings.decoder, settings.threads)
        yield ("start", None, os.getpid(), video.meta.model_dump(mode="json"), len(indices), used)
        sent = 0
        for batch in decode_batches(
            video, indices, prep.pixels_from_frames, settings.batch_size, size=size, decoder=settings.decoder,
            threads=settings.threads, keep=settings.keep,
        ):
            pixels = batch.pixels.numpy() if batch.pixels is not None else None
            yield ("batch", None, sent, batch.indices, batch.timestamps, pixels, batch.skipped)
            sent += 1
        yield ("end", None, sent)


def one_line(exc: BaseException, path: Path) -> str:
    """The error as ``sleuth index`` reports it: sleuth's own message, else the exception named with the file."""
    if isinstance(exc, SleuthError):
        return str(exc)
    reason = " ".join(str(exc).split()) or type(exc).__name__
    if len(reason) > 200:
        reason = reason[:197] + "..."
    return f"decoding failed ({type(exc).__name__}: {reason}): {path}"


def run(tasks, results, prep, settings: DecodeSettings) -> None:
    """Process entry point: decode jobs ``(job, path)`` from ``tasks`` until it yields None.

    ``results`` is this process's own pipe (``send``) or a queue shared with others (``put``).
    """
    from tools.video_scan import torch_threads

    send = getattr(results, "send", None) or results.put

    with torch_threads(1):  # one core per decoding process: the processes are the parallelism
        while True:
            task = tasks.get()
            if task is None:
                return
            job, path = task
            try:
                for message in video_batches(Path(path), prep, settings):
                    send((message[0], job, *message[2:]))
            except Exception as exc:  # reported for this video; the process goes on with the next
                send(("error", job, one_line(exc, Path(path))))
