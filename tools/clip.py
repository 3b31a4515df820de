"""CLIP image and text encoders behind one factory, ``load_clip(config)``.

Weights come from an open_clip pretrained tag (downloaded once, then cached by
open_clip / huggingface_hub), from a local checkpoint file, or, for offline
smoke runs, from a fixed random seed. ``ClipEncoder.model_id`` names the
architecture and the weights; it goes into cache keys and output labels.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from sleuth.errors import ConfigError, ModelUnavailableError
from tools.options import DEFAULT_CLIP_MODEL, DEFAULT_FRAME_FIT, FRAME_FITS, IndexConfig

RANDOM_WEIGHTS_LABEL = "random-weights"
RANDOM_SEED = 0
# Bump when the way frames become pixels changes: cached embeddings then no longer match.
# 2: frames are resized on uint8 tensors by torch (antialiased, within one level of PIL's resize).
PREPROCESS_VERSION = "openclip-val/2"
PRECISIONS = ("fp32", "bf16", "fp16")


# --------------------------------------------------------------------------- naming


def clip_model_id(config: IndexConfig) -> str:
    """Stable name of architecture + weights, computed without loading anything heavy.

    ``ViT-B-32-256/datacomp_s34b_b86k``, ``ViT-B-32-256/random-weights`` or
    ``ViT-B-32-256/ckpt:<sha256 prefix of the checkpoint file>``.
    """
    arch = config.clip_model
    if config.random_weights:
        return f"{arch}/{RANDOM_WEIGHTS_LABEL}"
    if config.checkpoint is not None:
        from tools.cache import file_sha256

        path = _existing_checkpoint(config.checkpoint)
        return f"{arch}/ckpt:{file_sha256(path)[:16]}"
    if _has_schema(arch) or not config.pretrained:
        return arch
    return f"{arch}/{config.pretrained}"


def clip_labels(config: IndexConfig) -> list[str]:
    """Labels every output built with this config must carry."""
    return [RANDOM_WEIGHTS_LABEL] if config.random_weights else []


def _has_schema(arch: str) -> bool:
    return arch.startswith(("hf-hub:", "local-dir:"))


def _existing_checkpoint(path: Path) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"CLIP checkpoint not found: {path}")
    return path


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device} was asked for but no CUDA GPU is available; use --device cpu")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("--device mps was asked for but MPS is not available; use --device cpu")
    return device


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices natively (AVX512-BF16 or AMX), i.e. about twice fp32's speed."""
    import torch

    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    for check in checks:
        try:
            if check is not None and check():
                return True
        except Exception:
            continue
    return False


def resolve_precision(precision: str, device: str) -> str:
    """The number format image embeddings are computed in, for a resolved ``device``.

    ``auto``: fp16 on CUDA, bf16 on CPUs with native bfloat16 arithmetic, else
    fp32. Embeddings in bf16/fp16 differ from fp32 ones by a cosine of about
    1e-4, far below what separates two frames, for half the compute or less.
    """
    if precision == "auto":
        if device.startswith("cuda"):
            return "fp16"
        if device == "cpu" and cpu_has_fast_bf16():
            return "bf16"
        return "fp32"
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; expected auto, {', '.join(PRECISIONS)}")
    if precision == "fp16" and not device.startswith("cuda"):
        raise ConfigError(f"--precision fp16 needs a CUDA GPU (device is {device}); use bf16 or fp32")
    return precision


def embedding_recipe(precision: str, frame_fit: str = DEFAULT_FRAME_FIT) -> str:
    """What, besides the model and sampling, decides the embeddings: goes into the cache key."""
    recipe = f"{PREPROCESS_VERSION};{precision}"
    return recipe if frame_fit == DEFAULT_FRAME_FIT else f"{recipe};fit={frame_fit}"


# --------------------------------------------------------------------------- encoder


