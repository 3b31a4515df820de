"""Turn command-line paths (files and folders) into the list of videos to work on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Containers ffmpeg reads that hold video; compared case-insensitively.
VIDEO_SUFFIXES = frozenset(
    ".mp4 .m4v .mov .mkv .webm .avi .mpg .mpeg .ts .m2ts .mts .flv .wmv .3gp .ogv .vob".split()
)


@dataclass
class VideoList:
    videos: list[Path]
    empty_dirs: list[Path]  # folders named on the command line that hold no video file


def is_video_name(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def expand_video_paths(paths: list[Path]) -> VideoList:
    """Files as given (in order); folders replaced by the video files inside them, recursively, sorted.

    Hidden files and folders (a leading dot, e.g. macOS ``._name.mp4``
    resource forks) are left out of folders. A file named twice is listed once.
    """
    videos: list[Path] = []
    empty: list[Path] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        key = path.resolve() if path.exists() else path.absolute()
        if key not in seen:
            seen.add(key)
            videos.append(path)

    for path in paths:
        path = Path(path).expanduser()
        if not path.is_dir():
            add(path)  # a missing or unreadable file is reported when it is opened
            continue
        found = sorted(
            (
                p
                for p in path.rglob("*")
                if is_video_name(p)
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
                and p.is_file()
            ),
            key=lambda p: str(p.relative_to(path)).casefold(),
        )
        if not found:
            empty.append(path)
        for video in found:
            add(video)
    return VideoList(videos=videos, empty_dirs=empty)
