"""Video-MMMU's records: tracks, subjects and disciplines, the files they come in, and normalisation.

Follows the official fork's ``lmms_eval/tasks/videommmu/utils.py``: the
subject is ``"_".join(id.split("_")[1:-1])``, its discipline the video folder
``get_cache_dir`` names (``<Discipline>/<id>.mp4``; the question-only videos
``question_only/<id>_image.mp4``), and ``question_type`` routes a question:
``"multiple-choice"`` to the option-letter parser, anything else to the open
parser (``doc.get("question_type", "None")``).

Where the records come from, with the track each row belongs to:

- the hub: configs ``Perception``, ``Comprehension``, ``Adaptation`` (split ``test``);
- the official repo's JSON (``data/<track>_video.json``: ``{"<Track>": {"<idx>": record}}``),
  or one file holding several of those track keys (keys starting with ``_`` are notes);
- a folder (what ``sleuth data download`` leaves): one file per track, found by a
  folder or file named after it (``Perception/test-00000-of-00001.parquet``);
- JSON lists, JSONL or parquet whose rows carry a ``track`` field.

The track is added to each record as ``track``; the rest stays as the source gives it.

Data problems, decided as the official code decides them (kept, flagged):

- ``question_type: null`` (Adaptation ``validation_Accounting_13``, gold "C"):
  the official prompt treats it as open (open-ended prompt, no options shown) and
  so does the scorer; kept as an open text question, flagged ``question_type_null``;
- an open question whose gold is an option letter and whose options are missing
  (``validation_Basic_Medical_Science_10``, ``validation_Physics_21``): kept,
  scored by the open rule (a reply "C" is right, "(C)" is not), flagged
  ``open_letter_answer``;
- an open gold written as a list in a string (``validation_Math_15``:
  ``"['24/7', '3.429', '3.43]"``): the official scorer compares it as one string,
  so no reply can match it in practice; kept, flagged ``gold_list_text``;
- up to 26 options (a Perception question has 14, A-N): the official code letters
  any number, so they are not a problem;
- options already lettered ``"A. ..."`` (Perception ``validation_Economics_2``): the
  prompt keeps them as they are, as the official ``parse_options`` does.

Records without ``question_type`` (the repo JSON's Perception and Comprehension;
the hub rows carry it) are multiple choice when they have options, else open.
A record the official code would crash on (an id without a known subject, a
non-text question) is rejected with the reason.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from eval.benchmarks.videommmu.parsing import check_is_number, option_letters
from eval.dataset import (
    DATA_SUFFIXES,
    GOLD_NOT_IN_OPTIONS,
    DatasetError,
    Question,
    RowError,
    read_records,
    resolve_video,
)
from sleuth.errors import ConfigError

HUB_DATASET = "lmms-lab/VideoMMMU"  # the official fork's dataset_path (lmms-eval HEAD reads lmms-eval/VideoMMMU)
TRACKS = ("Perception", "Comprehension", "Adaptation")
ADAPTATION = "Adaptation"
MULTIPLE_CHOICE = "multiple-choice"
OPEN = "open"
QUESTION_ONLY_FOLDER = "question_only"

# get_cache_dir: subject -> discipline (also the video folder); the paper's Table 2 order
DISCIPLINES: dict[str, tuple[str, ...]] = {
    "Art": ("Art", "Art_Theory", "Design", "Music"),
    "Business": ("Accounting", "Economics", "Finance", "Manage", "Marketing"),
    "Science": ("Biology", "Chemistry", "Geography", "Math", "Physics"),
    "Medicine": ("Basic_Medical_Science", "Clinical_Medicine", "Diagnostics_and_Laboratory_Medicine", "Pharmacy",
                 "Public_Health"),
    "Humanities": ("History", "Literature", "Sociology", "Psychology"),
    "Engineering": ("Agriculture", "Architecture_and_Engineering", "Computer_Science", "Electronics",
                    "Energy_and_Power", "Materials", "Mechanical_Engineering"),
}
DISCIPLINE_OF = {subject: discipline for discipline, subjects in DISCIPLINES.items() for subject in subjects}
SUBJECTS = tuple(DISCIPLINE_OF)

FLAG_TYPE_NULL = "question_type_null"
FLAG_OPEN_LETTER = "open_letter_answer"
FLAG_GOLD_LIST = "gold_list_text"

_ID = re.compile(r"^[^_]+_.+_\d+$")  # extract_subset_name's pattern: <split>_<subject>_<number>


# --------------------------------------------------------------------------- reading


def track_of_path(path: Path, root: Path) -> str | None:
    """The track a file holds, from a folder under ``root`` named after it or the file's name
    (``perception_video.json``)."""
    names = [part.lower() for part in path.relative_to(root).parts[:-1]]
    stem = path.name.split(".")[0].lower()
    for track in TRACKS:
        if track.lower() in names or stem in (track.lower(), f"{track.lower()}_video"):
            return track
    return None


def _tagged(records: list[Any], track: str | None) -> list[Any]:
    if track is None:
        return records
    return [{**r, "track": r.get("track", track)} if isinstance(r, dict) else r for r in records]


def _by_track_json(path: Path) -> list[Any] | None:
    """Records of an official-layout JSON file (``{"<Track>": {idx: record} | [records]}``), else None."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None  # read_records says what is wrong with it
    if not isinstance(data, dict) or not any(key in TRACKS for key in data):
        return None
    unknown = [key for key in data if key not in TRACKS and not key.startswith("_")]
    if unknown:
        raise DatasetError(f"{path}: unknown track(s) {', '.join(map(repr, unknown))}; expected {', '.join(TRACKS)}")
    records: list[Any] = []
    for track in TRACKS:
        rows = data.get(track, [])
        rows = list(rows.values()) if isinstance(rows, dict) else rows
        if not isinstance(rows, list):
            raise DatasetError(f"{path}: {track} holds {type(rows).__name__}, expected records")
        records.extend(_tagged(rows, track))
    return records


