"""VSI-Bench ("Thinking in Space", Yang et al., CVPR 2025): 5,130 questions on 288 indoor scan videos.

Its official end-to-end protocol, reproduced from the authors' lmms-eval fork
(``vision-x-nyu/thinking-in-space`` @ ``51e089c``: ``lmms_eval/tasks/vsibench``,
``evaluate_all_in_one.sh``, ``lmms_eval/models``); where the paper differs,
the code is the default and the paper a variant:

- questions: ``nyu-visionx/VSI-Bench``, video ``<dataset>/<scene_name>.mp4``
  (``records``); ``sleuth data download DIR --benchmark vsibench`` fetches and
  unpacks them (``download``);
- prompt (``utils.vsibench_doc_to_text``), from ``prompts/vsibench_*.txt``:
  numeric questions ``pre + "\\n" + question + "\\n" + post``, multiple choice
  ``"\\n".join([pre, question, "Options:\\n" + "\\n".join(options), post])``,
  the options exactly as the record writes them;
- request: one user message, the frames then the prompt (LLaVA-OneVision's
  ``<image>\\n`` + prompt, the paper's [frames][pre-prompt][question][post-prompt]);
  frames at full resolution (each model's processor resizes);
- frames: ``numpy.linspace(0, n - 1, N, dtype=int)``, N = 32 (``--frames``);
- generation: greedy (temperature 0), at most 16 new tokens;
- answers (``scoring``): the reply's first space-separated token; a letter,
  exact match ignoring case; a number, mean relative accuracy (``<=``); an
  unreadable answer scores 0 and counts as an extraction failure; never guessed;
- overall: the unweighted mean of the 8 task scores, relative direction
  being the mean of its easy, medium and hard means (``overall_accuracy``).

Variants (``--variant``) reproduce the other model families of the official
script, the paper's MRA and lmms-eval HEAD's number reading; see ``VARIANTS``.
Known differences, all outside what sleuth can send: frames are JPEG (PIL's
default quality) where the GPT-4o code sends PNG; Gemini got the whole video
file, not frames; ``top_p``/``num_beams`` are not sent (greedy decoding makes
them moot). ``strict_official`` changes nothing here: the default rules are
the official ones.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from eval.benchmarks.base import (
    Benchmark,
    DownloadOutcome,
    Extraction,
    Grouping,
    Reference,
    mean_relative_accuracy,
    register_benchmark,
)
from eval.benchmarks.vsibench.records import (
    DATASET_LABELS,
    DATASETS,
    HUB_DATASET,
    REL_DIRECTION,
    REL_DIRECTION_LABELS,
    REL_DIRECTION_TYPES,
    TASK_LABELS,
    TASKS,
    normalise_record,
    questions_file,
)
from eval.benchmarks.vsibench.scoring import extract_choice, extract_number, official_overall, paper_mra

PRE_PROMPT = "vsibench_pre"
MCA_POST_PROMPT = "vsibench_mca_post"
NA_POST_PROMPT = "vsibench_na_post"
NA_POST_PROMPT_NUMBER = "vsibench_na_post_number"  # the yaml's gemini_api and gpt4v profiles
MAX_NEW_TOKENS = 16  # vsibench.yaml generation_kwargs
GEMINI_MAX_TOKENS = 8192  # gemini_api.py fixes max_output_tokens and ignores the task's max_new_tokens
INTERNVL2_TILE = 448  # internvl2.py input_size

VARIANTS = {
    "gpt4v": "GPT-4o as the official script runs it (lmms-eval model gpt4v, run with --frames 16): the NA "
             "post-prompt 'Do not response anything other than a single number!', the prompt before the frames, "
             "the last frame added when the uniform indices miss it",
    "gemini": "Gemini as the official script runs it (gemini_api): the same NA post-prompt as gpt4v, the frames in a "
              "first user turn and the prompt in a second, up to 8192 new tokens; the official code uploads the "
              "whole video instead, which frames cannot reproduce",
    "internvl2": "InternVL2 as the official script runs it (run with --frames 8): segment-centre frame indices, "
                 "each frame squashed to one 448x448 tile (max_num=1) after a 'Frame<i>: ' label, then the prompt",
    "paper-mra": "mean relative accuracy as the paper's Eq. 1 writes it: strict < (the code uses <=), computed "
                 "exactly on the numbers as written",
    "lenient-number": "numbers read as lmms-eval HEAD (eab6655a) reads them: the first number anywhere in the reply, "
                      "digits or English number words (the official code: float() of the first token)",
}


def _table1(name: str, average: float, columns: tuple[float, ...], note: str) -> Reference:
    """A row of the paper's Table 1, its task columns in Table 1 order."""
    return Reference(name, average, dict(zip(TASK_LABELS.values(), columns)), note)


