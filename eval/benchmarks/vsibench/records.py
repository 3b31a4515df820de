"""VSI-Bench's records: question types, tasks, normalisation, the questions file of a download.

Records follow the hub dataset ``nyu-visionx/VSI-Bench``: ``id``, ``dataset``
(``arkitscenes|scannet|scannetpp``), ``scene_name``, ``question_type``,
``question``, ``ground_truth`` (a letter for multiple-choice questions, a
number as text for numeric ones) and ``options`` (``["A. left", "B. right"]``,
null for numeric questions). The video is ``<dataset>/<scene_name>.mp4``, as
the official ``utils.vsibench_doc_to_visual`` builds it.

Normalisation is strict where the official scorer would silently score a
record 0 or crash, and says why per record: an unknown question type (the
official code raises), options without ``A.``-style letters in order (the
prompt shows them as written, so a model could not answer with a letter), a
multiple-choice ground truth that is not one letter (the official exact match
could never be 1), a numeric ground truth that is not a positive finite
number (MRA divides by it). A gold letter the options lack is kept and
flagged, as the official exact match keeps it.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Callable

from eval.dataset import (
    DatasetError,
    Question,
    RowError,
    choice_answer,
    find_data_file,
    resolve_video,
    stable_key,
)
from sleuth.answers import LETTERS, option_letter

HUB_DATASET = "nyu-visionx/VSI-Bench"
DATASETS = ("arkitscenes", "scannet", "scannetpp")
DATASET_LABELS = {"arkitscenes": "ARKitScenes", "scannet": "ScanNet", "scannetpp": "ScanNet++"}

# As the official utils.py lists them.
MCA_QUESTION_TYPES = (
    "object_rel_direction_easy",
    "object_rel_direction_medium",
    "object_rel_direction_hard",
    "object_rel_distance",
    "route_planning",
    "obj_appearance_order",
)
NA_QUESTION_TYPES = ("object_abs_distance", "object_counting", "object_size_estimation", "room_size_estimation")
REL_DIRECTION = "object_rel_direction"
REL_DIRECTION_TYPES = MCA_QUESTION_TYPES[:3]

# The 8 tasks in the paper's Table 1 order (the official aggregation's tabulated order), with its column names.
TASK_LABELS = {
    "object_counting": "Obj. Count",
    "object_abs_distance": "Abs. Dist.",
    "object_size_estimation": "Obj. Size",
    "room_size_estimation": "Room Size",
    "object_rel_distance": "Rel. Dist.",
    REL_DIRECTION: "Rel. Dir.",
    "route_planning": "Route Plan",
    "obj_appearance_order": "Appr. Order",
}
TASKS = tuple(TASK_LABELS)
REL_DIRECTION_LABELS = {t: f"Rel. Dir. ({t.rsplit('_', 1)[1]})" for t in REL_DIRECTION_TYPES}
QUESTION_TYPES = (*TASKS[:5], *REL_DIRECTION_TYPES, *TASKS[6:])

# The questions file of a download, in order of preference: the release the paper and the official
# code used, then the later full-set JSONL (never the debiased or pruned subsets unless passed by name).
QUESTION_FILES = ("test-00000-of-00001.parquet", "test.jsonl")

MIN_OPTIONS, MAX_OPTIONS = 2, 4  # A-D
_MARKER = re.compile(r"^\s*[\(\[]?\s*[A-Za-z]\s*[\)\]\.:]\s*")
REQUIRED = ("dataset", "scene_name", "question_type", "question", "ground_truth")


def task_of(question_type: str) -> str:
    """The Table 1 task of a question type (the three relative-direction sub-types are one task)."""
    return REL_DIRECTION if question_type in REL_DIRECTION_TYPES else question_type


def video_of(dataset: str, scene_name: str) -> str:
    return f"{dataset}/{scene_name}.mp4"


def questions_file(folder: Path) -> Path:
    """The questions file in a ``sleuth data download`` folder (see ``QUESTION_FILES``)."""
    for name in QUESTION_FILES:
        if (folder / name).is_file():
            return folder / name
    return find_data_file(folder)


def find_questions_file(folder: Path) -> Path | None:
    try:
        return questions_file(folder)
    except DatasetError:
        return None


def normalise_record(record: Any, index: int, *, videos_dir: Path | None = None, source: str = "") -> Question:
    """One raw VSI-Bench record -> a ``Question``; raises ``RowError`` naming the row and the reason."""
    if not isinstance(record, dict):
        raise RowError(index, None, f"expected an object, got {type(record).__name__}", source=source)
    raw_id = record.get("id")
    key = (str(raw_id).strip() or None) if isinstance(raw_id, (int, str)) and not isinstance(raw_id, bool) else None

    def fail(reason: str) -> RowError:
        return RowError(index, key, reason, source=source)

    missing = [name for name in REQUIRED if record.get(name) in (None, "")]
    if missing:
        raise fail(f"missing field(s): {', '.join(missing)}")
    dataset, question_type = record["dataset"], record["question_type"]
    if dataset not in DATASETS:
        raise fail(f"dataset {dataset!r} is not one of {', '.join(DATASETS)}")
    if question_type not in MCA_QUESTION_TYPES + NA_QUESTION_TYPES:
        raise fail(f"unknown question_type {question_type!r}; VSI-Bench has {', '.join(QUESTION_TYPES)}")
    scene = record["scene_name"]
    # one file name, so that the video path cannot leave the videos folder
    if isinstance(scene, bool) or not isinstance(scene, (str, int)) or not re.fullmatch(r"[\w.-]+", str(scene)) \
            or str(scene) in (".", ".."):
        raise fail(f"scene_name {scene!r} is not a plain file name")
    question = record["question"]
    if not isinstance(question, str) or not question.strip():
        raise fail("question is empty or not text")
    video = video_of(dataset, str(scene))

    gold = record["ground_truth"]
    options: list[str] = []
    letters: list[str] = []
    flags: list[str] = []
    if question_type in MCA_QUESTION_TYPES:
        kind = "choice"
        options, letters = _options(record.get("options"), fail)
        # the official exact match compares the whole ground truth with one reply token, case-insensitively
        if not isinstance(gold, str) or not re.fullmatch(r"[A-Za-z]", gold):
            raise fail(f"ground_truth {gold!r} is not an option letter")
        answer, flags = choice_answer(gold, letters, field="ground_truth")
    else:
        kind = "number"
        value = _number(gold)
        if value is None:
            raise fail(f"ground_truth {gold!r} is not a number")
        if value <= 0:
            raise fail(f"ground_truth {gold!r} is not positive (MRA divides by it)")
        answer = str(gold).strip()
    return Question(
        question_id=key or stable_key(video, question, options),
        video=video,
        video_path=resolve_video(videos_dir, video) if videos_dir is not None else None,
        question=question,
        answer_kind=kind,
        options=options,
        letters=letters,
        answer=answer,
        groups={"task": task_of(question_type), "question_type": question_type, "dataset": dataset},
        flags=flags,
        record=record,
    )


def _options(raw: Any, fail: Callable[[str], RowError]) -> tuple[list[str], list[str]]:
    """(``"(A) text"`` options, letters) of ``["A. text", ...]``; the prompt uses the raw list."""
    if not isinstance(raw, (list, tuple)) or not all(isinstance(o, str) and o.strip() for o in raw):
        raise fail(f"options must be a list of \"A. text\" strings, got {raw!r}")
    if not MIN_OPTIONS <= len(raw) <= MAX_OPTIONS:
        raise fail(f"{len(raw)} options; VSI-Bench questions have {MIN_OPTIONS} to {MAX_OPTIONS} (A-D)")
    letters = [option_letter(o) for o in raw]
    if None in letters:
        unmarked = letters.index(None)
        raise fail(f"option {unmarked + 1} ({raw[unmarked]!r}) has no letter marker such as \"A. \"")
    expected = list(LETTERS[: len(raw)])
    if letters != expected:
        raise fail(f"options are lettered {', '.join(map(str, letters))}; expected {', '.join(expected)} in order")
    return [f"({letter}) {_MARKER.sub('', o).strip()}" for letter, o in zip(expected, raw)], expected


def _number(value: Any) -> float | None:
    """``float(value)`` as the official ``to_float`` reads it, when finite."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
