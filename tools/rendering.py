"""How a decoded frame becomes the image a model receives: one resize and one JPEG encoder for every method.

A ``Renderer`` is anything with a ``key`` (a string naming everything that
changes its output) that turns an HxWx3 uint8 frame into a ``RenderedImage``
(JPEG bytes and size). The same frame rendered with the same key gives the
same bytes, which is what lets a run keep rendered frames (in memory, and on
disk in ``tools.frame_shelf``) and serve them again without decoding: a kept
image is bit-identical to a fresh render.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

RENDER_VERSION = 1  # bump when the resize or the encoder changes what a key renders


@dataclass(frozen=True)
class RenderedImage:
    """A frame as a model receives it: JPEG bytes and the size they decode to."""

    jpeg: bytes
    width: int
    height: int

    @property
    def nbytes(self) -> int:
        return len(self.jpeg)

    def pixels(self, at_least: int | None = None) -> np.ndarray:
        """The decoded JPEG, HxWx3 uint8 (what the model's image looks like). ``at_least``: a longest side
        the result may be cut down to, decoded at 1/2, 1/4 or 1/8 scale where that still reaches it
        (libjpeg's scaled decoding: a full-resolution frame's thumbnail for a fraction of the cost)."""
        from PIL import Image

        with Image.open(io.BytesIO(self.jpeg)) as img:
            if at_least is not None and max(img.size) > at_least:
                scale = at_least / max(img.size)
                img.draft("RGB", (max(1, round(img.width * scale)), max(1, round(img.height * scale))))
            return np.asarray(img.convert("RGB"))

    def thumbnail(self, max_side: int) -> "RenderedImage":
        """A small copy (for traces and pages, never for a model), made from the image the model received."""
        return Rendering(max_side)(self.pixels(at_least=max_side))


@runtime_checkable
class Renderer(Protocol):
    key: str

    def __call__(self, image: np.ndarray) -> RenderedImage: ...


def fit_longest_side(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """``image`` with its longest side at most ``max_side`` (bicubic); as is when None or already small enough."""
    if max_side is None or max(image.shape[:2]) <= max_side:
        return image
    from PIL import Image

    height, width = image.shape[:2]
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(np.asarray(image)).resize(size, Image.BICUBIC))


def encode_jpeg(image: np.ndarray, quality: int | None = None) -> RenderedImage:
    """``image`` as JPEG; ``quality=None`` is PIL's default (75), MMR-V's official encoding."""
    from PIL import Image

    img = Image.fromarray(np.asarray(image))
    buf = io.BytesIO()
    if quality is None:
        img.save(buf, format="JPEG")
    else:
        img.save(buf, format="JPEG", quality=quality)
    return RenderedImage(jpeg=buf.getvalue(), width=img.width, height=img.height)


@dataclass(frozen=True)
class Rendering:
    """Resize to ``max_side`` (None: full resolution), then JPEG at ``quality`` (None: PIL's default)."""

    max_side: int | None = None
    quality: int | None = None

    @property
    def key(self) -> str:
        return f"jpeg-v{RENDER_VERSION}-side{self.max_side or 'full'}-q{self.quality or 'pil'}"

    def __call__(self, image: np.ndarray) -> RenderedImage:
        return encode_jpeg(fit_longest_side(image, self.max_side), self.quality)


@dataclass(frozen=True)
class PreparedRendering:
    """``prepare`` (a protocol's own resize or tiling, named by ``name``), then ``then``."""

    name: str
    prepare: Callable[[np.ndarray], Any]
    then: Renderer = Rendering()

    @property
    def key(self) -> str:
        return f"{self.name}+{self.then.key}"

    def __call__(self, image: np.ndarray) -> RenderedImage:
        return self.then(np.asarray(self.prepare(image)))


def shrunk(renderer: Renderer, max_side: int | None) -> Renderer:
    """``renderer`` applied after fitting the frame to ``max_side`` (a run's ``--image-max-side``)."""
    if max_side is None:
        return renderer
    return PreparedRendering(f"side{max_side}", lambda image: fit_longest_side(image, max_side), renderer)
