"""MMR-V (Zhu et al., 2025): 1,257 multiple-choice questions (up to 12 options, A-L) on 317 videos.

Its official end-to-end protocol, reproduced exactly (see the benchmark's
``evaluation/server_evaluation_on_MMR.py``):

- frames: indices ``numpy.linspace(0, n_frames - 1, N, dtype=int)``, N = 32;
- each frame JPEG-encoded at full resolution with PIL's default quality
  (``ImagePart.from_array`` defaults), sent as a base64 data URL;
- one user message: one text part, the template (``prompts/mmrv_direct.txt``,
  or ``mmrv_cot.txt``) filled with the question and Python's ``str()`` of the
  options list, plus a trailing space, then the N images in time order,
  without labels; no system message;
- no temperature or max_tokens unless the user sets them (server defaults).

Answers are read with ``extract.extract_answer`` (the last ``[[X]]`` among
the question's letters by default; the official first-match rule with
``strict_official``). Rows carry the official fields ``<model>_raw_response``
and ``<model>_response: {"final_answer": X}`` so MMR-V's own scripts read them.
"""

from __future__ import annotations

from typing import Any

from eval.benchmarks.base import Benchmark, Extraction, Grouping, Reference, register_benchmark
from eval.benchmarks.mmr_v.categories import ALL_L2
from eval.benchmarks.mmr_v.extract import extract_answer
from eval.benchmarks.mmr_v.records import HUB_DATASET, normalise_record

DIRECT_PROMPT = "mmrv_direct"
COT_PROMPT = "mmrv_cot"
RAW_SUFFIX = "_raw_response"
ANSWER_SUFFIX = "_response"


@register_benchmark
class MMRV(Benchmark):
    name = "mmr_v"
    title = "MMR-V"
    hub_dataset = HUB_DATASET
    answer_kind = "choice"
    default_frames = 32
    groupings = (
        Grouping("category", "Implicit / Explicit", order=("implicit", "explicit"),
                 labels={"implicit": "Implicit", "explicit": "Explicit"}, closed=True, headline=True),
        Grouping("l2", "ability (L2)", order=ALL_L2, browse=False),
        Grouping("video_type", "video type"),
    )
    # The paper's reported accuracies (v1; 32 frames), not runs of ours.
    references = (
        Reference("o4-mini", 52.5, {"Implicit": 54.6, "Explicit": 47.1}, "32 frames"),
        Reference("Gemini-2.5-Flash", 51.2, {"Implicit": 52.9, "Explicit": 46.9}, "32 frames"),
        Reference("GPT-4o", 44.0, {"Implicit": 46.6, "Explicit": 37.6}, "32 frames"),
        Reference("Human", 86.0, {"Implicit": 80.6, "Explicit": 91.2}, "200-question subset"),
    )
    reference_source = "MMR-V paper (v1), full benchmark of 1,257 questions; reported, not run here"

    def normalise(self, record, index, *, videos_dir, source):
        return normalise_record(record, index, videos_dir=videos_dir, source=source)

    def row_fields(self, question) -> dict[str, Any]:
        return {key: question.groups.get(key, "") for key in ("video_type", "l2", "l3", "category")}

    # -- the official protocol

    def prompt_names(self, *, cot: bool = False) -> list[str]:
        return [COT_PROMPT if cot else DIRECT_PROMPT]

    def build_messages(self, question, images, *, cot: bool = False):
        from agent.backends.base import Message, TextPart
        from prompts import load_prompt

        template = load_prompt(COT_PROMPT if cot else DIRECT_PROMPT).text
        text = template.format(question=question.question, options=str(official_options(question))) + " "
        parts: list = [TextPart(text=text)]
        parts.extend(self.image_parts(images))
        return [Message(role="user", content=parts)]

    def frame_renderer(self):
        from tools.rendering import Rendering

        return Rendering()  # full resolution, PIL's default JPEG

    def generation_settings(self, base):
        # the official script sends neither temperature nor max_tokens
        return base.model_copy(update={"temperature": None, "max_tokens": None})

    def extract(self, text, question, *, strict_official: bool = False) -> Extraction:
        found = extract_answer(text, question.letters, strict_official=strict_official)
        return Extraction(found.letter, found.rule)

    def official_fields(self, model: str, raw_response: str, prediction: Any) -> dict[str, Any]:
        name = model or "model"
        fields: dict[str, Any] = {f"{name}{RAW_SUFFIX}": raw_response}
        if prediction is not None:
            fields[f"{name}{ANSWER_SUFFIX}"] = {"final_answer": prediction}
        return fields


    def official_models(self, records):
        names: set[str] = set()
        for record in records:
            if isinstance(record, dict):
                names.update(k[: -len(RAW_SUFFIX)] for k in record if k.endswith(RAW_SUFFIX) and len(k) > len(RAW_SUFFIX))
        return sorted(names)

    def official_items(self, records, model, *, extraction, source):
        """MMR-V's result files: each record with ``<model>_raw_response`` and usually
        ``<model>_response: {"final_answer": X}``; the stored answer wins, as the authors' scoring does."""
        from eval.dataset import RowError
        from eval.results import ScoredItem
        from sleuth.answers import parse_letter

        items, invalid = [], []
        raw_key, answer_key = f"{model}{RAW_SUFFIX}", f"{model}{ANSWER_SUFFIX}"
        for index, record in enumerate(records):
            try:
                question = self.normalise(record, index, videos_dir=None, source=source)
            except RowError as exc:
                invalid.append(str(exc))
                continue
            stored, raw = record.get(answer_key), record.get(raw_key)
            if isinstance(stored, dict) and stored.get("final_answer") is not None:
                prediction = parse_letter(str(stored["final_answer"]))
                rule = "stored" if prediction is not None else "none"
            elif isinstance(raw, str):
                found = self.extract(raw, question, strict_official=(extraction == "official"))
                prediction, rule = found.value, found.rule
            else:
                prediction, rule = None, "none"
            items.append(ScoredItem(
                question_id=question.question_id, video=question.video, benchmark=self.name,
                groups={g.key: question.groups[g.key] for g in self.groupings if question.groups.get(g.key)},
                gold=question.answer, prediction=prediction, correct=prediction == question.answer,
                score=float(prediction == question.answer), extraction=rule, flags=list(question.flags), model=model,
            ))
        return items, invalid

    def download(self, directory, *, fetch=True, extract=True, revision=None, progress=True, console=None):
        """The hub snapshot, its ``videos.tar.part.*`` joined and extracted, then verified."""
        from eval.benchmarks.base import DownloadOutcome
        from eval.benchmarks.mmr_v.download import download_dataset

        summary = download_dataset(directory, revision=revision, fetch=fetch, extract=extract, progress=progress,
                                   console=console)
        verify = summary.verify
        return DownloadOutcome(
            root=summary.root, videos_dir=verify.videos_dir, video_files=verify.video_files,
            questions_file=verify.questions_file, referenced=verify.referenced, missing=list(verify.missing),
            details={"parts": [p.name for p in summary.parts], "extracted_files": summary.extracted},
        )


def official_options(question) -> list[str]:
    """The options exactly as the record gives them (``str()`` of this list goes into the prompt)."""
    raw = question.record.get("options") if question.record else None
    if isinstance(raw, list) and raw and all(isinstance(o, str) for o in raw) and len(raw) == len(question.options):
        return raw
    return question.options


def load_questions(source, videos_dir=None):
    """MMR-V questions from ``source`` (a file, a folder, ``hf://...``; None: the hub)."""
    return MMRV().load(source, videos_dir)
