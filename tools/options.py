"""Frame-index settings and the command-line options that set them.

``IndexConfig`` is what the library takes. The typer ``Annotated`` aliases
below are the one definition of the index flags; every command that touches
a frame index (``index``, ``search``, ``ask``, ``eval``) declares them the same
way and turns them into a config with ``index_config_from_options``::

    def ask(
        video: Path,
        clip_model: ClipModelOpt = DEFAULT_CLIP_MODEL,
        pretrained: PretrainedOpt = None,
        clip_checkpoint: ClipCheckpointOpt = None,
        random_weights: RandomWeightsOpt = False,
        fps: FpsOpt = DEFAULT_FPS,
        max_frames: MaxFramesOpt = DEFAULT_MAX_FRAMES,
        cache_dir: CacheDirOpt = None,
        device: ClipDeviceOpt = "auto",
    ):
        config = index_config_from_options(
            clip_model=clip_model, pretrained=pretrained, clip_checkpoint=clip_checkpoint,
            random_weights=random_weights, fps=fps, max_frames=max_frames,
            cache_dir=cache_dir, device=device,
        )
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sleuth.errors import ConfigError

# ViT-B/32 at 256 px with DataComp weights: 72.8% ImageNet zero-shot and the
# best image-text retrieval of any B/32 in open_clip's benchmark table, for
# 11.5 image GFLOPs (1.3x ViT-B/32 at 224 px, a third of ViT-B/16, which is
# barely better). Its tokenizer ships inside open_clip, so random-weight smoke
# runs need no download at all.
DEFAULT_CLIP_MODEL = "ViT-B-32-256"
DEFAULT_PRETRAINED = "datacomp_s34b_b86k"
DEFAULT_FPS = 1.0
DEFAULT_MAX_FRAMES = 1024
DEFAULT_BATCH_SIZE = 16  # as fast per frame as larger batches on a CPU, and the pipeline fills and drains sooner
DEFAULT_QUEUE_DEPTH = 4
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")
# How a frame that is not square becomes the model's square input: "crop" is the model's own
# preprocessing (short side resized, centre cropped: a 16:9 frame loses 44% of its width);
# "pad" letterboxes the whole frame onto the model's mean colour, so nothing at the sides is lost.
FRAME_FITS = ("crop", "pad")
DEFAULT_FRAME_FIT = "crop"
DEFAULT_MIN_GAP_S = 2.0
CACHE_DIR_ENV = "SLEUTH_CACHE_DIR"

PANEL = "Frame index"


class IndexConfig(BaseModel):
    """How frames are sampled, embedded and cached. Hashable settings only."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    clip_model: str = DEFAULT_CLIP_MODEL
    pretrained: Optional[str] = DEFAULT_PRETRAINED
    checkpoint: Optional[Path] = None
    random_weights: bool = False
    fps: float = Field(DEFAULT_FPS, gt=0)
    max_frames: int = Field(DEFAULT_MAX_FRAMES, ge=1)
    batch_size: int = Field(DEFAULT_BATCH_SIZE, ge=1)
    queue_depth: int = Field(DEFAULT_QUEUE_DEPTH, ge=1)  # decoded batches waiting for the encoder
    workers: int = Field(0, ge=0)  # index-building threads on a CPU; 0: see tools.frame_index.default_workers
    decode_threads: int = Field(1, ge=0)  # libavcodec threads of the decoding worker; 0: as many as it likes
    precision: str = "auto"  # image embeddings in fp32, bf16 or fp16; auto: see tools.clip.resolve_precision
    frame_fit: str = DEFAULT_FRAME_FIT  # see FRAME_FITS
    device: str = "auto"
    cache_dir: Optional[Path] = None
    min_gap_s: float = Field(DEFAULT_MIN_GAP_S, ge=0)

    @field_validator("clip_model")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @field_validator("precision", "frame_fit")
    @classmethod
    def _one_of_the_choices(cls, value: str, info) -> str:
        choices = {"precision": PRECISION_CHOICES, "frame_fit": FRAME_FITS}[info.field_name]
        value = value.strip().lower()
        if value in choices:
            return value
        raise ValueError(f"expected {', '.join(choices[:-1])} or {choices[-1]}")

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        value = value.strip().lower()
        if value in ("auto", "cpu", "mps") or value == "cuda" or (
            value.startswith("cuda:") and value[5:].isdigit()
        ):
            return value
        raise ValueError("expected auto, cpu, cuda, cuda:N or mps")

    def resolved_cache_dir(self) -> Path:
        """``cache_dir``, else ``$SLEUTH_CACHE_DIR``, else the user cache dir (honours XDG_CACHE_HOME)."""
        if self.cache_dir is not None:
            return Path(self.cache_dir).expanduser()
        env = os.environ.get(CACHE_DIR_ENV)
        if env:
            return Path(env).expanduser()
        import platformdirs

        return Path(platformdirs.user_cache_dir("sleuth", appauthor=False))


