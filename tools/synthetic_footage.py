"""Long synthetic H.264 footage for benchmarks: textured, moving, with cuts, encoded like real video.

Decoding cost depends on what the codec has to do, so the footage gives it the
work real footage gives it: a textured backdrop the camera pans across (motion
vectors everywhere), sprites of sharp noise moving on their own paths (residual
bits), film grain, and a cut to another backdrop every ``scene_s`` seconds
(extra keyframes). Encoding uses x264's defaults (preset medium, CRF 23,
keyframe at least every 250 frames, B-frames), which is what most footage on
the web was encoded with.

Frames are built from a few precomputed layers, so generating them costs far
less than encoding them.
"""

from __future__ import annotations

import os
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

FOOTAGE_VERSION = 1  # bump when the content or encoding changes: cached files are then made again
SPRITE_SIDE = 160


def footage_name(minutes: float, size: tuple[int, int], fps: float) -> str:
    width, height = size
    return f"footage-v{FOOTAGE_VERSION}-{minutes:g}min-{width}x{height}-{fps:g}fps.mp4"


def make_footage(
    path: str | Path,
    *,
    minutes: float,
    size: tuple[int, int] = (1280, 720),
    fps: float = 30.0,
    scene_s: float = 20.0,
    gop: int = 250,
    preset: str = "medium",
    crf: int = 23,
    seed: int = 0,
) -> Path:
    """Encode ``minutes`` of synthetic footage to ``path`` (written to a temporary name, then renamed)."""
    import av
    from PIL import Image

    path = Path(path)
    width, height = size
    if width < 2 * SPRITE_SIDE or height < 2 * SPRITE_SIDE or width % 2 or height % 2:
        raise ValueError(f"footage size must be even and at least {2 * SPRITE_SIDE}x{2 * SPRITE_SIDE}, got {width}x{height}")
    rng = np.random.default_rng(seed)

    def backdrop() -> np.ndarray:
        coarse = rng.integers(0, 256, (height // 24 + 2, width // 24 + 2, 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize((2 * width, 2 * height), Image.BICUBIC), dtype=np.int16)
        fine = rng.integers(0, 256, (height // 2, width // 2), dtype=np.uint8)
        texture = np.asarray(Image.fromarray(fine).resize((2 * width, 2 * height), Image.BILINEAR), dtype=np.int16)
        return np.clip(smooth + (texture[..., None] - 128) // 6, 0, 255).astype(np.uint8)

    backdrops = [backdrop() for _ in range(3)]
    grain = [rng.integers(-5, 6, (height, width, 1), dtype=np.int16) for _ in range(7)]
    sprites = [
        np.asarray(
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).resize(
                (SPRITE_SIDE, SPRITE_SIDE), Image.BICUBIC
            ),
            dtype=np.int16,
        )
        for _ in range(4)
    ]

    n_frames = int(round(minutes * 60 * fps))
    rate = Fraction(fps).limit_denominator(1001)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        with av.open(tmp, mode="w") as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height = width, height
            stream.pix_fmt = "yuv420p"
            stream.codec_context.gop_size = gop
            stream.options = {"preset": preset, "crf": str(crf)}
            for i in range(n_frames):
                t = i / float(rate)
                scene = int(t // scene_s)
                layer = backdrops[scene % len(backdrops)]
                # The camera pans along a smooth path, different after each cut.
                x = int((np.sin(t / 3 + scene) + 1) / 2 * (layer.shape[1] - width))
                y = int((np.cos(t / 4.3 + scene) + 1) / 2 * (layer.shape[0] - height))
                image = layer[y : y + height, x : x + width].astype(np.int16)
                image += grain[i % len(grain)]
                for k, sprite in enumerate(sprites):
                    sx = int((np.sin(t * (0.7 + 0.3 * k) + k) + 1) / 2 * (width - SPRITE_SIDE))
                    sy = int((np.cos(t * (0.5 + 0.2 * k) + 2 * k) + 1) / 2 * (height - SPRITE_SIDE))
                    image[sy : sy + SPRITE_SIDE, sx : sx + SPRITE_SIDE] = sprite
                frame = av.VideoFrame.from_ndarray(np.clip(image, 0, 255).astype(np.uint8), format="rgb24")
                frame.pts = i
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def cached_footage(cache_dir: Path, *, minutes: float, size: tuple[int, int], fps: float = 30.0, **options) -> Path:
    """The footage for these settings under ``cache_dir``, made on first use."""
    path = Path(cache_dir) / footage_name(minutes, size, fps)
    if not path.is_file():
        make_footage(path, minutes=minutes, size=size, fps=fps, **options)
    return path


def cut_segments(source: Path, folder: Path, count: int) -> list[Path]:
    """Cut ``source`` into ``count`` videos of about equal length at keyframes, without re-encoding.

    A directory of many real-looking videos in a second, from footage made
    once: each segment keeps the source's encoding and timestamps.
    """
    import av

    with av.open(str(source)) as probe:
        stream = probe.streams.video[0]
        duration = float(stream.duration * stream.time_base) if stream.duration else float(probe.duration) / 1e6
    bounds = [duration * k / count for k in range(1, count)]
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        output = out_stream = None
        for packet in container.demux(stream):
            if packet.dts is None:
                continue
            starts = packet.is_keyframe and (output is None or (bounds and packet.pts * stream.time_base >= bounds[0]))
            if starts:
                if output is not None:
                    output.close()
                    bounds.pop(0)
                paths.append(folder / f"segment-{len(paths):03d}.mp4")
                output = av.open(str(paths[-1]), mode="w")
                out_stream = output.add_stream_from_template(stream)
            packet.stream = out_stream
            output.mux(packet)
        if output is not None:
            output.close()
    return paths


def cached_segments(cache_dir: Path, source: Path, count: int) -> Path:
    """A folder of ``count`` segments of ``source`` under ``cache_dir``, made on first use (whole or not at all)."""
    import shutil

    folder = Path(cache_dir) / f"{source.stem}-in-{count}"
    if folder.is_dir():
        return folder
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=cache_dir))
    try:
        made = cut_segments(source, staging, count)
        if len(made) != count:
            raise ValueError(f"{source} has too few keyframes to cut into {count} videos (got {len(made)})")
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder
