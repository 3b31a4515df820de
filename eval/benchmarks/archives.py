"""What every benchmark's downloader shares: a hub snapshot with one-line failures, and safe unzipping.

``fetch_snapshot`` runs ``huggingface_hub.snapshot_download`` of a dataset
repository and turns what it raises (a gated dataset, no such repository or
revision, no network) into one ``DownloadError`` line that says what to do.

``unzip_all`` checks every member of every archive before writing anything:
absolute paths, drive letters, backslashes, ``..`` components, NUL bytes,
links and special files are refused, so nothing lands outside the folder.
Each file is written under a temporary name and renamed, so an interrupted
unpack never leaves half a video under the real name, and a file already
there with the member's size is skipped, so an interrupted unpack resumes.
"""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from sleuth.errors import SleuthError


class DownloadError(SleuthError):
    """A dataset could not be fetched, unpacked or verified."""


def fetch_snapshot(repo_id: str, dest: Path, *, benchmark: str, revision: str | None = None,
                   files: str = "the dataset") -> None:
    """The dataset repository ``repo_id`` into ``dest``; ``files`` names what to copy there by hand when offline."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise DownloadError("downloading needs huggingface_hub: pip install 'sleuth[hub]'") from None
    by_hand = (f"fetch {files} where there is network, copy it into {dest} and run "
               f"`sleuth data download {dest} --benchmark {benchmark} --skip-fetch`")
    try:
        snapshot_download(repo_id=repo_id, repo_type="dataset", revision=revision, local_dir=str(dest))
    except Exception as exc:  # the hub client raises many types, which differ between its versions: matched by name
        names = {cls.__name__ for cls in type(exc).__mro__}
        if "GatedRepoError" in names:  # before RepositoryNotFoundError, its parent
            raise DownloadError(
                f"{repo_id} is gated: accept its terms at https://huggingface.co/datasets/{repo_id} with your "
                f"account, then log in (`hf auth login`, formerly `huggingface-cli login`, or set HF_TOKEN) and "
                f"run this again"
            ) from None
        if "RevisionNotFoundError" in names:
            raise DownloadError(f"{repo_id} has no revision {revision!r}") from None
        if "RepositoryNotFoundError" in names:
            raise DownloadError(f"{repo_id} was not found on the Hugging Face Hub, or needs a login "
                                f"(`hf auth login` or HF_TOKEN)") from None
        if names & {"LocalEntryNotFoundError", "OfflineModeIsEnabled"}:
            raise DownloadError(f"could not download {repo_id}: cannot reach the Hugging Face Hub "
                                f"(offline? or HF_HUB_OFFLINE=1); {by_hand}") from None
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DownloadError(
            f"could not download {repo_id} from the Hugging Face Hub ({type(exc).__name__}: {message}); "
            f"offline? {by_hand}"
        ) from None


def _member_path(info: zipfile.ZipInfo, archive: Path) -> PurePosixPath:
    """The member's path inside the folder; ``DownloadError`` for one that would leave it, a link or a device."""
    name = info.filename
    path = PurePosixPath(name)
    if (not path.parts or "\0" in name or "\\" in name or path.is_absolute() or ".." in path.parts
            or ":" in path.parts[0]):
        raise DownloadError(f"{archive.name}: member {name!r} points outside the target folder; refusing to unpack")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise DownloadError(f"{archive.name}: member {name!r} is a link; refusing to unpack")
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: a zip that records no file type
        raise DownloadError(f"{archive.name}: member {name!r} is not a regular file or folder; refusing to unpack")
    return path


def unzip_all(
    archives: list[Path], dest: Path, *, progress: bool = True, console: Any = None
) -> dict[str, tuple[int, int]]:
    """Unpack ``archives`` into ``dest`` as their members are named; archive name -> (files written,
    files already there)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    plans = []
    for archive in archives:  # every member of every archive checked before anything is written
        try:
            with zipfile.ZipFile(archive) as bundle:
                plans.append((archive, [(info, _member_path(info, archive)) for info in bundle.infolist()]))
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
            raise DownloadError(f"{archive}: not a readable zip archive ({exc}); download it again") from None
    counts: dict[str, tuple[int, int]] = {}
    with Progress(TextColumn("[bold]unpacking"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=console, disable=not progress) as bar:
        task = bar.add_task("unpack", total=sum(info.file_size for _, members in plans for info, _ in members))
        for archive, members in plans:
            written = skipped = 0
            try:
                with zipfile.ZipFile(archive) as bundle:
                    for info, path in members:
                        target = dest.joinpath(*path.parts)
                        if info.is_dir():
                            target.mkdir(parents=True, exist_ok=True)
                        elif target.is_file() and target.stat().st_size == info.file_size:
                            skipped += 1
                        else:
                            target.parent.mkdir(parents=True, exist_ok=True)
                            partial = target.with_name(target.name + ".partial")
                            with bundle.open(info) as source, open(partial, "wb") as sink:
                                shutil.copyfileobj(source, sink, length=1 << 20)
                            os.replace(partial, target)
                            written += 1
                        bar.update(task, advance=info.file_size)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
                raise DownloadError(f"{archive}: not a readable zip archive ({exc}); download it again") from None
            counts[archive.name] = (written, skipped)
    return counts
