"""Caption memories on disk: one JSON file per (video content, model, prompt, segmentation, image size).

Layout under the frame index's cache directory::

    captions/<key[:2]>/<key>.json

Written to a temporary name and renamed into place; a file that does not
parse, or holds another key, is ignored and made again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from agent.trace import Caption
from tools.cache import atomic_write_bytes, file_sha256

CAPTIONS_DIR = "captions"


def caption_key(*, video: str | Path, cache_dir: Path, model: str, prompt_sha256: str, segments: int,
                frames: int, image_max_side: int | None) -> str:
    """Everything a caption depends on: the video's bytes, the model, the prompt and what it was shown."""
    parts: dict[str, Any] = {"content": file_sha256(video, memo_dir=cache_dir), "model": model,
                             "prompt": prompt_sha256, "segments": segments, "frames": frames,
                             "image_max_side": image_max_side}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _path(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / CAPTIONS_DIR / key[:2] / f"{key}.json"


def read_captions(cache_dir: Path, key: str) -> list[Caption] | None:
    """The cached memory for ``key``, or None (missing, unreadable or not this key's)."""
    try:
        data = json.loads(_path(cache_dir, key).read_text(encoding="utf-8"))
        if data.get("key") != key:
            return None
        return [Caption.model_validate({**c, "cached": True}) for c in data["captions"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_captions(cache_dir: Path, key: str, captions: list[Caption]) -> None:
    data = {"key": key, "captions": [c.model_dump(mode="json", exclude={"cached"}) for c in captions]}
    atomic_write_bytes(_path(cache_dir, key), json.dumps(data, ensure_ascii=False, indent=1).encode("utf-8"))
