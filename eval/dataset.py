"""Questions, whatever the benchmark: the generic record readers and the ``Question`` model.

Sources: a local JSON file (a list of records, or ``{"data": [...]}``), JSONL,
parquet (needs ``pyarrow``), a folder holding one such file (what
``sleuth data download`` leaves), or the hub (``hf://<dataset>``, needs the
``hub`` extra: ``pip install 'sleuth[hub]'``). Each benchmark
(``eval.benchmarks``) turns one raw record into a ``Question``; the rules
every benchmark shares live here:

- options as ``"(A) text"`` (options without a letter marker get one, in
  order; see ``sleuth.answers``);
- ``video`` must be a path relative to the videos folder (``--videos``) that
  stays inside it. This is checked on the text alone (``..`` is resolved
  before any symlink is followed), so symlinks placed inside the folder work;
- a gold letter the options do not offer is kept, as official scripts that
  compare letters keep it (MMR-V's question 268: gold K, options A-J; it can
  only be scored right if the model answers K): the question gets
  ``flags=["gold_not_in_options"]`` and ``LoadedDataset.flagged`` describes it.

A row that cannot be used becomes a ``RowError`` naming its position and
key; the other rows load. Missing video files are not checked here: the
preflight reports them.
"""

from __future__ import annotations

import hashlib
import json
import ntpath
import os
import posixpath
from pathlib import Path, PureWindowsPath
from typing import Any, Callable, Iterable

from pydantic import BaseModel, Field, field_validator

from sleuth.answers import LETTERS, AnswerKind, option_letter, parse_letter
from sleuth.errors import ConfigError, SleuthError

HUB_PREFIX = "hf://"
DATA_SUFFIXES = (".json", ".jsonl", ".parquet")


GOLD_NOT_IN_OPTIONS = "gold_not_in_options"

class DatasetError(SleuthError):
    """The dataset as a whole cannot be read (missing file, unreadable format)."""


class RowError(SleuthError):
    """One record cannot be used; names its position and key."""

    def __init__(self, index: int, key: str | None, reason: str, *, source: str = ""):
        where = f"{source}: " if source else ""
        ident = f"row {index}" + (f" (question {key})" if key else "")
        super().__init__(f"{where}{ident}: {reason}")
        self.index = index
        self.key = key
        self.reason = reason


class Question(BaseModel):
    """One question, normalised."""

    question_id: str
    video: str  # file name as the record gives it
    video_path: Path | None = None  # resolved against the video folder, when one was given
    question: str
    answer_kind: AnswerKind = "choice"
    options: list[str] = Field(default_factory=list)  # "(A) text", ... (choice questions)
    letters: list[str] = Field(default_factory=list)  # ["A", "B", ...], in option order
    answer: str  # the gold answer: a letter, a number as written, or text
    groups: dict[str, str] = Field(default_factory=dict)  # the benchmark's grouping values, e.g. {"l2": ...}
    flags: list[str] = Field(default_factory=list)  # data problems kept on purpose, e.g. "gold_not_in_options"
    record: dict[str, Any] = Field(default_factory=dict, repr=False)  # the source record, untouched

    @field_validator("video")
    @classmethod
    def _stays_in_folder(cls, video: str) -> str:
        relative_video_path(video)  # so that video_file() can never point outside the folder
        return video

    def video_file(self) -> Path:
        return self.video_path if self.video_path is not None else Path(relative_video_path(self.video))


class LoadedDataset(BaseModel):
    source: str
    questions: list[Question]
    invalid: list[RowError] = Field(default_factory=list)

    model_config = {"arbitrary_types_allowed": True}

    @property
    def flagged(self) -> list[str]:
        """One line per data problem kept on purpose (``Question.flags``), for reports."""
        return [f"question {q.question_id}: {_describe_flag(q, flag)}" for q in self.questions for flag in q.flags]


def _describe_flag(question: Question, flag: str) -> str:
    if flag == GOLD_NOT_IN_OPTIONS:
        return (
            f"gold {question.answer} is not among options {_letter_span(question.letters)}; "
            f"kept and scored as the official script does"
        )
    return flag


def _letter_span(letters: list[str]) -> str:
    """``A-J`` for a run of consecutive letters, else ``A, C, D``."""
    codes = [ord(x) for x in letters]
    if len(codes) > 2 and codes == list(range(codes[0], codes[0] + len(codes))):
        return f"{letters[0]}-{letters[-1]}"
    return ", ".join(letters)


