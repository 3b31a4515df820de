"""Video-Holmes (Cheng et al., 2025, arXiv 2505.21374): 1,837 six-option questions on 270 suspense short films.

Its official end-to-end protocol, as the official repo's ``evaluate.py``
(TencentARC/Video-Holmes) runs it; where the paper says otherwise, the code
wins and the paper's version is a variant. ``evaluate.py`` has one path per
model family (Qwen through vLLM and ``qwen_vl_utils``' own fps sampling,
Gemini with the whole video uploaded, InternVL with N frames); the frame
path, the one a frames-in-one-request method can reproduce, is InternVL's:

- frames: N = 32 segment centres, ``get_index``'s
  ``int(seg/2 + np.round(seg*i))`` with ``seg = (n_frames - 1) / N``;
- each frame resized to 448x448, bicubic, aspect ratio not kept
  (``load_video`` with ``max_num=1``: one tile, no thumbnail), then sent as
  a JPEG at PIL's default quality (InternVL gets the tensor; an API needs an
  image file);
- one user message: ``Frame1: <image>\\nFrame2: <image>\\n...`` then the
  prompt (``prompts/video_holmes_thinking.txt``: the question and the
  options as ``A: text, B: text, ...``), each ``<image>`` an image part;
  no system message;
- at most 1,024 new tokens, sampling at the server's temperature
  (``max_new_tokens=1024, do_sample=True``);
- the letter read by the official cascade (``extract.extract_answer``);
  an unreadable answer is wrong.

Differences that remain: the official script scores a failed request as
wrong, while sleuth records it as an error row outside the accuracy (the
score report counts them); it has no top_p to send (its Qwen path uses
``top_p=0.001``). No subtitles or audio (the paper's main table is video
only). ``--strict-official`` changes nothing here: the default already is
the official rule. ``--cot`` is refused: the official prompt already asks
for reasoning in ``<think>`` tags and has no other template.

Variant ``no_thinking``: the paper's "Model Evaluation Prompt (Without
Thinking)" (App. B, used for Table 5c), which the official code does not have.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from eval.benchmarks.base import Benchmark, DownloadOutcome, Extraction, Grouping, Reference, register_benchmark
from eval.benchmarks.video_holmes.extract import extract_answer
from eval.benchmarks.video_holmes.records import (
    HUB_DATASET,
    QUESTION_TYPES,
    QUESTIONS_FILE,
    normalise_record,
    official_options,
)

THINKING_PROMPT = "video_holmes_thinking"
NO_THINKING_PROMPT = "video_holmes_no_thinking"
NO_THINKING = "no_thinking"  # the variant
FRAME_SIDE = 448  # InternVL's input_size in the official load_video
MAX_NEW_TOKENS = 1024


@register_benchmark
class VideoHolmes(Benchmark):
    name = "video_holmes"
    title = "Video-Holmes"
    hub_dataset = HUB_DATASET
    answer_kind = "choice"
    default_frames = 32
    image_max_side = FRAME_SIDE  # the agent's frames at the protocol's scale (it keeps their aspect ratio)
    variants = {
        NO_THINKING: "the paper's prompt without thinking (App. B, Table 5c), not the official code's thinking one",
    }
    groupings = (Grouping("question_type", "question type", order=QUESTION_TYPES, closed=True, headline=True),)
    # Table 2 of the paper (video only, no audio): accuracy in percent, frames as printed there.
    references = (
        Reference("GPT-4o", 42.0, dict(zip(QUESTION_TYPES, (50.0, 49.6, 38.8, 30.0, 44.0, 39.2, 37.0))), "32 frames"),
        Reference("Gemini-2.5-Pro", 45.0, dict(zip(QUESTION_TYPES, (46.6, 49.3, 46.9, 53.0, 40.1, 44.3, 37.4))),
                  "whole video (API)"),
        Reference("Gemini-1.5-Pro", 41.2, dict(zip(QUESTION_TYPES, (52.1, 48.2, 34.4, 26.0, 39.2, 46.4, 38.9))),
                  "whole video (API)"),
        Reference("Gemini-2.0-Flash", 30.6, dict(zip(QUESTION_TYPES, (41.8, 33.7, 23.1, 20.5, 30.1, 26.8, 33.7))),
                  "whole video (API)"),
        Reference("Qwen2.5-VL-7B", 27.8, dict(zip(QUESTION_TYPES, (38.4, 34.8, 17.6, 30.0, 27.1, 18.6, 25.2))),
                  "32 frames"),
        Reference("Qwen2.5-VL-32B", 38.4, dict(zip(QUESTION_TYPES, (43.2, 44.2, 31.5, 51.0, 36.4, 31.4, 32.2))),
                  "32 frames"),
        Reference("Claude 3.7 Sonnet", 41.0, dict(zip(QUESTION_TYPES, (45.9, 48.2, 33.7, 39.5, 40.7, 39.7, 38.1))),
                  "20 frames"),
    )
    reference_source = ("Video-Holmes paper (arXiv 2505.21374v1), Table 2, video only, 1,837 questions; "
                        "reported, not run here")

    def load(self, source, videos_dir):
        # a downloaded folder also holds the training questions and annotations: take the test file
        if source is not None and (Path(source) / QUESTIONS_FILE).is_file():
            source = Path(source) / QUESTIONS_FILE
        return super().load(source, videos_dir)

    def normalise(self, record, index, *, videos_dir, source):
        return normalise_record(record, index, videos_dir=videos_dir, source=source)

    # -- the official protocol

    def prompt_names(self, *, cot: bool = False) -> list[str]:
        if cot:
            from sleuth.errors import ConfigError

            raise ConfigError("Video-Holmes's official prompt already asks for reasoning in <think> tags and has no "
                              "separate chain-of-thought template: drop --cot (the paper's prompt without thinking "
                              "is --variant no_thinking)")
        return [NO_THINKING_PROMPT if self.variant == NO_THINKING else THINKING_PROMPT]

    def prompt_text(self, question, *, cot: bool = False) -> str:
        """The official prompt for ``question``: the template filled with its question and options."""
        from prompts import load_prompt

        template = load_prompt(self.prompt_names(cot=cot)[0]).text
        return template.format(question=question.question, options=official_options(question.record))

    def build_messages(self, question, images, *, cot: bool = False):
        from agent.backends.base import Message, TextPart

        text = self.prompt_text(question, cot=cot)
        # InternVL's ''.join(f'Frame{i+1}: <image>\n') + prompt, each <image> an image part
        parts: list = []
        for number, image in enumerate(self.image_parts(images), start=1):
            parts.append(TextPart(text=("" if number == 1 else "\n") + f"Frame{number}: "))
            parts.append(image)
        parts.append(TextPart(text=("\n" if images else "") + text))
        return [Message(role="user", content=parts)]

    def frame_renderer(self):
        from tools.rendering import PreparedRendering

        return PreparedRendering("internvl-448", resize_frame)

    def generation_settings(self, base):
        return base.model_copy(update={"temperature": None, "max_tokens": MAX_NEW_TOKENS})

    def sample_indices(self, n_frames: int, count: int) -> list[int]:
        """The official ``get_index`` without bounds: segment centres over frames 0 .. n_frames - 1."""
        if n_frames < 1:
            return []
        segment = (n_frames - 1) / count
        return [int(segment / 2 + np.round(segment * i)) for i in range(count)]

    def extract(self, text, question, *, strict_official: bool = False) -> Extraction:
        return extract_answer(text)

    def download(self, directory, *, fetch=True, extract=True, revision=None, progress=True, console=None):
        """The hub snapshot (gated), ``videos.zip`` and ``annotations.zip`` unpacked, then verified."""
        from eval.benchmarks.video_holmes.download import download

        done = download(directory, revision=revision, fetch=fetch, extract=extract, progress=progress,
                        console=console)
        verified = done.verified
        return DownloadOutcome(
            root=done.root, videos_dir=verified.videos_dir, video_files=verified.video_files,
            questions_file=verified.questions_file, referenced=verified.referenced, missing=list(verified.missing),
            details={"unpacked_files": done.unpacked},
        )


def resize_frame(image: Any) -> np.ndarray:
    """A frame as the official InternVL loader feeds it: RGB, 448x448, bicubic, aspect ratio not kept."""
    from PIL import Image

    frame = Image.fromarray(np.asarray(image)).convert("RGB")
    return np.asarray(frame.resize((FRAME_SIDE, FRAME_SIDE), Image.BICUBIC))
