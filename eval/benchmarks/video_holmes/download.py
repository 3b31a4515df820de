"""Fetching Video-Holmes: the gated hub snapshot, unzipping ``videos.zip`` safely, verification.

Follows the official ``download.py`` (``snapshot_download`` of the dataset
repo ``TencentARC/Video-Holmes``, which needs a logged-in account that has
accepted the dataset's terms) and the README's unpack step
(``unzip videos.zip`` and ``unzip annotations.zip`` into the same folder).
``videos.zip`` unpacks to ``videos_cropped/<video ID>.mp4``; the official
``evaluate.py`` reads ``Benchmark/videos/`` instead, so either folder is
accepted (see ``records.resolve_clip``). The per-film ``annotations/`` are
only used by the official reasoning analysis; they are unpacked when there.

Unzipping refuses absolute paths, ``..`` components (with ``/`` or ``\\``)
and links, so nothing lands outside the folder; a member already on disk
with its full size is not written again, so running it twice is cheap.
Verification counts the clips and checks every clip the questions name.

The maintainers withdrew the videos from the hub for a while for copyright
reasons (issue #7) and linked re-cropped copies instead: a snapshot without
``videos.zip`` says so, and ``--skip-fetch`` unpacks a zip (or checks an
unzipped folder) put there by hand.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from eval.benchmarks.video_holmes.records import CLIP_FOLDERS, HUB_DATASET, QUESTIONS_FILE, normalise_record
from eval.dataset import DatasetError, load_records
from sleuth.errors import SleuthError

VIDEOS_ZIP = "videos.zip"
ARCHIVES = (VIDEOS_ZIP, "annotations.zip")  # as the official README unzips them
_LINK_MODE = 0o120000  # S_IFLNK in a zip member's Unix mode (the high 16 bits of external_attr)


class DownloadError(SleuthError):
    """The dataset could not be fetched, unpacked or verified."""


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


def fetch_snapshot(dest: Path, *, revision: str | None = None) -> None:
    """The official ``download.py``'s ``snapshot_download`` into ``dest``; one-line errors saying what to do."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise DownloadError("downloading needs huggingface_hub: pip install 'sleuth[hub]'") from None
    skip_fetch = f"`sleuth data download {dest} --benchmark video_holmes --skip-fetch`"
    try:
        snapshot_download(repo_id=HUB_DATASET, repo_type="dataset", revision=revision, local_dir=str(dest))
    except Exception as exc:  # the hub client raises many types (offline, 401, 403, 404, connection)
        names = {cls.__name__ for cls in type(exc).__mro__}
        if names & {"GatedRepoError", "RepositoryNotFoundError"}:
            raise DownloadError(
                f"{HUB_DATASET} is gated: accept its terms at https://huggingface.co/datasets/{HUB_DATASET} "
                f"with your account, then log in (`huggingface-cli login`, or set HF_TOKEN) and run this again"
            ) from None
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DownloadError(
            f"could not download {HUB_DATASET} from the Hugging Face Hub ({type(exc).__name__}: {message}); "
            f"offline? fetch it where there is network (or copy {VIDEOS_ZIP} and {QUESTIONS_FILE} into {dest}) "
            f"and run {skip_fetch}"
        ) from None


# --------------------------------------------------------------------------- unzipping


def _check_member(info: zipfile.ZipInfo, dest: Path) -> Path:
    """Where ``info`` goes under ``dest``; raises ``DownloadError`` for a member that would leave it or is a link."""
    name = info.filename
    outside = DownloadError(f"archive member {name!r} points outside the target folder; refusing to unpack")
    windows = PureWindowsPath(name)
    if "\0" in name or PurePosixPath(name).is_absolute() or windows.drive or windows.root:
        raise outside
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        raise outside
    if (info.external_attr >> 16) & 0o170000 == _LINK_MODE:
        raise DownloadError(f"archive member {name!r} is a link; refusing to unpack")
    target = dest.resolve().joinpath(*(part for part in parts if part not in ("", ".")))
    if dest.resolve() not in target.parents:
        raise outside
    return target


def unzip(archive: Path, dest: Path, *, progress: bool = True, console: Any = None) -> int:
    """Unpack ``archive`` into ``dest`` after checking every member; returns the files written."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    try:
        with zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
            targets = [_check_member(info, dest) for info in members]  # all checked before any is written
            written = 0
            with Progress(TextColumn(f"[bold]unzipping {archive.name}"), BarColumn(), DownloadColumn(),
                          TimeRemainingColumn(), console=console, disable=not progress) as bar:
                task = bar.add_task("unzip", total=sum(info.file_size for info in members))
                for info, target in zip(members, targets):
                    if info.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                    elif not (target.is_file() and target.stat().st_size == info.file_size):
                        target.parent.mkdir(parents=True, exist_ok=True)
                        with bundle.open(info) as source, open(target, "wb") as sink:
                            while chunk := source.read(1 << 20):
                                sink.write(chunk)
                        written += 1
                    bar.update(task, advance=info.file_size)
    except (zipfile.BadZipFile, EOFError) as exc:
        raise DownloadError(f"{archive}: not a readable zip archive ({exc}); download it again") from None
    return written


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
        fetch_snapshot(root, revision=revision)
    if not (root / VIDEOS_ZIP).is_file() and not any(videos_folder(root).glob("*.mp4")):
        raise DownloadError(
            f"{root}: no {VIDEOS_ZIP} and no clips (in {', '.join(f'{n}/' for n in CLIP_FOLDERS)} or here); "
            f"the videos were withdrawn from the hub for a while (TencentARC/Video-Holmes issue #7 links "
            f"re-cropped copies): put {VIDEOS_ZIP} or its unzipped folder there and run this again with --skip-fetch"
        )
    unpacked = {}
    if extract:
        for name in ARCHIVES:
            if (root / name).is_file():
                unpacked[name] = unzip(root / name, root, progress=progress, console=console)
    return Downloaded(root=root, unpacked=unpacked, verified=verify(root))