# --------------------------------------------------------------------------- keys and fields


def stable_key(video: str, question: str, options: list[str]) -> str:
    """A key that does not change between runs or machines (sha1 of the identifying fields)."""
    blob = json.dumps([video, question, options], ensure_ascii=False, separators=(",", ":"))
    return "q" + hashlib.sha1(blob.encode("utf-8")).hexdigest()[:12]


def normalise_options(raw: Any, *, max_options: int = len(LETTERS)) -> tuple[list[str], list[str]]:
    """(options as "(X) text", letters); raises ``ValueError`` saying what is wrong."""
    if isinstance(raw, str):
        raise ValueError("'options' is a string, expected a list of \"(X) text\" items")
    if not isinstance(raw, (list, tuple)) or not raw:
        raise ValueError("'options' is empty or not a list")
    if len(raw) > max_options:
        raise ValueError(f"{len(raw)} options; at most {max_options} ({LETTERS[0]}-{LETTERS[max_options - 1]})")
    options: list[str] = []
    letters: list[str] = []
    for position, item in enumerate(raw):
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"option {position + 1} is empty or not text")
        text = item.strip()
        letter = option_letter(text)
        if letter is None:  # unmarked options get letters in order
            letter = LETTERS[position]
            text = f"({letter}) {text}"
        options.append(text)
        letters.append(letter)
    duplicates = sorted({x for x in letters if letters.count(x) > 1})
    if duplicates:
        raise ValueError(f"duplicate option letters {', '.join(duplicates)}")
    return options, letters


def choice_answer(raw_answer: Any, letters: list[str], *, field: str = "answer") -> tuple[str, list[str]]:
    """(gold letter, flags) of a multiple-choice question; raises ``ValueError`` when no letter can be read.

    A letter the options lack is kept and flagged (see the module docstring)."""
    answer = parse_letter(raw_answer)
    if answer is None:
        raise ValueError(f"cannot read an answer letter from {field}={raw_answer!r}")
    return answer, [GOLD_NOT_IN_OPTIONS] if answer not in letters else []


def checked_video(video: str) -> str:
    """``video`` when it stays inside the videos folder; raises ``ValueError`` otherwise."""
    relative_video_path(video)
    return video


def relative_video_path(video: str) -> str:
    """A record's ``video`` normalised (``a/./b/../c.mp4`` -> ``a/c.mp4``), for joining to the videos folder.

    Raises ``ValueError`` when it would leave the folder: an absolute path
    (``/etc/passwd``, ``C:\\x``) or one whose ``..`` climb above it. Decided
    on the text alone, read with both ``/`` and ``\\`` as separators (a
    dataset written on either system must not escape on the other). The
    ``..`` are resolved here, before the OS sees the path, so ``link/..``
    cannot step outside through a symlink, while symlinks the user placed in
    the folder keep working.
    """
    if "\0" in video:
        raise ValueError(f"video path {video!r} contains a NUL character")
    leaves = f"video path {video!r} leaves the videos folder; dataset video fields must be relative to --videos"
    windows = PureWindowsPath(video)
    if windows.drive or windows.root:  # "/x" and "\\x" have a root, "C:x" a drive
        raise ValueError(leaves)
    normal = {flavour: flavour.normpath(video) for flavour in (posixpath, ntpath)}
    if any(text.split(flavour.sep)[0] == ".." for flavour, text in normal.items()):
        raise ValueError(leaves)
    if "." in normal.values():
        raise ValueError(f"video path {video!r} names the videos folder itself, not a file in it")
    return os.path.normpath(video)


def resolve_video(videos_dir: Path, video: str) -> Path:
    """``DIR/<video>``, or ``DIR/videos/<video>`` (the layout the benchmark's archive extracts to).

    Never a path outside ``DIR``: ``video`` goes through ``relative_video_path``
    (``ValueError`` for an absolute path or one that climbs out).
    """
    relative = relative_video_path(video)
    direct = videos_dir / relative
    if direct.exists():
        return direct
    nested = videos_dir / "videos" / relative
    return nested if nested.exists() else direct


# --------------------------------------------------------------------------- readers


