"""Fetching Video-Holmes: the gated hub snapshot, unzipping ``videos.zip`` safely, verification.

Follows the official ``download.py`` (``snapshot_download`` of the dataset
repo ``TencentARC/Video-Holmes``, which needs a logged-in account that has
accepted the dataset's terms) and the README's unpack step
(``unzip videos.zip`` and ``unzip annotations.zip`` into the same folder).
``videos.zip`` unpacks to ``videos_cropped/<video ID>.mp4``; the official
``evaluate.py`` reads ``Benchmark/videos/`` instead, so either folder is
accepted (see ``records.resolve_clip``). The per-film ``annotations/`` are
only used by the official reasoning analysis; they are unpacked when there.

Unzipping (``eval.benchmarks.archives``) refuses absolute paths, ``..``
components, backslashes and links, so nothing lands outside the folder; a member already on disk
with its full size is not written again, so running it twice is cheap.
Verification counts the clips and checks every clip the questions name.

The maintainers withdrew the videos from the hub for a while for copyright
reasons (issue #7) and linked re-cropped copies instead: a snapshot without
``videos.zip`` says so, and ``--skip-fetch`` unpacks a zip (or checks an
unzipped folder) put there by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eval.benchmarks.archives import DownloadError, fetch_snapshot, unzip_all
from eval.benchmarks.video_holmes.records import CLIP_FOLDERS, HUB_DATASET, QUESTIONS_FILE, normalise_record
from eval.dataset import DatasetError, load_records

VIDEOS_ZIP = "videos.zip"
ARCHIVES = (VIDEOS_ZIP, "annotations.zip")  # as the official README unzips them

__all__ = ["DownloadError", "Downloaded", "Verified", "download", "verify", "videos_folder"]

@dataclass
class Verified:
    videos_dir: Path
    video_files: int
    questions_file: Path | None = None
    referenced: int = 0  # distinct clips the questions name
    missing: list[str] = field(default_factory=list)


@dataclass
class Downloaded:
    root: Path
    unpacked: dict[str, int]  # archive name -> files written
    verified: Verified


# --------------------------------------------------------------------------- verifying


def videos_folder(root: Path) -> Path:
    """``root/videos_cropped`` (``videos.zip``'s), else ``root/videos`` (the official script's), else ``root``."""
    return next((root / name for name in CLIP_FOLDERS if (root / name).is_dir()), root)


def verify(root: Path) -> Verified:
    folder = videos_folder(root)
    clips = {path.name for path in folder.glob("*.mp4") if path.is_file()}
    result = Verified(videos_dir=folder, video_files=len(clips))
    questions = root / QUESTIONS_FILE
    if not questions.is_file():
        return result
    try:
        dataset = load_records(questions, folder, normalise_record)
    except DatasetError as exc:
        raise DownloadError(f"{questions}: {exc}") from None
    names = sorted({q.video for q in dataset.questions})
    result.questions_file = questions
    result.referenced = len(names)
    result.missing = [name for name in names if name not in clips]
    return result


def download(root: str | Path, *, revision: str | None = None, fetch: bool = True, extract: bool = True,
             progress: bool = True, console: Any = None) -> Downloaded:
    """Fetch (unless ``fetch=False``), unzip (unless ``extract=False``) and verify Video-Holmes in ``root``."""
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"{root}: cannot create the folder ({exc.strerror or exc})") from None
    if fetch:
        fetch_snapshot(HUB_DATASET, root, benchmark="video_holmes", revision=revision,
                       files=f"{VIDEOS_ZIP} and {QUESTIONS_FILE}")
    if not (root / VIDEOS_ZIP).is_file() and not any(videos_folder(root).glob("*.mp4")):
        raise DownloadError(
            f"{root}: no {VIDEOS_ZIP} and no clips (in {', '.join(f'{n}/' for n in CLIP_FOLDERS)} or here); "
            f"the videos were withdrawn from the hub for a while (TencentARC/Video-Holmes issue #7 links "
            f"re-cropped copies): put {VIDEOS_ZIP} or its unzipped folder there and run this again with --skip-fetch"
        )
    archives = [root / name for name in ARCHIVES if (root / name).is_file()] if extract else []
    counts = unzip_all(archives, root, progress=progress, console=console)
    unpacked = {name: written for name, (written, _) in counts.items()}
    return Downloaded(root=root, unpacked=unpacked, verified=verify(root))
