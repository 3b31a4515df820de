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
from tools.rendering import fit_longest_side, shrunk

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
        """The protocol's frames of the question's video: rendered as the benchmark sends them (kept by the
        run's store, and on disk for later runs), or decoded arrays for a benchmark that renders its own."""
        path = question.video_file()
        renderer = self.renderer()
        # the run's store: the video is opened once and its frames decoded once for all its questions
        with self.frame_store.video(path) as video:
            indices = self.benchmark.sample_indices(video.meta.n_frames, self.frames)
            batch = (self.frame_store.render(video, indices, renderer) if renderer is not None
                     else video.read(indices))
        if not batch.frames:
            reasons = "; ".join(reason for _, reason in batch.skipped[:2]) or "no frames"
            raise NoFramesError(f"{path}: no frame could be decoded ({reasons})")
        if renderer is not None:
            return [frame.image for frame in batch.frames]
        return [fit_longest_side(frame.image, self.image_max_side) for frame in batch.frames]

    def renderer(self) -> Any:
        """The benchmark's rendering of a frame, after ``image_max_side`` where set; None if it renders its own."""
        renderer = self.benchmark.frame_renderer()
        return shrunk(renderer, self.image_max_side) if renderer is not None else None

    def prefetch(self, question: Any) -> None:
        """Decode (and render) a question's frames into the store ahead of time (the runner asks for the next
        video's while this one's questions are with the model); the frames are the ones ``sample_frames`` reads."""
        self.frame_store.decode_ahead(question.video_file(),
                                      lambda video: self.benchmark.sample_indices(video.meta.n_frames, self.frames),
                                      self.renderer())

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


@register_method("uniform")
def _uniform(parts: MethodParts) -> UniformMethod:
    return UniformMethod(parts.benchmark, parts.backend, frames=parts.frames, cot=parts.cot,
                         strict_official=parts.strict_official, settings=parts.settings, frame_store=parts.frame_store,
                         image_max_side=parts.image_max_side)
