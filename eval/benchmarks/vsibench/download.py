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

import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from eval.benchmarks.vsibench.records import DATASETS, HUB_DATASET, find_questions_file, normalise_record
from eval.dataset import load_records
from sleuth.errors import SleuthError

ARCHIVES = tuple(f"{name}.zip" for name in DATASETS)


class DownloadError(SleuthError):
    """VSI-Bench could not be fetched, unpacked or verified."""


@dataclass
class Unpacked:
    archives: list[str]
    written: int
    skipped: int  # already there with the right size


def fetch_snapshot(root: Path, *, revision: str | None = None) -> None:
    """``huggingface_hub.snapshot_download`` of the dataset into ``root``, with one-line failures."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import (
            GatedRepoError,
            LocalEntryNotFoundError,
            OfflineModeIsEnabled,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError:
        raise DownloadError("downloading VSI-Bench needs huggingface_hub: pip install 'sleuth[hub]'") from None
    elsewhere = (f"or fetch it where there is network and run "
                 f"`sleuth data download {root} --benchmark vsibench --skip-fetch`")
    try:
        snapshot_download(repo_id=HUB_DATASET, repo_type="dataset", revision=revision, local_dir=str(root))
    except GatedRepoError:  # before RepositoryNotFoundError, its parent
        raise DownloadError(
            f"{HUB_DATASET} is gated: accept its terms at https://huggingface.co/datasets/{HUB_DATASET} "
            f"and log in here (`hf auth login` or HF_TOKEN)"
        ) from None
    except RevisionNotFoundError:
        raise DownloadError(f"{HUB_DATASET} has no revision {revision!r}") from None
    except RepositoryNotFoundError:
        raise DownloadError(f"{HUB_DATASET} was not found on the Hugging Face Hub, or needs a login "
                            f"(`hf auth login` or HF_TOKEN)") from None
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        raise DownloadError(f"cannot reach the Hugging Face Hub (offline, or HF_HUB_OFFLINE=1); {elsewhere}") from None
    except Exception as exc:  # the hub client raises many types (connection, timeouts, HTTP)
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DownloadError(
            f"could not download {HUB_DATASET} ({type(exc).__name__}: {message}); {elsewhere}"
        ) from None


def _checked_name(info: zipfile.ZipInfo, archive: Path) -> PurePosixPath:
    name = info.filename
    path = PurePosixPath(name)
    mode = info.external_attr >> 16
    if not path.parts or "\\" in name or path.is_absolute() or ".." in path.parts or ":" in path.parts[0]:
        raise DownloadError(f"{archive.name}: member {name!r} points outside the target folder; refusing to unpack")
    if stat.S_ISLNK(mode):
        raise DownloadError(f"{archive.name}: member {name!r} is a link; refusing to unpack")
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: a zip that records no file type
        raise DownloadError(f"{archive.name}: member {name!r} is not a regular file or folder; refusing to unpack")
    return path


def unpack_archive(archive: Path, root: Path, advance: Callable[[int], Any] = lambda n: None) -> tuple[int, int]:
    """Unpack ``archive`` into ``root`` as its members are named; (files written, files already there).
    ``advance`` is told the bytes done."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [(info, _checked_name(info, archive)) for info in zf.infolist()]  # all checked before any write
            written = skipped = 0
            for info, path in members:
                target = root.joinpath(*path.parts)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                if target.is_file() and target.stat().st_size == info.file_size:
                    skipped += 1
                    advance(info.file_size)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(target.name + ".partial")  # a cut-short write never passes for a video
                with zf.open(info) as src, open(partial, "wb") as sink:
                    while chunk := src.read(1 << 20):
                        sink.write(chunk)
                        advance(len(chunk))
                os.replace(partial, target)
                written += 1
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise DownloadError(f"{archive}: not a readable zip archive ({exc})") from None
    return written, skipped


def unpack_all(root: Path, *, progress: bool = True, console: Any = None) -> Unpacked:
    """Unpack the per-source zips found in ``root``."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    archives = [root / name for name in ARCHIVES if (root / name).is_file()]
    total = 0
    for archive in archives:
        try:
            with zipfile.ZipFile(archive) as zf:
                total += sum(info.file_size for info in zf.infolist())
        except zipfile.BadZipFile as exc:
            raise DownloadError(f"{archive}: not a readable zip archive ({exc})") from None
    written = skipped = 0
    with Progress(TextColumn("[bold]unpacking"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=console, disable=not progress) as bar:
        task = bar.add_task("unpack", total=total)
        for archive in archives:
            done, already = unpack_archive(archive, root, lambda n: bar.update(task, advance=n))
            written, skipped = written + done, skipped + already
    return Unpacked([a.name for a in archives], written, skipped)


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
        fetch_snapshot(root, revision=revision)
    unpacked = unpack_all(root, progress=progress, console=console) if extract else Unpacked([], 0, 0)
    return unpacked, verify(root)
