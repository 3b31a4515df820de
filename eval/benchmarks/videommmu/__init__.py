"""Video-MMMU (Hu et al., 2025): 900 questions on 300 lecture videos, in three tracks
(Perception, Comprehension, Adaptation) over 6 disciplines and 30 subjects.

Its official end-to-end protocol, reproduced from the official fork
(EvolvingLMMs-Lab/VideoMMMU @ 88b4ac3: ``lmms_eval/tasks/videommmu/_default_template_yaml``
and ``utils.py``, with the OpenAI-API model ``lmms_eval/models/gpt4v.py``):

- frames: ``numpy.linspace(0, n_frames - 1, min(n_frames, N), dtype=int)``
  (``load_video_stream``), N = 32 (gpt4v's ``max_frames_num``, the README's
  command); with N >= 2 the last frame, which holds the Adaptation question's
  image, is always among them;
- frames at full resolution; one user message: the text, then the frames in
  time order, unlabelled; no system message;
- the text (``prompts/videommmu_*.txt`` hold the template's four strings):
  Perception/Comprehension ``question + "\\n" + options + perception_and_comprehension_prompt``;
  Adaptation multiple choice ``pre_prompt + mcq_prompt + question + "\\n" + options``;
  Adaptation open ``pre_prompt + open_ended_prompt + question``; options as
  ``parse_options`` writes them (``"A. text"`` lines);
- temperature 0 and max_tokens 1024 (the task's ``max_new_tokens``, gpt4v's temperature);
- the reply stripped (gpt4v strips it), then parsed by the MMMU rules of
  ``parsing`` (the letter parser for ``question_type == "multiple-choice"``,
  the open parser otherwise); every result names the rule that fired.

Where it differs:

- frames go as JPEG at quality 95: sleuth's ``ImagePart`` carries JPEG only,
  gpt4v sends lossless PNG;
- an empty reply (the official ``"API Error"``, dropped from the denominator)
  becomes an error row, which scoring also leaves out of the accuracy (the
  OpenAI backend already retries an empty reply and then records one);
- open questions: the official verdict is "any parsed candidate matches the
  gold"; a row keeps one candidate, the one that matched (else the first, a
  number for a numeric gold), so scoring the row again gives the same verdict.

Variant ``question_only`` (the official task ``video_mmmu_adaptation_question_only``):
the Adaptation questions on ``question_only/<id>_image.mp4`` (2 s of the
question's image), one frame (the README runs it with ``max_frames_num=1``),
text ``question + "\\n" + options`` (no pre-prompt; open questions too, so
their text ends in ``"\\n"``). Δknowledge compares it with a normal run of the
same model (``derived_metrics``).

Results: micro-averaged accuracy (the paper; the official aggregation is
instance-weighted, the same thing), per track and discipline as the paper's
Table 2, and per subject as the official aggregation prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from eval.benchmarks.base import Benchmark, DownloadOutcome, Extraction, Grouping, Reference, register_benchmark
from eval.benchmarks.videommmu.parsing import (
    is_api_error,
    normalise_candidate,
    open_matches,
    parse_multi_choice,
    parse_open,
)
from eval.benchmarks.videommmu.records import (
    ADAPTATION,
    DISCIPLINES,
    HUB_DATASET,
    SUBJECTS,
    TRACKS,
    normalise_record,
    official_options,
    read_file,
    read_folder,
    read_hub,
)
from eval.dataset import HUB_PREFIX, DatasetError, normalise_records
from sleuth.errors import ConfigError, SleuthError

QUESTION_ONLY = "question_only"
PRE_PROMPT = "videommmu_pre_prompt"
MCQ_PROMPT = "videommmu_mcq_prompt"
OPEN_PROMPT = "videommmu_open_ended_prompt"
PERCEPTION_COMPREHENSION_PROMPT = "videommmu_perception_and_comprehension_prompt"
JPEG_QUALITY = 95  # the closest ImagePart comes to the official lossless PNG
MAX_TOKENS = 1024  # _default_template_yaml: generation_kwargs.max_new_tokens


class EmptyReply(SleuthError):
    """An empty reply: the official scorer's "API Error", which its aggregation leaves out."""

    kind = "empty"


