"""MMR-V's records: field names, normalisation and keys.

What real records contain and how it is normalised:

- ``correctAnswer`` as ``"(B)"``, ``"(B) "``, ``"B"`` or ``"(B) full option text"`` -> ``"B"``;
- ``videoType`` in any casing -> ``Art``, ``Life``, ``TV``, ``Film``, ``Animation``,
  ``Philosophy``; the records' ``movie`` stays its own type, spelt ``Movie``;
- at most 12 options (A-L);
- the key is ``question_idx`` when the record has one (question texts repeat
  across videos), else a stable hash of (video, question, options).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eval.benchmarks.mmr_v.categories import category_of, normalise_l2, normalise_l3, normalise_video_type
from eval.dataset import (
    Question,
    RowError,
    checked_video,
    choice_answer,
    normalise_options,
    resolve_video,
    stable_key,
)

HUB_DATASET = "JokerJan/MMR-VBench"
MAX_OPTIONS = 12  # A-L

# Field names as MMR-V's records spell them, then tolerated alternatives.
FIELDS: dict[str, tuple[str, ...]] = {
    "video": ("video", "video_name", "video_path"),
    "question": ("question",),
    "options": ("options", "choices"),
    "answer": ("correctAnswer", "answer", "correct_answer"),
    "video_type": ("videoType", "video_type"),
    "l2": ("abilityType_L2", "l2"),
    "l3": ("abilityType_L3", "l3"),
    "key": ("question_idx", "question_id"),
}


def field(record: dict[str, Any], name: str) -> Any:
    for alias in FIELDS[name]:
        if alias in record and record[alias] is not None:
            return record[alias]
    return None


def key_of(record: dict[str, Any]) -> str | None:
    raw = field(record, "key")
    if raw is None or isinstance(raw, (dict, list)):
        return None
    text = str(raw).strip()
    return text or None


def normalise_record(record: Any, index: int, *, videos_dir: Path | None = None, source: str = "") -> Question:
    """Validate and normalise one raw MMR-V record; raises ``RowError`` naming the row."""
    if not isinstance(record, dict):
        raise RowError(index, None, f"expected an object, got {type(record).__name__}", source=source)
    key = key_of(record)
    missing = [name for name in ("video", "question", "options", "answer") if field(record, name) in (None, "")]
    if missing:
        raise RowError(index, key, f"missing field(s): {', '.join(FIELDS[m][0] for m in missing)}", source=source)
    video = str(field(record, "video")).strip()
    question = str(field(record, "question"))
    try:
        options, letters = normalise_options(field(record, "options"), max_options=MAX_OPTIONS)
        answer, flags = choice_answer(field(record, "answer"), letters, field="correctAnswer")
        checked_video(video)
    except ValueError as exc:
        raise RowError(index, key, str(exc), source=source) from None
    l2 = normalise_l2(field(record, "l2"))
    return Question(
        question_id=key or stable_key(video, question, options),
        video=video,
        video_path=resolve_video(videos_dir, video) if videos_dir is not None else None,
        question=question,
        options=options,
        letters=letters,
        answer=answer,
        groups={
            "video_type": normalise_video_type(field(record, "video_type")),
            "l2": l2,
            "l3": normalise_l3(field(record, "l3")),
            "category": category_of(l2),
        },
        flags=flags,
        record=record,
    )
