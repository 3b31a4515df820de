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

import os
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from eval.benchmarks.videommmu.records import (
    ADAPTATION,
    HUB_DATASET,
    QUESTION_ONLY_FOLDER,
    normalise_record,
    read_folder,
)
from eval.dataset import DatasetError, normalise_records
from sleuth.errors import SleuthError

_LINK_MODE = 0o120000


class DownloadError(SleuthError):
    """The dataset could not be fetched, unpacked or verified."""


@dataclass
class Verified:
    video_files: int
    referenced: int = 0
    missing: list[str] = field(default_factory=list)
    questions: bool = False  # the questions could be read (else only the files were counted)


def fetch_snapshot(dest: Path, *, repo_id: str = HUB_DATASET, revision: str | None = None) -> None:
    """``huggingface_hub.snapshot_download`` of the dataset into ``dest``; one-line errors saying what to do."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise DownloadError("downloading needs huggingface_hub: pip install 'sleuth[hub]'") from None
    skip_fetch = f"`sleuth data download {dest} --benchmark videommmu --skip-fetch`"
    try:
        snapshot_download(repo_id=repo_id, repo_type="dataset", revision=revision, local_dir=str(dest))
    except Exception as exc:  # the hub client raises many types (offline, 401, 403, 404, connection)
        names = {cls.__name__ for cls in type(exc).__mro__}
        if "GatedRepoError" in names:
            raise DownloadError(
                f"{repo_id} is gated: accept its conditions at https://huggingface.co/datasets/{repo_id} with your "
                f"account, log in here (`hf auth login` or HF_TOKEN) and run this again"
            ) from None
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DownloadError(
            f"could not download {repo_id} from the Hugging Face Hub ({type(exc).__name__}: {message}); offline? "
            f"fetch it where there is network, copy the folder here and run {skip_fetch}"
        ) from None


def _target(info: zipfile.ZipInfo, dest: Path) -> Path:
    """Where a member goes under ``dest``; ``DownloadError`` for one that would leave it or is a link."""
    name = info.filename
    outside = DownloadError(f"archive member {name!r} points outside the target folder; refusing to unpack")
    windows = PureWindowsPath(name)
    if "\0" in name or PurePosixPath(name).is_absolute() or windows.drive or windows.root:
        raise outside
    parts = [part for part in name.replace("\\", "/").split("/") if part not in ("", ".")]
    if ".." in parts or not parts:
        raise outside
    if (info.external_attr >> 16) & 0o170000 == _LINK_MODE:
        raise DownloadError(f"archive member {name!r} is a link; refusing to unpack")
    root = dest.resolve()
    target = root.joinpath(*parts)
    if root not in target.parents:
        raise outside
    return target


def unzip(archive: Path, dest: Path, *, progress: bool = True, console: Any = None) -> int:
    """Unpack ``archive`` into ``dest`` after checking every member; returns the files written."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    try:
        with zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
            targets = [_target(info, dest) for info in members]  # all checked before anything is written
            written = 0
            with Progress(TextColumn(f"[bold]unzipping {archive.name}"), BarColumn(), DownloadColumn(),
                          TimeRemainingColumn(), console=console, disable=not progress) as bar:
                task = bar.add_task("unzip", total=sum(info.file_size for info in members))
                for info, target in zip(members, targets):
                    if info.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                    elif not (target.is_file() and target.stat().st_size == info.file_size):
                        target.parent.mkdir(parents=True, exist_ok=True)
                        partial = target.with_name(target.name + ".part")
                        with bundle.open(info) as source, open(partial, "wb") as sink:
                            shutil.copyfileobj(source, sink, length=1 << 20)
                        os.replace(partial, target)  # never a half-written video under the real name
                        written += 1
                    bar.update(task, advance=info.file_size)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise DownloadError(f"{archive}: not a readable zip archive ({exc}); download it again") from None
    return written


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
        fetch_snapshot(root, revision=revision)
    archives = find_archives(root)
    written = sum(unzip(a, root, progress=progress, console=console) for a in archives) if extract else 0
    return archives, written, verify(root)