def _internvl2_tile(image: Any) -> np.ndarray:
    """internvl2.load_video with max_num=1: the frame resized to one 448x448 tile (bicubic, aspect not kept),
    which an InternVL server's own tiling then leaves as one tile."""
    from PIL import Image

    return np.asarray(Image.fromarray(np.asarray(image)).resize((INTERNVL2_TILE, INTERNVL2_TILE), Image.BICUBIC))


@register_benchmark
class VSIBench(Benchmark):
    name = "vsibench"
    title = "VSI-Bench"
    hub_dataset = HUB_DATASET
    default_frames = 32
    variants = VARIANTS
    groupings = (
        Grouping("task", "task", order=TASKS, labels=TASK_LABELS, closed=True, headline=True),
        # the sub-types the official aggregation averages into Rel. Dir. (the other types are their own task)
        Grouping("question_type", "relative direction", order=REL_DIRECTION_TYPES, labels=REL_DIRECTION_LABELS,
                 closed=True),
        Grouping("dataset", "source dataset", order=DATASETS, labels=DATASET_LABELS),
    )
    # Paper Table 1 (v2), in percent: reported, not runs of ours. Avg. is the mean of the 8 task columns.
    references = (
        _table1("GPT-4o", 34.0, (46.2, 5.3, 43.8, 38.2, 37.0, 41.3, 31.5, 28.5), "16 frames"),
        _table1("Gemini-1.5 Flash", 42.1, (49.8, 30.8, 53.5, 54.4, 37.7, 41.0, 31.5, 37.8), "whole video"),
        _table1("Gemini-1.5 Pro", 45.4, (56.2, 30.9, 64.1, 43.6, 51.3, 46.3, 36.0, 34.6), "whole video"),
        _table1("LLaVA-Video-72B", 40.9, (48.9, 22.8, 57.4, 35.3, 42.4, 36.7, 35.0, 48.6), "32 frames"),
        _table1("LLaVA-OneVision-72B", 40.2, (43.5, 23.9, 57.6, 37.5, 42.5, 39.9, 32.5, 44.6), "32 frames"),
        _table1("Chance (frequency)", 34.0, (62.1, 32.0, 29.9, 33.1, 25.1, 47.9, 28.4, 25.2),
                "the most frequent answer per task"),
        _table1("Human", 79.2, (94.3, 47.0, 60.4, 45.9, 94.7, 95.8, 95.8, 100.0), "VSI-Bench (tiny), 400 questions"),
    )
    reference_source = ("VSI-Bench paper (arXiv 2412.14171v2) Table 1, the full set of 5,130 questions unless noted; "
                        "reported, not run here")

    def load(self, source, videos_dir):
        # a download folder holds the release's questions beside later subsets: pick the full set
        if source is not None and str(source) != "hub" and Path(source).is_dir():
            source = questions_file(Path(source))
        return super().load(source, videos_dir)

    def normalise(self, record, index, *, videos_dir, source):
        return normalise_record(record, index, videos_dir=videos_dir, source=source)

    # -- the official protocol

    def prompt_names(self, *, cot: bool = False) -> list[str]:
        if cot:
            from sleuth.errors import ConfigError

            raise ConfigError("VSI-Bench's official protocol has no chain-of-thought prompt; run without --cot")
        na_post = NA_POST_PROMPT_NUMBER if self.variant in ("gpt4v", "gemini") else NA_POST_PROMPT
        return [PRE_PROMPT, MCA_POST_PROMPT, na_post]

    def prompt_text(self, question, *, cot: bool = False) -> str:
        """The prompt as ``utils.vsibench_doc_to_text`` writes it."""
        from prompts import load_prompt

        pre, mca_post, na_post = (load_prompt(name).text for name in self.prompt_names(cot=cot))
        if question.answer_kind == "number":
            return pre + "\n" + question.question + "\n" + na_post
        options = "Options:\n" + "\n".join(question.record["options"])  # as the record writes them
        return "\n".join([pre, question.question, options, mca_post])

    def build_messages(self, question, images, *, cot: bool = False):
        from agent.backends.base import Message, TextPart

        text = TextPart(text=self.prompt_text(question, cot=cot))
        frames = self.image_parts(images)
        if self.variant == "internvl2":  # internvl2.py: "Frame1: <image>\nFrame2: <image>\n" + prompt
            parts: list[Any] = []
            for number, image in enumerate(frames, start=1):
                parts += [TextPart(text=("\n" if number > 1 else "") + f"Frame{number}: "), image]
            return [Message(role="user", content=[*parts, TextPart(text="\n" + text.text)])]
        if self.variant == "gpt4v":  # gpt4v.py: the text part, then the frames
            return [Message(role="user", content=[text, *frames])]
        if self.variant == "gemini":  # gemini_api.py: the video as a first user turn, the prompt sent after it
            return [Message(role="user", content=frames), Message(role="user", content=[text])]
        return [Message(role="user", content=[*frames, text])]

    def frame_renderer(self):
        from tools.rendering import PreparedRendering, Rendering

        return PreparedRendering("internvl2-tile", _internvl2_tile) if self.variant == "internvl2" else Rendering()

    def generation_settings(self, base):
        max_tokens = GEMINI_MAX_TOKENS if self.variant == "gemini" else MAX_NEW_TOKENS
        return base.model_copy(update={"temperature": 0.0, "max_tokens": max_tokens})

    def sample_indices(self, n_frames: int, count: int) -> list[int]:
        if self.variant == "internvl2":
            # internvl2.get_index without bounds: segment centres over frames 0..n-1, numpy's round-half-even
            segment = (n_frames - 1) / count
            return [int(segment / 2 + np.round(segment * i)) for i in range(count)]
        indices = super().sample_indices(n_frames, count)
        if self.variant == "gpt4v" and n_frames - 1 not in indices:  # gpt4v.encode_video keeps the last frame
            indices.append(n_frames - 1)
        return indices

    # -- answers

    def extract(self, text, question, *, strict_official: bool = False) -> Extraction:
        if question.answer_kind == "number":
            return extract_number(text, lenient=self.variant == "lenient-number")
        return extract_choice(text)

    def score(self, prediction, question_gold, kind=None) -> float:
        if prediction is None:
            return 0.0
        if kind == "number":
            try:
                value, gold = float(prediction), float(question_gold)
            except (TypeError, ValueError):
                return 0.0
            if not (math.isfinite(value) and math.isfinite(gold)):
                return 0.0
            return paper_mra(value, gold) if self.variant == "paper-mra" else mean_relative_accuracy(value, gold)
        return float(str(prediction).upper() == question_gold.upper())  # exact_match lower-cases both

    # -- results

    def overall_accuracy(self, items) -> float | None:
        return official_overall(items)

    def derived_metrics(self, runs) -> list[str]:
        """Relative direction as the official code scores it: the mean of the sub-type means (the task row
        of the score table is the mean over its questions, which weighs the sub-types by their size)."""
        lines = []
        labels = set(REL_DIRECTION_LABELS.values())
        for name, (card, _config) in runs.items():
            means = [g.accuracy for g in card.groups
                     if g.kind == "question_type" and g.name in labels and g.accuracy is not None]
            task = next((g for g in card.groups if g.kind == "task" and g.name == TASK_LABELS[REL_DIRECTION]), None)
            if means and task is not None and task.accuracy is not None:
                official, pooled = 100 * sum(means) / len(means), 100 * task.accuracy
                lines.append(f"{name}: Rel. Dir. as the official code scores it (mean of the easy, medium and hard "
                             f"means) {official:.1f}; over its questions {pooled:.1f}")
        return lines

    def download(self, directory, *, fetch=True, extract=True, revision=None, progress=True, console=None):
        """The hub snapshot, its three per-source zips unpacked, then verified."""
        from eval.benchmarks.vsibench.download import download_dataset

        unpacked, facts = download_dataset(Path(directory), revision=revision, fetch=fetch, extract=extract,
                                           progress=progress, console=console)
        return DownloadOutcome(
            root=Path(directory), videos_dir=Path(directory), video_files=facts["video_files"],
            questions_file=facts["questions_file"], referenced=facts["referenced"], missing=facts["missing"],
            details={"archives": unpacked.archives, "unpacked_files": unpacked.written,
                     "already_unpacked": unpacked.skipped},
        )
