"""Many small frames tiled into one image, each labelled with its timestamp.

A whole-video overview that costs one image instead of dozens (VideoSeek
shows 64 frames tiled 8 to an image). Each tile is one frame and counts as
one against the frame budget: the sheet saves images and request size, not
frames.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

LABEL_HEIGHT = 12  # pixels of the strip under each tile that carries its timestamp


def contact_sheet(images: Sequence[np.ndarray], times: Sequence[float], *, columns: int = 4,
                  tile_width: int = 192) -> np.ndarray:
    """An HxWx3 uint8 grid of ``images`` (row by row, in order), each scaled to ``tile_width`` and
    labelled ``t=..s`` underneath."""
    if not images:
        raise ValueError("a contact sheet needs at least one frame")
    columns = max(1, min(columns, len(images)))
    rows = math.ceil(len(images) / columns)
    height, width = images[0].shape[:2]
    tile_height = max(1, round(tile_width * height / width))
    cell_height = tile_height + LABEL_HEIGHT
    sheet = Image.new("RGB", (columns * tile_width, rows * cell_height), (0, 0, 0))
    draw = ImageDraw.Draw(sheet)
    for position, (image, t) in enumerate(zip(images, times)):
        x, y = (position % columns) * tile_width, (position // columns) * cell_height
        tile = Image.fromarray(np.asarray(image)).resize((tile_width, tile_height), Image.BICUBIC)
        sheet.paste(tile, (x, y))
        draw.text((x + 3, y + tile_height), f"t={t:.2f}s", fill=(255, 255, 255))
    return np.asarray(sheet)