class ClipEncoder:
    """A loaded CLIP model. Thread-safe.

    Image embeddings are computed in ``precision`` (``fp32``, ``bf16`` or
    ``fp16``); text embeddings always in fp32 on the CPU (autocast fp16 on
    CUDA). Frames that are not square are centre-cropped (``frame_fit="crop"``,
    the model's own preprocessing) or letterboxed whole onto the model's mean
    colour (``"pad"``). On a CPU, ``embedding_threads`` lets several threads each run the
    image tower on their own share of the cores, which keeps every core busy
    without the threads of one forward pass waiting on each other.
    """

    def __init__(
        self,
        model,
        preprocess,
        tokenizer,
        *,
        model_id: str,
        random_weights: bool,
        device: str,
        batch_size: int = 32,
        precision: str = "fp32",
        frame_fit: str = DEFAULT_FRAME_FIT,
    ):
        import torch

        if frame_fit not in FRAME_FITS:
            raise ConfigError(f"unknown frame fit {frame_fit!r}; expected {' or '.join(FRAME_FITS)}")

        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.random_weights = random_weights
        self.device = device
        self.batch_size = batch_size
        self.precision = resolve_precision(precision, device)
        self.frame_fit = frame_fit
        self._text_lock = threading.Lock()
        self._pixel_spec = _pixel_spec(model, preprocess)
        # Padding in the model's mean colour normalises to zero, as if nothing were there.
        mean = self._pixel_spec.mean if self._pixel_spec else _preprocess_mean(preprocess)
        self._pad_colour = tuple(int(round(255 * m)) for m in mean)
        self._pixel_dtype = torch.float32
        if self.precision == "bf16" and not device.startswith("cuda"):
            # Weights in bf16 rather than autocast: autocast would convert them on every call.
            self.model.visual.to(torch.bfloat16)
            self._pixel_dtype = torch.bfloat16
        self.dim = _embedding_dim(self.model)
        if self.dim is None:
            with torch.inference_mode(), self._autocast():
                self.dim = int(self.model.encode_text(self.tokenizer(["a"]).to(device)).shape[-1])

    @property
    def labels(self) -> list[str]:
        return [RANDOM_WEIGHTS_LABEL] if self.random_weights else []

    @property
    def recipe(self) -> str:
        return embedding_recipe(self.precision, self.frame_fit)

    def __repr__(self) -> str:
        return f"ClipEncoder({self.model_id!r}, device={self.device!r}, precision={self.precision!r}, dim={self.dim})"

    def _autocast(self):
        import torch

        if self.device.startswith("cuda"):
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
            return torch.autocast(device_type="cuda", dtype=dtype, enabled=self.precision != "fp32")
        return contextlib.nullcontext()

    # -- pixels. Decoding threads call these; they touch no model state.

    def frame_size(self, width: int, height: int) -> tuple[int, int] | None:
        """The (width, height) a width x height frame is resized to before the center crop (or the padding).

        None where this model's preprocessing is not a resize + center crop
        that ``pixels_from_frames`` reproduces; use ``preprocess_frames`` then.
        """
        return self.pixel_prep.frame_size(width, height)

    def pixels_from_frames(self, frames: list[np.ndarray]):
        """HxWx3 uint8 RGB frames -> uint8 tensor (N, S, S, 3) for ``encode_pixels``.

        Frames already at ``frame_size`` (resized while decoding) are only
        cropped (or padded); others are resized first. Raises ``ValueError`` where the model's
        preprocessing is not supported (see ``frame_size``).
        """
        out = self.pixel_prep.pixels_from_frames(frames)
        if self.device.startswith("cuda"):
            out = out.pin_memory()  # lets the copy to the GPU overlap the previous batch
        return out

    @property
    def pixel_prep(self) -> "PixelPrep":
        """What ``frame_size`` and ``pixels_from_frames`` need, without the model: decoding processes take a copy."""
        return PixelPrep(self._pixel_spec, self.frame_fit, self._pad_colour, self.model_id)

    def preprocess_frames(self, frames: list[np.ndarray]):
        """HxWx3 uint8 RGB frames -> a CPU float tensor (N, 3, S, S): open_clip's own (PIL) preprocessing."""
        import torch
        from PIL import Image

        if not frames:
            raise ValueError("no frames to preprocess")
        frames = [np.asarray(f) for f in frames]
        if self.frame_fit == "pad":
            frames = [_letterbox(f, max(f.shape[:2]), self._pad_colour) for f in frames]
        return torch.stack([self.preprocess(Image.fromarray(f)) for f in frames])

    # -- embedding

    def encode_pixels(self, pixels) -> np.ndarray:
        """Pixels -> (N, dim) float32 L2-normalised embeddings.

        ``pixels`` is either what ``preprocess_frames`` returns (float, N x 3 x
        S x S, normalised) or what ``pixels_from_frames`` returns (uint8, N x S
        x S x 3), normalised here, on the model's device.
        """
        import torch

        with torch.inference_mode(), self._autocast():
            pixels = pixels.to(self.device, non_blocking=True)
            if pixels.dtype == torch.uint8:
                pixels = self._normalise_pixels(pixels)
            pixels = pixels.to(self._pixel_dtype)
            if self.device.startswith("cuda"):
                pixels = pixels.contiguous(memory_format=torch.channels_last)  # the patch convolution's fast layout
            features = self.model.encode_image(pixels)
        return _normalise(features)

    def _normalise_pixels(self, pixels):
        import torch

        spec = self._pixel_spec
        mean = torch.tensor(spec.mean, device=pixels.device).view(1, 3, 1, 1) * 255
        std = torch.tensor(spec.std, device=pixels.device).view(1, 3, 1, 1) * 255
        return (pixels.permute(0, 3, 1, 2).float() - mean) / std

    def encode_images(self, frames: list[np.ndarray]) -> np.ndarray:
        """(N, dim) float32, L2-normalised (open_clip's preprocessing)."""
        if len(frames) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [self.encode_pixels(self.preprocess_frames(chunk)) for chunk in _chunks(frames, self.batch_size)]
        return np.concatenate(parts, axis=0)

    @contextlib.contextmanager
    def embedding_threads(self, workers: int):
        """Yields a function that sets up a thread to be one of ``workers`` embedding threads.

        On a CPU each gets its share of torch's threads; on leaving, the
        calling thread's setting (and the default for new threads) is restored.
        """
        import torch

        previous = torch.get_num_threads()
        share = max(1, previous // max(1, workers))

        def setup() -> None:
            if self.device == "cpu":
                torch.set_num_threads(share)

        try:
            yield setup
        finally:
            torch.set_num_threads(previous)

    def encode_text(self, texts: list[str]) -> np.ndarray:
        """(N, dim) float32, L2-normalised."""
        import torch

        if isinstance(texts, str):
            texts = [texts]
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = []
        for chunk in _chunks(list(texts), max(self.batch_size, 64)):
            tokens = self.tokenizer(chunk).to(self.device)
            with self._text_lock, torch.inference_mode(), self._autocast():
                parts.append(_normalise(self.model.encode_text(tokens)))
        return np.concatenate(parts, axis=0)


@dataclass(frozen=True)
class _PixelSpec:
    side: int
    squash: bool  # resize to side x side (no crop) instead of short side + center crop
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass(frozen=True)
class PixelPrep:
    """A model's frame preparation (resize, crop or pad, to uint8), picklable and free of the model.

    ``sleuth index`` hands one to each decoding process, so frames are
    prepared where they are decoded and travel small.
    """

    spec: _PixelSpec | None
    frame_fit: str
    pad_colour: tuple[int, int, int]
    model_id: str

    @property
    def supported(self) -> bool:
        return self.spec is not None

    def frame_size(self, width: int, height: int) -> tuple[int, int] | None:
        spec = self.spec
        if spec is None or width < 1 or height < 1:
            return None
        side = spec.side
        if self.frame_fit == "pad":  # the long side becomes ``side``; the rest is padding
            if width >= height:
                return side, max(1, round(side * height / width))
            return max(1, round(side * width / height)), side
        if spec.squash:
            return side, side
        # torchvision's Resize(int): the short side becomes ``side``, the long one is truncated.
        if width <= height:
            return side, int(side * height / width)
        return int(side * width / height), side

    def pixels_from_frames(self, frames: list[np.ndarray]):
        import torch

        from tools.video_scan import resize_rgb

        if not frames:
            raise ValueError("no frames to preprocess")
        side = self.spec.side if self.spec else 0
        out = torch.empty((len(frames), side, side, 3), dtype=torch.uint8)
        for k, frame in enumerate(frames):
            frame = np.asarray(frame)
            size = self.frame_size(frame.shape[1], frame.shape[0])
            if size is None:
                raise ValueError(f"{self.model_id} needs preprocess_frames")
            frame = resize_rgb(frame, size)
            if self.frame_fit == "pad":
                out[k] = torch.from_numpy(_letterbox(frame, side, self.pad_colour))
                continue
            top = int(round((frame.shape[0] - side) / 2.0))
            left = int(round((frame.shape[1] - side) / 2.0))
            out[k] = torch.from_numpy(frame[top : top + side, left : left + side])
        return out


def _pixel_spec(model, preprocess) -> _PixelSpec | None:
    """The resize/crop/normalise steps of the model's eval preprocessing, where ``pixels_from_frames`` can do them."""
    try:
        import open_clip

        cfg = open_clip.get_model_preprocess_cfg(model)
        size = cfg.get("size")
        side = size if isinstance(size, int) else (size[0] if size[0] == size[1] else None)
        mode = cfg.get("resize_mode", "shortest")
        if side is None or cfg.get("interpolation", "bicubic") != "bicubic" or mode not in ("shortest", "squash"):
            return None
        if any(type(t).__name__ not in _KNOWN_STEPS for t in getattr(preprocess, "transforms", [None])):
            return None  # a preprocessing pipeline other than the one the config describes
        mean, std = tuple(float(v) for v in cfg["mean"]), tuple(float(v) for v in cfg["std"])
        if len(mean) != 3 or len(std) != 3:
            return None
        return _PixelSpec(side=int(side), squash=mode == "squash", mean=mean, std=std)
    except Exception:
        return None


def _preprocess_mean(preprocess) -> tuple[float, float, float]:
    for step in getattr(preprocess, "transforms", []):
        mean = getattr(step, "mean", None)
        if type(step).__name__ == "Normalize" and mean is not None and len(mean) == 3:
            return tuple(float(m) for m in mean)
    return (0.48145466, 0.4578275, 0.40821073)  # CLIP's


def _letterbox(frame: np.ndarray, side: int, colour: tuple[int, int, int]) -> np.ndarray:
    """``frame`` (at most side x side) centred on a side x side canvas of ``colour``."""
    height, width = frame.shape[:2]
    canvas = np.empty((side, side, 3), dtype=np.uint8)
    canvas[:] = colour
    top, left = (side - height) // 2, (side - width) // 2
    canvas[top : top + height, left : left + width] = frame
    return canvas


_KNOWN_STEPS = {"Resize", "CenterCrop", "MaybeConvertMode", "MaybeToTensor", "ToTensor", "Normalize", "function"}


def _embedding_dim(model) -> int | None:
    projection = getattr(model, "text_projection", None)
    if projection is not None and getattr(projection, "ndim", 0) == 2:
        return int(projection.shape[1])
    output_dim = getattr(getattr(model, "visual", None), "output_dim", None)
    return int(output_dim) if output_dim else None


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _normalise(features) -> np.ndarray:
    out = features.detach().float().cpu().numpy().astype(np.float32, copy=False)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.ascontiguousarray(out / np.maximum(norms, 1e-12), dtype=np.float32)


# --------------------------------------------------------------------------- factory


@contextlib.contextmanager
def _quiet_open_clip():
    # open_clip logs on the root logger ("initialized randomly", download errors we re-raise
    # with our own message); keep command output clean.
    previous = logging.root.manager.disable
    logging.disable(logging.ERROR)
    try:
        yield
    finally:
        logging.disable(previous)


def _check_names(config: IndexConfig) -> None:
    import open_clip

    arch = config.clip_model
    if _has_schema(arch):
        return
    if arch not in open_clip.list_models():
        raise ConfigError(
            f"unknown CLIP model {arch!r}; pick one of open_clip.list_models(), e.g. {DEFAULT_CLIP_MODEL}"
        )
    if config.random_weights or config.checkpoint is not None:
        return
    if not config.pretrained:
        raise ConfigError(
            f"no pretrained weights named for {arch}: pass --pretrained TAG, --clip-checkpoint PATH or --random-weights"
        )
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if config.pretrained not in tags:
        raise ConfigError(
            f"unknown pretrained tag {config.pretrained!r} for {arch}; known tags: {', '.join(tags) or 'none'}"
        )


def load_clip(config: IndexConfig) -> ClipEncoder:
    """Build the CLIP encoder ``config`` names (architecture + weights + device).

    Raises ``ConfigError`` for unknown names or a checkpoint that does not fit
    the architecture, and ``ModelUnavailableError`` when pretrained weights
    cannot be fetched (e.g. no network) or a checkpoint cannot be read.
    """
    import open_clip
    import torch

    _check_names(config)
    device = resolve_device(config.device)
    model_id = clip_model_id(config)
    arch = config.clip_model

    with _quiet_open_clip():
        if config.random_weights:
            # Seeded on the CPU, then moved: the same weights on every machine and device.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(RANDOM_SEED)
                model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=None)
        elif config.checkpoint is not None:
            path = _existing_checkpoint(config.checkpoint)
            try:
                model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=str(path))
            except (RuntimeError, KeyError, ValueError) as exc:
                raise ConfigError(f"CLIP checkpoint {path} does not fit {arch}: {_short(exc)}") from None
            except Exception as exc:
                raise ModelUnavailableError(f"cannot read CLIP checkpoint {path}: {_short(exc)}") from None
        else:
            try:
                model, _, preprocess = open_clip.create_model_and_transforms(
                    arch, pretrained=None if _has_schema(arch) else config.pretrained
                )
            except Exception as exc:
                raise ModelUnavailableError(
                    f"CLIP weights {model_id} are not in the local cache and could not be downloaded "
                    f"({_short(exc, 160)}). Run once with network access (the weights are then cached), "
                    f"pass a local file with --clip-checkpoint PATH (weights for --clip-model {arch}), "
                    f"or use --random-weights for an offline smoke run"
                ) from None
        try:
            tokenizer = open_clip.get_tokenizer(arch)
        except Exception as exc:
            raise ModelUnavailableError(f"CLIP tokenizer for {arch} could not be loaded: {_short(exc)}") from None

    model = model.to(device)
    return ClipEncoder(
        model,
        preprocess,
        tokenizer,
        model_id=model_id,
        random_weights=config.random_weights,
        device=device,
        batch_size=config.batch_size,
        precision=config.precision,
        frame_fit=config.frame_fit,
    )


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
