"""Video-Holmes's records (``test_Video-Holmes.json``): validation, normalisation, keys, where the clips are.

A record of the released test file (as quoted in the official repo's issue #3)::

    {"video ID": "yHioWLdgnMI", "Question ID": 394, "Question Type": "TCI",
     "Question": "...", "Options": {"A": "...", ..., "F": "..."}, "Answer": "D", "Explanation": "..."}

What the official ``evaluate.py`` does with it, and so what is kept here:

- the clip is ``<video ID>.mp4`` in the videos folder;
- ``Question`` and the ``Options`` values go into the prompt exactly as
  written (no stripping: the prompt is rendered from the untouched record);
- ``Answer`` is compared with the predicted letter as it is, so it must be
  one capital letter A-F (the only letters the official cascade can give);
  anything else is rejected here rather than scored wrong forever;
- a ``Question Type`` outside the seven is still counted in the overall,
  not in any type's column: kept, flagged ``unknown_question_type``.

Keys: the test file numbers its questions across films (394, 396, ...), but
the question-generation pipeline's per-film files and the paper's examples
restart at 1 for every film, so the key is ``<video ID>#<Question ID>``; a
record without a number gets a stable hash of (video, question, options).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from eval.dataset import GOLD_NOT_IN_OPTIONS, Question, RowError, checked_video, relative_video_path, stable_key

HUB_DATASET = "TencentARC/Video-Holmes"
QUESTIONS_FILE = "test_Video-Holmes.json"
# In the paper's main-table order (Table 2): Social Reasoning, Intention & Motive Chaining, Temporal Causal
# Inference, Timeline Analysis, Multimodal Hint Reasoning, Physical Anomaly Reasoning, Core Theme Inference.
QUESTION_TYPES: tuple[str, ...] = ("SR", "IMC", "TCI", "TA", "MHR", "PAR", "CTI")
OPTION_LETTERS: tuple[str, ...] = tuple("ABCDEF")  # all the official scorer's cascade can answer
# where ``videos.zip`` unpacks (the hub layout, as lmms-eval reads it), then the official script's ``Benchmark/videos/``
CLIP_FOLDERS: tuple[str, ...] = ("videos_cropped", "videos")
UNKNOWN_TYPE = "unknown_question_type"
REQUIRED = ("video ID", "Question", "Options", "Answer")


def key_of(record: dict[str, Any]) -> str | None:
    number, video = record.get("Question ID"), record.get("video ID")
    if number is None or isinstance(number, (bool, dict, list)) or not isinstance(video, str):
        return None
    return f"{video}#{number}"


def normalise_record(record: Any, index: int, *, videos_dir: Path | None = None, source: str = "") -> Question:
    """Validate one raw Video-Holmes record and make it a ``Question``; raises ``RowError`` saying what is wrong."""
    if not isinstance(record, dict):
        raise RowError(index, None, f"expected an object, got {type(record).__name__}", source=source)
    key = key_of(record)

    def bad(reason: str) -> RowError:
        return RowError(index, key, reason, source=source)

    missing = [name for name in REQUIRED if record.get(name) in (None, "")]
    if missing:
        raise bad(f"missing field(s): {', '.join(repr(m) for m in missing)}")
    video_id, question, raw_options, answer = (record[name] for name in REQUIRED)
    if not isinstance(video_id, str) or not video_id.strip():
        raise bad(f"'video ID' must be the clip's name as text, got {video_id!r}")
    number = record.get("Question ID")
    if isinstance(number, (bool, dict, list)):
        raise bad(f"'Question ID' must be a number or text, got {number!r}")
    if not isinstance(question, str) or not question.strip():
        raise bad("'Question' must be non-empty text")
    options, letters = _options(raw_options, bad)
    if not isinstance(answer, str) or answer not in OPTION_LETTERS:
        raise bad(f"'Answer' must be one capital letter A-F (the official scorer compares it as is), got {answer!r}")
    video = f"{video_id}.mp4"
    try:
        checked_video(video)
    except ValueError as exc:
        raise bad(str(exc)) from None

    flags = [] if answer in letters else [GOLD_NOT_IN_OPTIONS]
    question_type = record.get("Question Type")
    if question_type not in QUESTION_TYPES:
        flags.append(UNKNOWN_TYPE)
    return Question(
        question_id=key or stable_key(video, question, options),
        video=video,
        video_path=resolve_clip(videos_dir, video) if videos_dir is not None else None,
        question=question,
        options=options,
        letters=letters,
        answer=answer,
        groups={"question_type": str(question_type) if question_type else ""},
        flags=flags,
        record=record,
    )


def _options(raw: Any, bad) -> tuple[list[str], list[str]]:
    """(options as ``"(X) text"``, letters) from the ``{"A": text, ...}`` mapping, in its order."""
    if not isinstance(raw, dict) or not raw:
        raise bad(f"'Options' must be a non-empty {{\"A\": text, ...}} mapping, got {type(raw).__name__}")
    for letter, text in raw.items():
        if letter not in OPTION_LETTERS:
            raise bad(f"option key {letter!r} is not one of A-F (the official scorer reads only A-F)")
        if not isinstance(text, str) or not text.strip():
            raise bad(f"option {letter} is empty or not text")
    return [f"({letter}) {text.strip()}" for letter, text in raw.items()], list(raw)


def official_options(record: dict[str, Any]) -> str:
    """The options as the official prompt lists them: ``A: text, B: text, ...`` (record order, untouched)."""
    return ", ".join(f"{letter}: {text}" for letter, text in record["Options"].items())


def resolve_clip(videos_dir: Path, video: str) -> Path:
    """``DIR/<id>.mp4``, else ``DIR/videos_cropped/<id>.mp4``, else ``DIR/videos/<id>.mp4``; never outside ``DIR``."""
    relative = relative_video_path(video)
    candidates = [videos_dir / relative, *(videos_dir / folder / relative for folder in CLIP_FOLDERS)]
    return next((path for path in candidates if os.path.exists(path)), candidates[0])