# How each field is spelled on the command line, for error messages.
_FLAGS = {
    "clip_model": "--clip-model",
    "pretrained": "--pretrained",
    "checkpoint": "--clip-checkpoint",
    "fps": "--fps",
    "max_frames": "--max-frames",
    "cache_dir": "--cache-dir",
    "device": "--clip-device",
    "min_gap_s": "--min-gap",
    "precision": "--precision",
    "frame_fit": "--frame-fit",
    "batch_size": "--batch-size",
    "workers": "--workers",
    "queue_depth": "--queue-depth",
    "decode_threads": "--decode-threads",
}


def make_index_config(**settings) -> IndexConfig:
    """``IndexConfig(**settings)`` with invalid values reported as one-line ``ConfigError``."""
    try:
        return IndexConfig(**settings)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or "settings"
        where = f"{_FLAGS[field]} ({field})" if field in _FLAGS else field
        value = settings.get(field, "")
        raise ConfigError(f"invalid {where} {value!r}: {first.get('msg', 'invalid value')}") from None


# --------------------------------------------------------------------------- typer options

ClipModelOpt = Annotated[
    str,
    typer.Option(
        "--clip-model",
        help="open_clip architecture name (see open_clip.list_models()), or hf-hub:ORG/REPO.",
        rich_help_panel=PANEL,
    ),
]
PretrainedOpt = Annotated[
    Optional[str],
    typer.Option(
        "--pretrained",
        help=f"open_clip pretrained tag for --clip-model (default: {DEFAULT_PRETRAINED} for {DEFAULT_CLIP_MODEL}, "
        "else the model's first listed tag).",
        show_default=False,
        rich_help_panel=PANEL,
    ),
]
ClipCheckpointOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--clip-checkpoint",
        help="Local CLIP weights for --clip-model (a torch.save state dict, open_clip checkpoint or .safetensors); "
        "use this where weights cannot be downloaded.",
        rich_help_panel=PANEL,
    ),
]
RandomWeightsOpt = Annotated[
    bool,
    typer.Option(
        "--random-weights",
        help="Build --clip-model with fixed-seed random weights: offline smoke runs only, results are meaningless "
        "and labelled random-weights.",
        rich_help_panel=PANEL,
    ),
]
FpsOpt = Annotated[
    float,
    typer.Option("--fps", help="Frames per second to index.", rich_help_panel=PANEL),
]
MaxFramesOpt = Annotated[
    int,
    typer.Option(
        "--max-frames",
        help="Most frames indexed per video; longer videos are sampled evenly at a lower rate.",
        rich_help_panel=PANEL,
    ),
]
CacheDirOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--cache-dir",
        envvar=CACHE_DIR_ENV,
        help="Where frame indexes and kept frames are cached (default: the user cache dir, e.g. $XDG_CACHE_HOME/sleuth).",
        show_default=False,
        rich_help_panel=PANEL,
    ),
]
ClipDeviceOpt = Annotated[
    str,
    typer.Option("--clip-device", help="Torch device for CLIP: auto, cpu, cuda, cuda:N or mps.", rich_help_panel=PANEL),
]
PrecisionOpt = Annotated[
    str,
    typer.Option(
        "--precision",
        help="Number format of image embeddings: auto (fp16 on CUDA, bf16 on CPUs with native bfloat16, else fp32), "
        "fp32, bf16 or fp16. Part of the cache key.",
        rich_help_panel=PANEL,
    ),
]
FrameFitOpt = Annotated[
    str,
    typer.Option(
        "--frame-fit",
        help="How a frame that is not square is fitted to CLIP's square input: crop (the model's own centre crop; "
        "a 16:9 frame loses its sides) or pad (the whole frame, letterboxed). Part of the cache key.",
        rich_help_panel=PANEL,
    ),
]
BatchSizeOpt = Annotated[
    int,
    typer.Option("--batch-size", help="Frames embedded per model call.", rich_help_panel=PANEL),
]
WorkersOpt = Annotated[
    int,
    typer.Option(
        "--workers",
        help="Threads sharing decoding and embedding on a CPU, each with its share of torch's threads "
        "(0: two where there are two cores or more).",
        rich_help_panel=PANEL,
    ),
]
DecodeThreadsOpt = Annotated[
    int,
    typer.Option(
        "--decode-threads",
        help="Decoder threads of the frame-decoding worker (0: as many as libavcodec likes; 1 suits few cores).",
        rich_help_panel=PANEL,
    ),
]
MinGapOpt = Annotated[
    float,
    typer.Option(
        "--min-gap",
        help="Seconds that must separate two search hits (temporal non-maximum suppression; 0 turns it off).",
    ),
]


