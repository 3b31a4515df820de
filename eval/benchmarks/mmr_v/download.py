"""Fetching MMR-V: the hub snapshot, joining ``videos.tar.part.*``, safe extraction, verification.

The benchmark ships its videos as one tar split into parts. The parts are
read in order as one stream and extracted from it directly, so the joined
archive never needs its own copy on disk. Extraction refuses absolute paths,
``..`` components, links and device files (nothing lands outside the target
folder). Verification counts the video files and checks that every video the
questions name is there.
"""

from __future__ import annotations

import io
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Callable

from eval.benchmarks.archives import DownloadError
from eval.benchmarks.mmr_v.records import HUB_DATASET, normalise_record
from eval.dataset import DATA_SUFFIXES, DatasetError, load_records
from sleuth.errors import SleuthError

PART_GLOB = "videos.tar.part.*"
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")




@dataclass
class VerifyResult:
    videos_dir: Path
    video_files: int
    referenced: int = 0  # distinct videos named by the questions
    missing: list[str] = field(default_factory=list)
    questions_file: Path | None = None

    @property
    def ok(self) -> bool:
        return self.video_files > 0 and not self.missing


@dataclass
class DownloadSummary:
    root: Path
    parts: list[Path]
    extracted: int
    verify: VerifyResult


# --------------------------------------------------------------------------- fetching


def fetch_snapshot(dest: Path, *, repo_id: str = HUB_DATASET, revision: str | None = None) -> Path:
    """``huggingface_hub.snapshot_download`` of the dataset into ``dest``."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise DownloadError("downloading needs huggingface_hub: pip install 'sleuth[hub]'") from None
    try:
        path = snapshot_download(repo_id=repo_id, repo_type="dataset", revision=revision, local_dir=str(dest))
    except Exception as exc:  # the hub client raises many types (offline, 401, 404, connection)
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DownloadError(
            f"could not download {repo_id} from the Hugging Face Hub ({type(exc).__name__}: {message}); "
            f"check the network (and HF_HUB_OFFLINE), or fetch it elsewhere and run "
            f"`sleuth data download {dest} --skip-fetch`"
        ) from None
    return Path(path)


# --------------------------------------------------------------------------- joining


def _natural_key(path: Path) -> list[Any]:
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", path.name)]


def find_parts(folder: Path, pattern: str = PART_GLOB) -> list[Path]:
    """The archive parts in join order (``part.aa < part.ab``, ``part.2 < part.10``)."""
    parts = sorted((p for p in folder.glob(pattern) if p.is_file()), key=_natural_key)
    if not parts:
        raise DownloadError(f"{folder}: no {pattern} files to join")
    return parts


class PartsReader(io.RawIOBase):
    """The parts read back to back as one read-only stream."""

    def __init__(self, parts: list[Path], on_bytes: Callable[[int], None] | None = None):
        self._parts = list(parts)
        self._current: BinaryIO | None = None
        self._on_bytes = on_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while True:
            if self._current is None:
                if not self._parts:
                    return 0
                self._current = open(self._parts.pop(0), "rb")
            count = self._current.readinto(buffer)
            if count:
                if self._on_bytes:
                    self._on_bytes(count)
                return count
            self._current.close()
            self._current = None

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None
        super().close()


def join_parts(parts: list[Path], out: Path) -> Path:
    """Concatenate the parts into one file (``cat videos.tar.part.* > videos.tar``)."""
    import shutil

    with PartsReader(parts) as reader, open(out, "wb") as sink:
        shutil.copyfileobj(reader, sink, length=1 << 20)
    return out


# --------------------------------------------------------------------------- extracting


def _check_member(member: tarfile.TarInfo, dest: Path) -> None:
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts:
        raise DownloadError(f"archive member {member.name!r} points outside the target folder; refusing to extract")
    if member.issym() or member.islnk():
        raise DownloadError(f"archive member {member.name!r} is a link; refusing to extract")
    if not (member.isfile() or member.isdir()):
        raise DownloadError(f"archive member {member.name!r} is not a regular file or folder; refusing to extract")
    target = (dest / member.name).resolve()
    if dest.resolve() not in target.parents and target != dest.resolve():
        raise DownloadError(f"archive member {member.name!r} points outside the target folder; refusing to extract")


def extract_parts(parts: list[Path], dest: Path, *, progress: bool = True, console: Any = None) -> int:
    """Extract the tar formed by ``parts`` into ``dest``; returns the number of files written."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    dest.mkdir(parents=True, exist_ok=True)
    total = sum(p.stat().st_size for p in parts)
    written = 0
    with Progress(
        TextColumn("[bold]extracting"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
        TextColumn("{task.fields[name]}"),
        console=console, disable=not progress,
    ) as bar:
        task = bar.add_task("extract", total=total, name="")
        reader = PartsReader(parts, on_bytes=lambda n: bar.update(task, advance=n))
        stream = io.BufferedReader(reader, buffer_size=1 << 20)
        try:
            with tarfile.open(fileobj=stream, mode="r|*") as archive:
                for member in archive:
                    _check_member(member, dest)
                    if hasattr(tarfile, "data_filter"):
                        archive.extract(member, dest, filter="data")
                    else:  # Python without extraction filters: the checks above are the guard
                        archive.extract(member, dest)
                    if member.isfile():
                        written += 1
                        bar.update(task, name=PurePosixPath(member.name).name[:40])
        except tarfile.TarError as exc:
            raise DownloadError(f"{parts[0].parent}: the joined parts are not a readable tar archive ({exc})") from None
        finally:
            stream.close()
    return written


# --------------------------------------------------------------------------- verifying


def _questions_file(root: Path) -> Path | None:
    candidates = sorted(
        p for p in root.rglob("*")
        if p.is_file() and p.suffix in DATA_SUFFIXES and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    return candidates[0] if len(candidates) == 1 else None


def videos_folder(root: Path) -> Path:
    """Where the extracted videos are: ``root/videos`` when the archive made one, else ``root``."""
    nested = root / "videos"
    return nested if nested.is_dir() else root


def verify_download(root: Path, *, questions_file: Path | None = None) -> VerifyResult:
    folder = videos_folder(root)
    files = [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES]
    result = VerifyResult(videos_dir=folder, video_files=len(files))
    source = questions_file or _questions_file(root)
    if source is None:
        return result
    try:
        dataset = load_records(source, folder, normalise_record)
    except (DatasetError, SleuthError):
        return result  # e.g. parquet without pyarrow: the count still stands
    result.questions_file = source
    names = sorted({q.video for q in dataset.questions})
    result.referenced = len(names)
    present = {p.relative_to(folder).as_posix() for p in files} | {p.name for p in files}
    result.missing = [name for name in names if name not in present]
    return result


def download_dataset(
    root: str | Path,
    *,
    repo_id: str = HUB_DATASET,
    revision: str | None = None,
    fetch: bool = True,
    extract: bool = True,
    progress: bool = True,
    console: Any = None,
) -> DownloadSummary:
    """Fetch (unless ``fetch=False``), join and extract the video parts, then verify."""
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"{root}: cannot create the folder ({exc.strerror or exc})") from None
    if fetch:
        fetch_snapshot(root, repo_id=repo_id, revision=revision)
    parts = find_parts(root)
    extracted = extract_parts(parts, root, progress=progress, console=console) if extract else 0
    return DownloadSummary(root=root, parts=parts, extracted=extracted, verify=verify_download(root))
