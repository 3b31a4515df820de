"""Fetching Video-MMMU: the hub snapshot, safe unzipping of its video archives, verification.

The hub dataset (``lmms-lab/VideoMMMU``, gated: accept its conditions on
huggingface.co and log in) holds the questions as one parquet per track
(``Perception/``, ``Comprehension/``, ``Adaptation/``) and the videos as
``Art.zip``, ``Business.zip``, ``Engineering.zip``, ``Humanities.zip``,
``Medicine.zip``, ``Science.zip`` and ``question_only_videos.zip``. Like
lmms-eval (``api/task.py``), every zip is unpacked into the dataset folder
itself, which gives ``<Discipline>/<id>.mp4`` and ``question_only/<id>_image.mp4``,
and a file already there with the member's size is left alone (an interrupted
unpack resumes). Unlike lmms-eval, every member is checked first: absolute
paths, ``..`` and links are refused, so nothing lands outside the folder.
Verification loads the questions and lists the videos they name that are missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eval.benchmarks.archives import DownloadError, fetch_snapshot, unzip_all
from eval.benchmarks.videommmu.records import (
    ADAPTATION,
    HUB_DATASET,
    QUESTION_ONLY_FOLDER,
    normalise_record,
    read_folder,
)
from eval.dataset import DatasetError, normalise_records
from sleuth.errors import SleuthError

__all__ = ["DownloadError", "Verified", "download_dataset", "find_archives", "verify"]


@dataclass
class Verified:
    video_files: int
    referenced: int = 0
    missing: list[str] = field(default_factory=list)
    questions: bool = False  # the questions could be read (else only the files were counted)


def find_archives(root: Path) -> list[Path]:
    """The zips under ``root`` (lmms-eval globs ``**/*.zip``), hidden folders such as ``.cache`` left out."""
    return sorted(
        p for p in root.rglob("*.zip")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def verify(root: Path) -> Verified:
    """Count the videos and list those the questions name (both tracks' layouts) that are missing."""
    files = {p.relative_to(root).as_posix() for p in root.rglob("*.mp4") if p.is_file()}
    result = Verified(video_files=len(files))
    try:
        records = read_folder(root)
    except (DatasetError, SleuthError):
        return result  # e.g. parquet without pyarrow: the count still stands
    dataset = normalise_records(records, normalise_record, source=str(root))
    names = {q.video for q in dataset.questions}
    names |= {f"{QUESTION_ONLY_FOLDER}/{q.record['id']}_image.mp4"
              for q in dataset.questions if q.groups["track"] == ADAPTATION}
    result.questions = True
    result.referenced = len(names)
    result.missing = sorted(names - files)
    return result


def download_dataset(root: Path, *, revision: str | None = None, fetch: bool = True, extract: bool = True,
                     progress: bool = True, console: Any = None) -> tuple[list[Path], int, Verified]:
    """Fetch (unless ``fetch=False``), unpack every zip (unless ``extract=False``), verify.
    Returns (archives, files written, verification)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"{root}: cannot create the folder ({exc.strerror or exc})") from None
    if fetch:
        fetch_snapshot(HUB_DATASET, root, benchmark="videommmu", revision=revision)
    archives = find_archives(root)
    counts = unzip_all(archives, root, progress=progress, console=console) if extract else {}
    return archives, sum(written for written, _ in counts.values()), verify(root)