def _read_json(path: Path) -> list[Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if isinstance(data, dict):
        for name in ("data", "questions", "test"):
            if isinstance(data.get(name), list):
                return data[name]
        raise DatasetError(f"{path}: a JSON object without a 'data' list of questions")
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected a list of question records")
    return data


def _read_jsonl(path: Path) -> list[Any]:
    rows: list[Any] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not UTF-8 text") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            # keep the position: the normaliser turns it into a RowError naming the line
            rows.append(_Unparsable(f"line {number} is not valid JSON ({exc.msg})"))
    return rows


def _read_parquet(path: Path) -> list[Any]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(f"{path}: reading parquet needs pyarrow (pip install pyarrow)") from None
    try:
        return pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise DatasetError(f"{path}: not a readable parquet file ({exc})") from None


class _Unparsable:
    def __init__(self, reason: str):
        self.reason = reason


def _read_hub(name: str) -> list[Any]:
    try:
        import datasets
    except ImportError:
        raise ConfigError(
            f"loading {name} from the hub needs the 'datasets' package: pip install 'sleuth[hub]' "
            f"(or run `sleuth data download DIR` and pass --data DIR)"
        ) from None
    try:
        return list(datasets.load_dataset(name, split="test"))
    except Exception as exc:
        raise DatasetError(
            f"could not load {name} from the hub ({type(exc).__name__}: {exc}); offline? "
            f"run `sleuth data download DIR` where there is network and pass --data DIR"
        ) from None


def find_data_file(folder: Path) -> Path:
    """The questions file inside a folder (e.g. a ``sleuth data download`` snapshot)."""
    candidates = sorted(
        p for p in folder.rglob("*")
        if p.suffix in DATA_SUFFIXES and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)  # e.g. the hub's .cache/
    )
    candidates = [p for p in candidates if p.name not in ("config.json", "dataset_info.json")]
    if not candidates:
        raise DatasetError(f"{folder}: no .json, .jsonl or .parquet questions file in this folder")
    if len(candidates) > 1:
        names = ", ".join(str(p.relative_to(folder)) for p in candidates[:5])
        raise DatasetError(f"{folder}: several possible questions files ({names}); pass one with --data")
    return candidates[0]


def read_records(source: str | Path) -> tuple[str, list[Any]]:
    """Raw records from a file, a folder or the hub (``hf://name``); returns (source description, records)."""
    text = str(source)
    if text.startswith(HUB_PREFIX):
        name = text[len(HUB_PREFIX):]
        return f"{HUB_PREFIX}{name}", _read_hub(name)
    path = Path(source)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    if path.is_dir():
        path = find_data_file(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        return str(path), _read_json(path)
    if suffix == ".jsonl":
        return str(path), _read_jsonl(path)
    if suffix == ".parquet":
        return str(path), _read_parquet(path)
    raise DatasetError(f"{path}: unknown format {suffix or '(no suffix)'}; expected .json, .jsonl or .parquet")


Normaliser = Callable[..., Question]  # (record, index, *, videos_dir, source) -> Question, raises RowError


def normalise_records(
    records: Iterable[Any], normalise: Normaliser, *, videos_dir: Path | None = None, source: str = ""
) -> LoadedDataset:
    questions: list[Question] = []
    invalid: list[RowError] = []
    seen: dict[str, int] = {}
    for index, record in enumerate(records):
        try:
            if isinstance(record, _Unparsable):
                raise RowError(index, None, record.reason, source=source)
            if not isinstance(record, dict):
                raise RowError(index, None, f"expected an object, got {type(record).__name__}", source=source)
            question = normalise(record, index, videos_dir=videos_dir, source=source)
            if question.question_id in seen:
                raise RowError(
                    index, question.question_id, f"duplicate key (first seen at row {seen[question.question_id]})",
                    source=source,
                )
        except RowError as exc:
            invalid.append(exc)
            continue
        seen[question.question_id] = index
        questions.append(question)
    return LoadedDataset(source=source, questions=questions, invalid=invalid)


def load_records(source: str | Path, videos_dir: str | Path | None, normalise: Normaliser) -> LoadedDataset:
    """Read ``source`` and normalise each record with a benchmark's ``normalise``.

    ``source``: a .json / .jsonl / .parquet file, a folder holding one, or
    ``hf://<dataset>``. ``videos_dir``: where the video files are (resolves
    ``Question.video_path``). Invalid rows are collected in ``.invalid``.
    """
    description, records = read_records(source)
    folder = Path(videos_dir) if videos_dir is not None else None
    if folder is not None and not folder.is_dir():
        raise DatasetError(f"{folder}: video folder not found")
    return normalise_records(records, normalise, videos_dir=folder, source=description)
