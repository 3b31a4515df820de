"""``--frame-fit``: centre crop (the model's own preprocessing) or the whole frame letterboxed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sleuth.cli import main
from tools.clip import embedding_recipe, load_clip
from tools.options import IndexConfig, index_config_from_options
from tools.search import FrameSearcher

RED, GREEN = (255, 0, 0), (0, 255, 0)


def wide_frame(width: int = 64, height: int = 36, band: int = 8) -> np.ndarray:
    """A 16:9 green frame with red bands down its left and right edges."""
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[:] = GREEN
    frame[:, :band] = RED
    frame[:, -band:] = RED
    return frame


@pytest.fixture
def encoders(tiny_clip_model):
    def make(fit: str):
        return load_clip(IndexConfig(clip_model=tiny_clip_model, pretrained=None, random_weights=True, frame_fit=fit))

    return make("crop"), make("pad")


def reddish(pixels: np.ndarray) -> np.ndarray:
    return (pixels[..., 0] > 200) & (pixels[..., 1] < 60)


def test_crop_loses_the_sides_and_pad_keeps_them(encoders):
    crop, pad = encoders
    side = 32  # the tiny model's input
    assert crop.frame_size(64, 36) == (56, 32) and pad.frame_size(64, 36) == (32, 18)
    assert crop.frame_size(36, 64) == (32, 56) and pad.frame_size(36, 64) == (18, 32)

    cropped = crop.pixels_from_frames([wide_frame()]).numpy()[0]
    padded = pad.pixels_from_frames([wide_frame()]).numpy()[0]
    assert cropped.shape == padded.shape == (side, side, 3)
    assert not reddish(cropped).any()  # the centre crop cut the red edges off
    rows = np.flatnonzero(reddish(padded).any(axis=1))
    assert reddish(padded[:, :3]).any() and reddish(padded[:, -3:]).any()  # both edges are in
    assert 6 <= rows.min() and rows.max() <= 25  # the 18 frame rows, centred
    # Above and below: the model's mean colour, which normalises to zero.
    mean = tuple(round(255 * m) for m in crop._pixel_spec.mean)
    assert (padded[0] == mean).all() and (padded[-1] == mean).all()
    assert np.abs(pad._normalise_pixels(pad.pixels_from_frames([wide_frame()]))[0, :, 0].numpy()).max() < 0.02


def test_pad_is_the_same_on_the_open_clip_path(encoders):
    # preprocess_frames (PIL, for models whose preprocessing pixels_from_frames cannot reproduce) pads too.
    _, pad = encoders
    fast = pad._normalise_pixels(pad.pixels_from_frames([wide_frame()]))
    slow = pad.preprocess_frames([wide_frame()])
    assert fast.shape == slow.shape
    assert float((fast - slow).abs().mean()) < 0.05


def test_fits_give_different_embeddings_and_separate_cache_entries(tmp_path, tiny_clip_model, synthetic_video):
    crop_config = index_config_from_options(clip_model=tiny_clip_model, random_weights=True, cache_dir=tmp_path)
    pad_config = crop_config.model_copy(update={"frame_fit": "pad"})
    crop_built = FrameSearcher(crop_config).ensure_index(synthetic_video)
    pad_built = FrameSearcher(pad_config).ensure_index(synthetic_video)
    assert pad_built.source == "built"  # not the crop index from the cache
    assert crop_built.cache_path != pad_built.cache_path
    assert not np.allclose(crop_built.index.embeddings, pad_built.index.embeddings, atol=1e-4)
    assert FrameSearcher(pad_config).ensure_index(synthetic_video).source == "disk"
    # Crop keeps the recipe it always had, so existing caches stay valid.
    assert embedding_recipe("fp32") == embedding_recipe("fp32", "crop") != embedding_recipe("fp32", "pad")


def test_search_cli_takes_frame_fit(capsys, tmp_path, tiny_clip_model, synthetic_video):
    opts = ["--clip-model", tiny_clip_model, "--random-weights", "--cache-dir", str(tmp_path)]
    with pytest.raises(SystemExit) as done:
        main(["search", str(synthetic_video), "a rabbit", "-k", "2", "--frame-fit", "pad", "--json", *opts])
    assert done.value.code in (0, None)
    assert len(json.loads(capsys.readouterr().out)["hits"]) == 2

    with pytest.raises(SystemExit) as done:
        main(["search", str(synthetic_video), "a rabbit", "--frame-fit", "stretch", *opts])
    err = capsys.readouterr().err
    assert done.value.code == 2
    assert "--frame-fit" in err and "crop or pad" in err and "Traceback" not in err