def delta_knowledge(post: float, pre: float) -> float | None:
    """Δknowledge in percent from the Adaptation accuracies (fractions) with and without the video:
    ``(Acc_post - Acc_pre) / (100% - Acc_pre) * 100%`` (paper §5.1); None when ``pre`` is 100%."""
    if pre >= 1.0:
        return None
    return (post - pre) / (1.0 - pre) * 100.0


@register_benchmark
class VideoMMMU(Benchmark):
    name = "videommmu"
    title = "Video-MMMU"
    hub_dataset = HUB_DATASET
    answer_kind = "choice"  # most questions; open ones are "number" or "text" (Question.answer_kind)
    default_frames = 32
    variants = {
        QUESTION_ONLY: "the official question-only baseline (video_mmmu_adaptation_question_only): Adaptation "
                       "questions on question_only/<id>_image.mp4, one frame, no pre-prompt; pair it with a normal "
                       "run of the same model for Δknowledge",
    }
    groupings = (
        Grouping("track", "track", order=TRACKS, closed=True, headline=True),
        Grouping("discipline", "discipline", order=tuple(DISCIPLINES), closed=True, headline=True),
        Grouping("subject", "subject", order=SUBJECTS, browse=False),
    )
    # Paper Table 2 (Overall | Perception Comprehension Adaptation | Art Biz Sci Med Hum Eng), Δknowledge
    # from its Fig. 5a; reported, never run here.
    references = tuple(
        Reference(name, overall, dict(zip((*TRACKS, *DISCIPLINES), groups)), note)
        for name, overall, groups, note in (
            ("Human Expert", 74.44, (84.33, 78.67, 60.33, 80.95, 78.79, 74.24, 70.54, 84.76, 69.91),
             "Δknowledge +33.1"),
            ("Claude-3.5-Sonnet", 65.78, (72.00, 69.67, 55.67, 66.67, 75.00, 56.06, 58.14, 75.24, 66.08),
             "20 frames; Δknowledge +11.4"),
            ("GPT-4o", 61.22, (66.00, 62.00, 55.67, 69.52, 66.88, 51.55, 64.76, 69.52, 57.13),
             "50 frames; Δknowledge +15.6"),
            ("Gemini 1.5 Pro", 53.89, (59.00, 53.33, 49.33, 57.14, 59.09, 49.10, 57.42, 58.10, 50.31),
             "Δknowledge +8.7"),
            ("Aria", 50.78, (65.67, 46.67, 40.00, 71.43, 47.73, 44.70, 58.92, 62.86, 43.66),
             "64 frames; Δknowledge +3.2"),
            ("Gemini 1.5 Flash", 49.78, (57.33, 49.00, 43.00, 63.49, 53.03, 43.18, 49.61, 59.05, 45.72),
             "Δknowledge -3.3"),
            ("LLaVA-Video-72B", 49.67, (59.67, 46.00, 43.33, 69.84, 44.70, 41.67, 58.92, 57.14, 45.13),
             "64 frames; Δknowledge +7.1"),
            ("LLaVA-OneVision-72B", 48.33, (59.67, 42.33, 43.00, 61.91, 46.21, 40.15, 54.26, 60.00, 43.95),
             "32 frames; Δknowledge +6.6"),
            ("LLaVA-OneVision-7B", 33.89, (40.00, 31.00, 30.67, 49.21, 29.55, 34.85, 31.78, 46.67, 29.20),
             "32 frames; Δknowledge -5.6"),
            ("Random Choice", 14.00, (12.00, 14.00, 16.00, 11.11, 12.88, 12.12, 22.48, 10.48, 13.57), ""),
        )
    )
    reference_source = ("Video-MMMU paper (arXiv 2501.13826v1) Table 2 and Fig. 5a, all 900 questions, "
                        "micro-averaged; reported, not run here")

    # ------------------------------------------------------------------ data

    def load(self, source, videos_dir):
        """Questions from the hub (None), ``hf://name``, an official-layout file or a downloaded folder."""
        question_only = self.variant == QUESTION_ONLY
        tracks = (ADAPTATION,) if question_only else TRACKS
        text = str(source) if source is not None else "hub"
        if text == "hub" or text.startswith(HUB_PREFIX):
            name = HUB_DATASET if text == "hub" else text[len(HUB_PREFIX):]
            description, records = f"{HUB_PREFIX}{name}", read_hub(name, tracks)
        else:
            path = Path(text)
            if not path.exists():
                raise DatasetError(f"{path}: no such file or folder")
            description, records = str(path), read_folder(path) if path.is_dir() else read_file(path)
        if question_only:  # the official task reads the Adaptation config alone
            records = [r for r in records if not (isinstance(r, dict) and r.get("track") in TRACKS[:2])]
        folder = Path(videos_dir) if videos_dir is not None else None
        if folder is not None and not folder.is_dir():
            raise DatasetError(f"{folder}: video folder not found")
        return normalise_records(records, self.normalise, videos_dir=folder, source=description)

    def normalise(self, record, index, *, videos_dir, source):
        return normalise_record(record, index, videos_dir=videos_dir, source=source,
                                question_only=self.variant == QUESTION_ONLY)

    def row_fields(self, question) -> dict[str, Any]:
        return {**question.groups, "id": question.record.get("id")}  # the official id, as its scripts key rows

    # ------------------------------------------------------------------ the official protocol

    def prompt_names(self, *, cot: bool = False) -> list[str]:
        if cot:
            raise ConfigError("Video-MMMU's official protocol has no chain-of-thought prompt; drop --cot")
        if self.variant == QUESTION_ONLY:
            return []  # the question and options alone
        return [PERCEPTION_COMPREHENSION_PROMPT, PRE_PROMPT, MCQ_PROMPT, OPEN_PROMPT]

    def prompt_text(self, question) -> str:
        """The text the official ``doc_to_text`` functions build for this question."""
        from prompts import load_prompt

        record = question.record
        text, options = record["question"], list(record.get("options") or [])
        if self.variant == QUESTION_ONLY:  # videoperception_doc_to_text_no_preprompt
            return text + "\n" + official_options(options)
        if question.groups["track"] != ADAPTATION:  # videoperception_doc_to_text_perception_comprehension
            return f"{text}\n{official_options(options)}" + load_prompt(PERCEPTION_COMPREHENSION_PROMPT).text
        pre_prompt = load_prompt(PRE_PROMPT).text  # videoperception_doc_to_text_adaptation
        if question.answer_kind == "choice":
            return pre_prompt + load_prompt(MCQ_PROMPT).text + text + "\n" + official_options(options)
        return pre_prompt + load_prompt(OPEN_PROMPT).text + text

    def build_messages(self, question, images, *, cot: bool = False):
        from agent.backends.base import Message, TextPart

        self.prompt_names(cot=cot)  # refuses --cot
        parts: list = [TextPart(text=self.prompt_text(question))]
        parts.extend(self.image_parts(images))
        return [Message(role="user", content=parts)]

    def frame_renderer(self):
        from tools.rendering import Rendering

        return Rendering(quality=JPEG_QUALITY)

    def generation_settings(self, base):
        return base.model_copy(update={"temperature": 0.0, "max_tokens": MAX_TOKENS})

    def sample_indices(self, n_frames: int, count: int) -> list[int]:
        if self.variant == QUESTION_ONLY:
            count = 1  # the README's max_frames_num=1: the video is one still image
        return np.linspace(0, n_frames - 1, min(n_frames, count), dtype=int).tolist()

    # ------------------------------------------------------------------ answers

    def extract(self, text, question, *, strict_official: bool = False) -> Extraction:
        """The official parse (``strict_official`` changes nothing: there is only the official rule)."""
        reply = text.strip()
        if is_api_error(reply):
            raise EmptyReply("the reply was empty (the official scorer's 'API Error', which its aggregation "
                             "leaves out of the accuracy)")
        if question.answer_kind == "choice":
            letter, rule = parse_multi_choice(reply, list(question.record["options"]))
            return Extraction(letter, rule)
        candidates = parse_open(reply)
        matched = [c for c in candidates if open_matches(c, question.answer)]
        numbers = [c for c in candidates if isinstance(c, float)]
        chosen = (matched or (numbers if question.answer_kind == "number" else []) or candidates)[0]
        return Extraction(chosen, "open_number" if isinstance(chosen, float) else "open_text")

    def score(self, prediction, question_gold, kind=None) -> float:
        """Multiple choice: the letter equals the gold (``eval_multi_choice``); open: ``eval_open``
        on the prediction as one candidate (a parsed candidate, or the agent's answer normalised)."""
        if prediction is None:
            return 0.0
        if (kind or self.answer_kind) == "choice":
            return float(prediction == question_gold)
        return float(any(open_matches(c, question_gold) for c in normalise_candidate(prediction)))

    # ------------------------------------------------------------------ results

    def derived_metrics(self, runs) -> list[str]:
        """Δknowledge for each normal run and question-only run of the same model."""
        normal, question_only = [], []
        for name, (card, config) in runs.items():
            (question_only if config.get("variant") == QUESTION_ONLY else normal).append((name, card, config))
        lines = []
        for name_b, card_b, config_b in question_only:
            for name_a, card_a, config_a in normal:
                model = config_a.get("model") or card_a.model
                if model != (config_b.get("model") or card_b.model):
                    continue
                post, pre = _adaptation(card_a), _adaptation(card_b)
                if post is not None and pre is not None:
                    lines.append(_delta_sentence(model, name_a, post, name_b, pre))
        return lines

    # ------------------------------------------------------------------ fetching

    def download(self, directory, *, fetch=True, extract=True, revision=None, progress=True, console=None):
        """The hub snapshot, every video zip unpacked into it, then verified (both video layouts)."""
        from eval.benchmarks.videommmu.download import download_dataset

        root = Path(directory)
        archives, written, verified = download_dataset(root, revision=revision, fetch=fetch, extract=extract,
                                                       progress=progress, console=console)
        return DownloadOutcome(
            root=root, videos_dir=root, video_files=verified.video_files,
            questions_file=root if verified.questions else None, referenced=verified.referenced,
            missing=verified.missing, details={"archives": [a.name for a in archives], "extracted_files": written},
        )


def _adaptation(card: Any) -> Any:
    """A scorecard's Adaptation group, when it scored any question."""
    try:
        group = card.group("track", ADAPTATION)
    except KeyError:
        return None
    return group if group.n and group.accuracy is not None else None


def _delta_sentence(model: str, name_a: str, post: Any, name_b: str, pre: Any) -> str:
    delta = delta_knowledge(post.accuracy, pre.accuracy)
    a, b = 100 * post.accuracy, 100 * pre.accuracy
    inputs = f"Adaptation {a:.2f}% with the video ({name_a}, n={post.n}), {b:.2f}% question-only ({name_b}, n={pre.n})"
    if delta is None:
        line = f"Δknowledge of {model}: undefined, the question-only run got every Adaptation question right; {inputs}"
    else:
        line = f"Δknowledge of {model}: {delta:+.1f}% = ({a:.2f} − {b:.2f}) / (100 − {b:.2f}) × 100; {inputs}"
    if post.n != pre.n:
        line += "; the runs scored different numbers of questions: compare runs over the same questions"
    return line
