"""MMR-V's official end-to-end protocol: N uniform frames and one question, one model call.

Reproduced exactly (see MMR-V's ``evaluation/server_evaluation_on_MMR.py``):

- frames: indices ``numpy.linspace(0, n_frames - 1, N, dtype=int)`` (``Video.sample_uniform``);
- each frame JPEG-encoded at full resolution with PIL's default quality
  (``ImagePart.from_array`` defaults), sent as a base64 data URL;
- one user message: one text part, the template filled with the question and
  Python's ``str()`` of the options list, plus a trailing space, then the N
  images in time order, without labels; no system message;
- no temperature or max_tokens unless the user sets them (server defaults);
- the direct template by default, the chain-of-thought one with ``cot=True``.

The answer is read with ``eval.extract.extract_answer`` (the last ``[[X]]`` by
default, the official first-match rule with ``strict_official=True``).
"""

from __future__ import annotations

import time
from typing import Any

from agent.backends.base import Backend, GenerationSettings, ImagePart, Message, TextPart
from eval.dataset import Question
from eval.extract import extract_answer
from eval.methods import MethodOutcome
from prompts import load_prompt
from sleuth.errors import SleuthError

DEFAULT_FRAMES = 32
DIRECT_PROMPT = "mmrv_direct"
COT_PROMPT = "mmrv_cot"


class NoFramesError(SleuthError):
    """Not one frame of the video could be decoded."""


def official_settings(base: GenerationSettings | None = None) -> GenerationSettings:
    """Generation settings that leave temperature and max_tokens to the server, as the protocol does."""
    settings = base or GenerationSettings()
    return settings.model_copy(update={"temperature": None, "max_tokens": None})


def official_options(question: Question) -> list[str]:
    """The options exactly as the record gives them (``str()`` of this list goes into the prompt)."""
    raw = question.record.get("options") if question.record else None
    if isinstance(raw, list) and raw and all(isinstance(o, str) for o in raw) and len(raw) == len(question.options):
        return raw
    return question.options


class UniformMethod:
    """The end-to-end baseline: a VLM sees N uniformly sampled frames and answers."""

    name = "uniform"

    def __init__(
        self,
        backend: Backend,
        *,
        frames: int = DEFAULT_FRAMES,
        cot: bool = False,
        strict_official: bool = False,
        settings: GenerationSettings | None = None,
    ):
        if frames < 1:
            raise SleuthError(f"--frames must be at least 1 (got {frames})")
        self.backend = backend
        self.frames = frames
        self.cot = cot
        self.strict_official = strict_official
        self.settings = settings if settings is not None else official_settings()
        self.prompt = load_prompt(COT_PROMPT if cot else DIRECT_PROMPT)

    # ------------------------------------------------------------------ request
    def prompt_text(self, question: Question) -> str:
        return self.prompt.text.format(question=question.question, options=str(official_options(question))) + " "

    def build_messages(self, question: Question, images: list[Any]) -> list[Message]:
        """The one user message: filled template, then the frames (HxWx3 uint8 arrays) in time order."""
        parts: list[TextPart | ImagePart] = [TextPart(text=self.prompt_text(question))]
        parts.extend(ImagePart.from_array(image) for image in images)
        return [Message(role="user", content=parts)]

    def sample_frames(self, question: Question) -> list[Any]:
        from tools.video import open_video

        path = question.video_file()
        with open_video(path) as video:
            batch = video.sample_uniform(self.frames)
        if not batch.frames:
            reasons = "; ".join(reason for _, reason in batch.skipped[:2]) or "no frames"
            raise NoFramesError(f"{path}: no frame could be decoded ({reasons})")
        return [frame.image for frame in batch.frames]

    # ------------------------------------------------------------------ method
    def run(self, question: Question) -> MethodOutcome:
        started = time.perf_counter()
        images = self.sample_frames(question)
        reply = self.backend.chat(self.build_messages(question, images), settings=self.settings)
        found = extract_answer(reply.text, question.letters, strict_official=self.strict_official)
        return MethodOutcome(
            prediction=found.letter,
            extraction=found.rule,
            raw_response=reply.text,
            frames=len(images),
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
            "prompt": self.prompt.name,
            "generation": self.settings.model_dump(mode="json"),
        }

    def prompt_names(self) -> list[str]:
        return [self.prompt.name]
