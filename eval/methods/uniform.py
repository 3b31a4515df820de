"""The end-to-end baseline: a VLM sees N uniformly sampled frames and answers, in one call.

Everything protocol-specific (which frames, the prompt template, the request
layout, the generation settings, how the answer is read) comes from the
benchmark, which reproduces its official script (MMR-V's: ``eval.benchmarks.mmr_v``).
"""

from __future__ import annotations

import time
from typing import Any

from eval.methods.base import MethodOutcome, MethodParts, pixels_in, register_method
from sleuth.errors import SleuthError

DEFAULT_FRAMES = 32


class NoFramesError(SleuthError):
    """Not one frame of the video could be decoded."""

    kind = "video"


class UniformMethod:
    name = "uniform"

    def __init__(self, benchmark: Any, backend: Any, *, frames: int = DEFAULT_FRAMES, cot: bool = False,
                 strict_official: bool = False, settings: Any = None, frame_store: Any = None,
                 image_max_side: int | None = None):
        from agent.backends.base import GenerationSettings
        from tools.frame_store import FrameStore

        if frames < 1:
            raise SleuthError(f"--frames must be at least 1 (got {frames})")
        self.benchmark = benchmark
        self.backend = backend
        self.frames = frames
        self.cot = cot
        self.strict_official = strict_official
        self.settings = settings if settings is not None else benchmark.generation_settings(GenerationSettings())
        self.frame_store = frame_store if frame_store is not None else FrameStore()
        self.image_max_side = image_max_side  # None: the protocol's own frame size

    def build_messages(self, question: Any, images: list[Any]) -> list[Any]:
        return self.benchmark.build_messages(question, images, cot=self.cot)

    def sample_frames(self, question: Any) -> list[Any]:
        path = question.video_file()
        # the run's store: the video is opened once and its frames decoded once for all its questions
        with self.frame_store.video(path) as video:
            batch = video.read(self.benchmark.sample_indices(video.meta.n_frames, self.frames))
        if not batch.frames:
            reasons = "; ".join(reason for _, reason in batch.skipped[:2]) or "no frames"
            raise NoFramesError(f"{path}: no frame could be decoded ({reasons})")
        return [_shrink(frame.image, self.image_max_side) for frame in batch.frames]

    def prefetch(self, question: Any) -> None:
        """Decode a question's frames into the store ahead of time (the runner asks for the next video's
        while this one's questions are with the model); the frames are the ones ``sample_frames`` reads."""
        self.frame_store.decode_ahead(question.video_file(),
                                      lambda video: self.benchmark.sample_indices(video.meta.n_frames, self.frames))

    def run(self, question: Any) -> MethodOutcome:
        started = time.perf_counter()
        images = self.sample_frames(question)
        messages = self.build_messages(question, images)
        reply = self.backend.chat(messages, settings=self.settings)
        found = self.benchmark.extract(reply.text, question, strict_official=self.strict_official)
        return MethodOutcome(
            prediction=found.value,
            extraction=found.rule,
            raw_response=reply.text,
            frames=len(images),
            pixels=pixels_in(messages),
            prompt_tokens=reply.usage.prompt_tokens,
            completion_tokens=reply.usage.completion_tokens,
            cost_usd=reply.cost_usd,
            latency_s=time.perf_counter() - started,
            model=getattr(self.backend, "model", ""),
        )

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.name,
            "frames": self.frames,
            "cot": self.cot,
            "strict_official": self.strict_official,
            "prompt": self.prompt_names()[0] if self.prompt_names() else None,
            "generation": self.settings.model_dump(mode="json"),
        }

    def identity(self) -> dict[str, Any]:
        identity = {"frames": self.frames, "cot": self.cot, "strict_official": self.strict_official}
        if self.image_max_side is not None:  # only then does a row depend on it (the protocol decides otherwise)
            identity["image_max_side"] = self.image_max_side
        return identity

    def prompt_names(self) -> list[str]:
        return self.benchmark.prompt_names(cot=self.cot)


def _shrink(image: Any, max_side: int | None) -> Any:
    """``image`` with its longest side at most ``max_side`` (bicubic, as agent frames are); as is when None."""
    if max_side is None or max(image.shape[:2]) <= max_side:
        return image
    import numpy as np
    from PIL import Image

    height, width = image.shape[:2]
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC))


@register_method("uniform")
def _uniform(parts: MethodParts) -> UniformMethod:
    return UniformMethod(parts.benchmark, parts.backend, frames=parts.frames, cot=parts.cot,
                         strict_official=parts.strict_official, settings=parts.settings, frame_store=parts.frame_store,
                         image_max_side=parts.image_max_side)
