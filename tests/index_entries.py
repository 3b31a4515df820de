"""Comparing frame-index cache entries written by different engines."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.video_fixtures import make_synthetic_video
from tools.cache import read_entry
from tools.options import IndexConfig
from tools.search import FrameSearcher

# Fields that say when and how fast an entry was built; everything else must agree.
VOLATILE = ("build_s", "created")


def comparable(meta: dict) -> dict:
    return {k: v for k, v in meta.items() if k not in VOLATILE}


def assert_same_entries(first: dict, second: dict) -> None:
    """Two {video: entry path} maps hold the same entries: meta and timestamps exactly, embeddings within fp noise."""
    assert first.keys() == second.keys()
    for video in first:
        assert first[video].relative_to(first[video].parents[2]) == second[video].relative_to(second[video].parents[2])
        times_a, emb_a, meta_a = read_entry(first[video])
        times_b, emb_b, meta_b = read_entry(second[video])
        assert times_a.tobytes() == times_b.tobytes()
        assert comparable(meta_a) == comparable(meta_b)
        assert emb_a.shape == emb_b.shape and np.allclose(emb_a, emb_b, atol=1e-5)


def make_clip_dir(root: Path) -> Path:
    """Four short clips of different lengths (12, 9, 6 and 5 frames at 2 fps) and a file that is not a video."""
    for k, frames in enumerate((60, 45, 30, 25)):
        make_synthetic_video(root / f"clip{k}.mp4", n_frames=frames, fps=10.0)
    (root / "broken.mp4").write_text("not a video")
    return root


def searcher_for(tmp_path: Path, name: str, model: str) -> FrameSearcher:
    """A searcher on the tiny model with its own cache folder ``tmp_path / name``, sampling at 2 fps."""
    config = IndexConfig(
        clip_model=model, pretrained=None, random_weights=True, precision="fp32", fps=2.0, batch_size=4,
        cache_dir=tmp_path / name,
    )
    return FrameSearcher(config)


def built_entries(run) -> dict:
    """{video file name: its cache entry} of a ``DirectoryRun``'s indexed videos."""
    return {r.path.name: r.outcome.cache_path for r in run.results if r.outcome is not None}
