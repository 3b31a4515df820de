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
from pathlib import Path
from typing import Iterator

import numpy as np

from sleuth.errors import ConfigError, ModelUnavailableError
from tools.options import DEFAULT_CLIP_MODEL, IndexConfig

RANDOM_WEIGHTS_LABEL = "random-weights"
RANDOM_SEED = 0
# Bump when the way frames become pixels changes: cached embeddings then no longer match.
PREPROCESS_VERSION = "openclip-val/1"


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


# --------------------------------------------------------------------------- encoder


class ClipEncoder:
    """A loaded CLIP model. Thread-safe: forward passes are serialised by a lock."""

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
    ):
        import torch

        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.random_weights = random_weights
        self.device = device
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self.dim = _embedding_dim(self.model)
        if self.dim is None:
            with torch.inference_mode(), self._autocast():
                self.dim = int(self.model.encode_text(self.tokenizer(["a"]).to(device)).shape[-1])

    @property
    def labels(self) -> list[str]:
        return [RANDOM_WEIGHTS_LABEL] if self.random_weights else []

    def __repr__(self) -> str:
        return f"ClipEncoder({self.model_id!r}, device={self.device!r}, dim={self.dim})"

    def _autocast(self):
        import torch

        if self.device.startswith("cuda"):
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    # Decoding threads call this; it touches no model state.
    def preprocess_frames(self, frames: list[np.ndarray]):
        """HxWx3 uint8 RGB frames -> a CPU float tensor (N, 3, S, S) ready for ``encode_pixels``."""
        import torch
        from PIL import Image

        if not frames:
            raise ValueError("no frames to preprocess")
        return torch.stack([self.preprocess(Image.fromarray(np.asarray(f))) for f in frames])

    def encode_pixels(self, pixels) -> np.ndarray:
        """Preprocessed pixels (N, 3, S, S) -> (N, dim) float32 L2-normalised embeddings."""
        import torch

        with self._lock, torch.inference_mode(), self._autocast():
            features = self.model.encode_image(pixels.to(self.device, non_blocking=True))
        return _normalise(features)

    def encode_images(self, frames: list[np.ndarray]) -> np.ndarray:
        """(N, dim) float32, L2-normalised."""
        if len(frames) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [self.encode_pixels(self.preprocess_frames(chunk)) for chunk in _chunks(frames, self.batch_size)]
        return np.concatenate(parts, axis=0)

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
            with self._lock, torch.inference_mode(), self._autocast():
                parts.append(_normalise(self.model.encode_text(tokens)))
        return np.concatenate(parts, axis=0)


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
    )


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
