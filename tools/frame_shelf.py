"""Rendered frames kept on disk beside the frame indexes, so later questions and runs show them without decoding.

Layout under the cache directory::

    frames/<content[:2]>/<content>/<renderer key>/<frame index>.jpg

``content`` is the sha256 of the video file (as the frame index keys use), so
a renamed or copied video finds its frames and an edited one does not. Each
file is exactly the JPEG a model receives (``tools.rendering``), written to a
temporary name and renamed into place, so a reader never sees half a file,
and several processes may share a shelf. Frames get here two ways: the index
build keeps every frame it samples, and a run keeps every frame it renders.

The shelf only ever saves time: a file that is missing or unreadable is
rendered again, and a shelf that cannot be written is switched off for the
run with one warning.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tools.cache import atomic_write_bytes
from tools.rendering import RenderedImage, Renderer

FOLDER = "frames"
_SAFE = re.compile(r"[^A-Za-z0-9._+-]")
_log = logging.getLogger(__name__)


class FrameShelf:
    """Rendered frames by (video content, renderer key, frame index) under ``root``. Thread- and process-safe."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()
        self._broken: str | None = None  # why writing was switched off
        self._lock = threading.Lock()

    @classmethod
    def in_cache(cls, cache_dir: str | Path) -> "FrameShelf":
        return cls(Path(cache_dir).expanduser() / FOLDER)

    def __repr__(self) -> str:
        return f"FrameShelf({str(self.root)!r})"

    def content(self, video_path: str | Path) -> str:
        """A video's key on the shelf: the sha256 of its bytes, memoised beside the frame indexes (the cache
        directory holding the shelf), as their keys are."""
        from tools.cache import file_sha256

        return file_sha256(video_path, memo_dir=self.root.parent)

    def path(self, content: str, key: str, index: int) -> Path:
        return self.root / content[:2] / content / _SAFE.sub("_", key) / f"{int(index)}.jpg"

    def get(self, content: str, key: str, index: int) -> RenderedImage | None:
        try:
            data = self.path(content, key, index).read_bytes()
        except OSError:
            return None
        return _decoded_header(data)

    def put(self, content: str, key: str, index: int, image: RenderedImage) -> None:
        if self._broken is not None:
            return
        try:
            atomic_write_bytes(self.path(content, key, index), image.jpeg, durable=False)  # checked on reading
        except OSError as exc:
            with self._lock:
                if self._broken is None:
                    self._broken = str(exc.strerror or exc)
                    _log.warning("kept frames are not written to %s (%s); frames are rendered anew instead",
                                 self.root, self._broken)

    def kept(self, content: str, key: str) -> int:
        """How many frames of this video are kept with this renderer."""
        folder = self.path(content, key, 0).parent
        try:
            return sum(1 for entry in folder.iterdir() if entry.suffix == ".jpg")
        except OSError:
            return 0


def _decoded_header(data: bytes) -> RenderedImage | None:
    """The image with its size read from the JPEG header; None for anything that is not a whole JPEG."""
    import io

    from PIL import Image

    if len(data) < 4 or data[:2] != b"\xff\xd8" or data[-2:] != b"\xff\xd9":
        return None  # not a JPEG, or cut short
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
    except Exception:  # noqa: BLE001 (any unreadable file is simply rendered again)
        return None
    return RenderedImage(jpeg=data, width=width, height=height)


@dataclass(frozen=True)
class KeepFrames:
    """What an index build keeps of the frames it decodes: each rendered with ``renderer`` onto the shelf under
    ``cache_dir``, so that showing a search hit later costs no decoding; and, decoded in the same pass, the
    ``uniform`` samples of these sizes (an agent's overview, which it shows first). Picklable (decoding
    processes get it)."""

    cache_dir: Path
    renderer: Renderer
    uniform: tuple[int, ...] = ()

    def extra_indices(self, n_frames: int) -> list[int]:
        """The frames kept beyond the index's own: ``uniform_indices`` of each size in ``uniform``."""
        from tools.video import uniform_indices

        return sorted({i for n in self.uniform if n > 0 and n_frames > 0 for i in uniform_indices(n_frames, n)})

    def keeper(self, video_path: str | Path) -> Callable[[Any], None]:
        """A callback for each decoded full-resolution ``Frame`` of this video (a frame already kept is skipped)."""
        shelf = FrameShelf.in_cache(self.cache_dir)
        content = shelf.content(video_path)
        key = self.renderer.key

        def keep(frame: Any) -> None:
            if not shelf.path(content, key, frame.index).exists():
                shelf.put(content, key, frame.index, self.renderer(frame.image))

        return keep