def read_file(path: Path, root: Path | None = None) -> list[Any]:
    """A file's records, each with its track (a single file's own folders say nothing: ``root`` is its folder)."""
    if path.suffix.lower() == ".json":
        records = _by_track_json(path)
        if records is not None:
            return records
    _, records = read_records(path)
    return _tagged(records, track_of_path(path, root or path.parent))


def read_folder(folder: Path) -> list[Any]:
    """One file per track under ``folder`` (hidden folders, e.g. the hub's ``.cache``, ignored)."""
    files = sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in DATA_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    by_track: dict[str, list[Path]] = {}
    for path in files:
        track = track_of_path(path, folder)
        if track is not None:
            by_track.setdefault(track, []).append(path)
    if not by_track:
        raise DatasetError(f"{folder}: no Video-MMMU question files (a {', '.join(TRACKS)} folder or file)")
    records: list[Any] = []
    for track in TRACKS:
        paths = by_track.get(track, [])
        if len(paths) > 1:
            names = ", ".join(str(p.relative_to(folder)) for p in paths)
            raise DatasetError(f"{folder}: several {track} files ({names}); pass one with --data")
        if paths:
            records.extend(read_file(paths[0], folder))
    return records


def read_hub(name: str, tracks: tuple[str, ...]) -> list[Any]:
    try:
        import datasets
    except ImportError:
        raise ConfigError(
            f"loading {name} from the hub needs the 'datasets' package: pip install 'sleuth[hub]' "
            f"(or run `sleuth data download DIR --benchmark videommmu` and pass --data DIR)"
        ) from None
    records: list[Any] = []
    for track in tracks:
        try:
            rows = datasets.load_dataset(name, track, split="test")
        except Exception as exc:  # gated, offline, renamed: the hub raises many types
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DatasetError(
                f"could not load {name} ({track}) from the hub ({type(exc).__name__}: {message}); it is gated: "
                f"accept its conditions on huggingface.co and log in; offline? run `sleuth data download DIR "
                f"--benchmark videommmu` where there is network and pass --data DIR"
            ) from None
        records.extend(_tagged([dict(row) for row in rows], track))
    return records


# --------------------------------------------------------------------------- normalising


def subject_of(video_id: str) -> str:
    return "_".join(video_id.split("_")[1:-1])


