"""A quick look at a video file before a run: is it a regular file that holds a video stream?

``open_video`` reads a file's whole frame table, which takes a while on long
videos; a run that checks all its videos first only needs the container
header. ``probe_video`` reads just that (PyAV), never opens special files
(a FIFO would block forever) and returns the reason a video cannot be used,
or None.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tools.native_output import capture_native_stderr
from tools.video import VideoError, check_video_file


def probe_video(path: str | Path) -> str | None:
    """Why ``path`` cannot be used as a video (one line), or None when its header holds a video stream."""
    try:
        check_video_file(path)  # a stat before anything opens it: special files fail here
    except VideoError as exc:
        return str(exc).removesuffix(f": {Path(path).expanduser()}")
    import av

    try:
        with capture_native_stderr(), av.open(str(path), metadata_errors="replace") as container:
            streams = container.streams.video
            if not streams:
                return "no video stream"
            stream = streams[0]
            if not (stream.frames or stream.duration or container.duration):
                return "the video stream is empty"
    except Exception as exc:  # PyAV raises many types for damaged files
        text = " ".join(str(getattr(exc, "strerror", None) or exc).split()) or type(exc).__name__
        return f"not a readable video ({text[:160]})"
    return None


def probe_videos(paths: list[Path], *, workers: int = 8) -> dict[Path, str]:
    """``{path: reason}`` for every path that cannot be used; headers are read in parallel."""
    unique = list(dict.fromkeys(paths))
    if not unique:
        return {}
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(unique))), thread_name_prefix="sleuth-probe") as pool:
        reasons = list(pool.map(probe_video, unique))
    return {path: reason for path, reason in zip(unique, reasons) if reason is not None}