def default_pretrained_for(clip_model: str) -> Optional[str]:
    """The tag used when ``--pretrained`` is not given."""
    if clip_model == DEFAULT_CLIP_MODEL:
        return DEFAULT_PRETRAINED
    if clip_model.startswith(("hf-hub:", "local-dir:")):
        return None  # weights come with the model name
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(clip_model)
    return tags[0] if tags else None


def index_config_from_options(
    *,
    clip_model: str = DEFAULT_CLIP_MODEL,
    pretrained: Optional[str] = None,
    clip_checkpoint: Optional[Path] = None,
    random_weights: bool = False,
    fps: float = DEFAULT_FPS,
    max_frames: int = DEFAULT_MAX_FRAMES,
    cache_dir: Optional[Path] = None,
    device: str = "auto",
    frame_fit: str = DEFAULT_FRAME_FIT,
    **extra,
) -> IndexConfig:
    """Build an ``IndexConfig`` from the shared CLI options (``extra``: any other IndexConfig field)."""
    if clip_checkpoint is not None and random_weights:
        raise ConfigError("--clip-checkpoint and --random-weights exclude each other: pick one")
    if clip_checkpoint is not None and pretrained is not None:
        raise ConfigError("--clip-checkpoint and --pretrained exclude each other: pick one")
    if pretrained is None and clip_checkpoint is None and not random_weights:
        pretrained = default_pretrained_for(clip_model.strip())
    return make_index_config(
        clip_model=clip_model,
        pretrained=pretrained,
        checkpoint=clip_checkpoint,
        random_weights=random_weights,
        fps=fps,
        max_frames=max_frames,
        cache_dir=cache_dir,
        device=device,
        frame_fit=frame_fit,
        **extra,
    )
DecodeWorkersOpt = Annotated[
    Optional[int],
    typer.Option(
        "--decode-workers",
        help="Processes decoding different videos at once, feeding the model (0: one video at a time, in this "
        "process; default: every core where CLIP runs on the CPU, every core but one where it runs on a GPU).",
        show_default=False,
        rich_help_panel=PANEL,
    ),
]
EngineOpt = Annotated[
    str,
    typer.Option(
        "--engine",
        help="local (this machine, the default) or ray (a Ray Data pipeline on the Ray cluster, or a local one; "
        "needs pip install 'sleuth[ray]').",
        rich_help_panel=PANEL,
    ),
]