def official_options(options: list[str]) -> str:
    """The official ``parse_options``: ``"A. text"`` lines, or the options as they are when all are so lettered."""
    letters = option_letters(len(options))
    if all(option.startswith(f"{letter}.") for option, letter in zip(options, letters)):
        return "\n".join(options)
    return "\n".join(f"{letter}. {option}" for letter, option in zip(letters, options))


def _labelled(options: list[str]) -> list[str]:
    """Options as sleuth shows them (``"(A) text"``), without an official ``"A. "`` prefix."""
    letters = option_letters(len(options))
    prefixed = all(option.startswith(f"{letter}.") for option, letter in zip(options, letters))
    return [f"({letter}) {option[2:].strip() if prefixed else option}" for letter, option in zip(letters, options)]


def normalise_record(record: dict[str, Any], index: int, *, videos_dir: Path | None, source: str,
                     question_only: bool = False) -> Question:
    """One record -> a ``Question``; raises ``RowError`` with the reason (see the module docstring)."""
    raw_id = record.get("id")
    key = str(raw_id) if isinstance(raw_id, (str, int)) else None

    def reject(reason: str) -> RowError:
        return RowError(index, key, reason, source=source)

    track = record.get("track")
    if track not in TRACKS:
        raise reject(f"track {track!r} is not one of {', '.join(TRACKS)} "
                     f"(name it by the file, its folder or a 'track' field)")
    if not isinstance(raw_id, str) or not _ID.match(raw_id):
        raise reject(f"id {raw_id!r} is not <split>_<subject>_<number>, which the official code needs")
    subject = subject_of(raw_id)
    if subject not in DISCIPLINE_OF:
        raise reject(f"subject {subject!r} (from the id) is none of Video-MMMU's 30; the official code stops here")
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise reject("'question' is missing or not text")
    options = record.get("options")
    if options is None:
        options = []
    if not isinstance(options, (list, tuple)) or not all(isinstance(o, str) for o in options):
        raise reject("'options' is not a list of texts")
    if len(options) > 26:
        raise reject(f"{len(options)} options; at most 26 (A-Z)")
    answer = record.get("answer")
    if not isinstance(answer, str) or not answer.strip():
        raise reject("'answer' is missing or not text")

    flags: list[str] = []
    if "question_type" in record:
        question_type = record["question_type"]
        if question_type not in (MULTIPLE_CHOICE, OPEN, None):
            raise reject(f"question_type {question_type!r} is not 'multiple-choice', 'open' or null")
        if question_type is None:
            flags.append(FLAG_TYPE_NULL)
    else:
        question_type = MULTIPLE_CHOICE if options else OPEN
    if question_type == MULTIPLE_CHOICE:
        if not options:
            raise reject("a multiple-choice question without options")
        letters = option_letters(len(options))
        if not re.fullmatch(r"[A-Z]", answer):
            # the official scorer compares the parsed letter with the gold string: this gold could never match
            raise reject(f"multiple-choice answer {answer!r} is not an option letter")
        if answer not in letters:
            flags.append(GOLD_NOT_IN_OPTIONS)  # kept, as the official scorer keeps it (it can never be right)
        kind, shown, letters_shown = "choice", _labelled(list(options)), letters
    else:
        kind = "number" if check_is_number(answer.strip()) else "text"
        shown, letters_shown = [], []
        if question_type == OPEN and not options and re.fullmatch(r"[A-Z]", answer):
            flags.append(FLAG_OPEN_LETTER)
        if answer.strip().startswith("["):
            flags.append(FLAG_GOLD_LIST)

    discipline = DISCIPLINE_OF[subject]
    video = f"{QUESTION_ONLY_FOLDER}/{raw_id}_image.mp4" if question_only else f"{discipline}/{raw_id}.mp4"
    return Question(
        question_id=f"{track}/{raw_id}",  # ids repeat across tracks (one video serves all three)
        video=video,
        video_path=resolve_video(videos_dir, video) if videos_dir is not None else None,
        question=question,
        answer_kind=kind,
        options=shown,
        letters=letters_shown,
        answer=answer,
        groups={"track": track, "discipline": discipline, "subject": subject},
        flags=flags,
        record=record,
    )
