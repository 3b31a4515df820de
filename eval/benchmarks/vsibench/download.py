"""Fetching VSI-Bench: the hub snapshot, its per-source zips unpacked safely, then verified.

``nyu-visionx/VSI-Bench`` holds ``arkitscenes.zip`` (1.81 GB), ``scannet.zip``
(2.89 GB) and ``scannetpp.zip`` (1.03 GB) beside the questions
(``records.QUESTION_FILES``). Each zip is unpacked into the download folder
as its members are named (``<dataset>/<scene_name>.mp4``), as lmms-eval
unpacks them into ``$HF_HOME/vsibench``, the folder the official code reads
videos from. So ``--videos`` is the download folder itself.

Unpacking refuses absolute paths, ``..`` components, backslashes, links and
special files (nothing lands outside the folder), writes each file under a
temporary name first and skips files already there with the right size, so an
interrupted unpack resumes. Verification counts the videos and checks that
every video the questions name is present.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.benchmarks.archives import DownloadError, fetch_snapshot, unzip_all
from eval.benchmarks.vsibench.records import DATASETS, HUB_DATASET, find_questions_file, normalise_record
from eval.dataset import load_records
from sleuth.errors import SleuthError

ARCHIVES = tuple(f"{name}.zip" for name in DATASETS)

__all__ = ["DownloadError", "Unpacked", "download_dataset", "unpack_all", "verify"]


@dataclass
class Unpacked:
    archives: list[str]
    written: int
    skipped: int  # already there with the right size


def unpack_all(root: Path, *, progress: bool = True, console: Any = None) -> Unpacked:
    """Unpack the per-source zips found in ``root``."""
    archives = [root / name for name in ARCHIVES if (root / name).is_file()]
    counts = unzip_all(archives, root, progress=progress, console=console)
    return Unpacked([a.name for a in archives], sum(w for w, _ in counts.values()), sum(s for _, s in counts.values()))


def verify(root: Path) -> dict[str, Any]:
    """Video count, the questions file, the distinct videos it names and those missing."""
    videos = sorted(p.relative_to(root).as_posix() for name in DATASETS for p in (root / name).rglob("*.mp4")
                    if p.is_file())
    facts: dict[str, Any] = {"video_files": len(videos), "questions_file": None, "referenced": 0, "missing": []}
    source = find_questions_file(root)
    if source is None:
        return facts
    try:
        dataset = load_records(source, root, normalise_record)
    except SleuthError:
        return facts  # e.g. parquet without pyarrow: the count still stands
    names = sorted({q.video for q in dataset.questions})
    present = set(videos)
    facts.update(questions_file=source, referenced=len(names), missing=[n for n in names if n not in present])
    return facts


def download_dataset(root: Path, *, revision: str | None = None, fetch: bool = True, extract: bool = True,
                     progress: bool = True, console: Any = None) -> tuple[Unpacked, dict[str, Any]]:
    """Fetch (unless ``fetch=False``), unpack (unless ``extract=False``), then verify."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"{root}: cannot create the folder ({exc.strerror or exc})") from None
    if fetch:
        fetch_snapshot(HUB_DATASET, root, benchmark="vsibench", revision=revision)
    unpacked = unpack_all(root, progress=progress, console=console) if extract else Unpacked([], 0, 0)
    return unpacked, verify(root)
