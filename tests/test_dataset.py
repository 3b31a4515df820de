"""Loading, normalising and validating MMR-V questions (real sample records + crafted bad rows)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from eval.benchmarks.mmr_v.categories import EXPLICIT_L2, IMPLICIT_L2, category_of, normalise_video_type
from sleuth.answers import parse_letter
from eval.dataset import (
    DatasetError,
    Question,
    RowError,
    stable_key,
)
from eval.benchmarks.mmr_v import load_questions
from sleuth.errors import ConfigError

SAMPLE = Path(__file__).parent / "data" / "mmrv_sample_questions.json"


@pytest.fixture(scope="module")
def sample_records() -> list[dict]:
    return json.loads(SAMPLE.read_text(encoding="utf-8"))


def _record(**overrides) -> dict:
    record = {
        "video": "clip.mp4",
        "videoType": "life",
        "question": "What happens?",
        "options": ["(A) one", "(B) two", "(C) three"],
        "correctAnswer": "(B) ",
        "abilityType_L2": "Causal Reasoning",
        "abilityType_L3": "Backward Reasoning",
    }
    record.update(overrides)
    return record


def _write(tmp_path: Path, name: str, payload) -> Path:
    path = tmp_path / name
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- the real sample


def test_sample_loads_and_normalises(sample_records):
    dataset = load_questions(SAMPLE)
    # 61 records, one of which repeats an earlier record word for word (same video, question, options)
    assert len(dataset.questions) == 60
    assert len(dataset.invalid) == 1
    problem = dataset.invalid[0]
    assert problem.index == 33 and "duplicate" in problem.reason and "row 6" in problem.reason
    assert sample_records[33]["question"] == sample_records[6]["question"]
    assert dataset.flagged == []  # every sample gold is among its options

    kept = [r for i, r in enumerate(sample_records) if i != 33]
    for record, question in zip(kept, dataset.questions, strict=True):
        assert question.question == record["question"]
        assert question.answer == record["correctAnswer"].strip()[1]  # "(G) " -> "G"
        assert question.letters == [o[1] for o in record["options"]]
        assert question.options == [o.strip() for o in record["options"]]
        assert question.video == record["video"]
        assert question.groups["l2"] == record["abilityType_L2"]
        assert question.groups["category"] == ("implicit" if record["abilityType_L2"] in IMPLICIT_L2 else "explicit")

    types = Counter(q.groups["video_type"] for q in dataset.questions)
    # raw: Animation, movie, Life, TV, art, Art, life, philosophy -> one spelling each
    assert set(types) == {"Animation", "Movie", "Life", "TV", "Art", "Philosophy"}
    assert types["Art"] == 6 and types["Life"] == 12 and types["Movie"] == 11
    assert Counter(q.groups["category"] for q in dataset.questions) == {"explicit": 40, "implicit": 20}


def test_sample_keys_are_stable_hashes_without_question_idx():
    first = load_questions(SAMPLE).questions
    second = load_questions(SAMPLE).questions
    assert [q.question_id for q in first] == [q.question_id for q in second]
    assert len({q.question_id for q in first}) == len(first)
    q = first[0]
    assert q.question_id == stable_key(q.video, q.question, q.options)


def test_question_idx_is_the_key_when_present(tmp_path):
    # question text repeats across videos; question_idx keeps them apart
    records = [_record(question_idx=7, video="a.mp4"), _record(question_idx=8, video="b.mp4")]
    dataset = load_questions(_write(tmp_path, "q.json", records))
    assert [q.question_id for q in dataset.questions] == ["7", "8"]


def test_video_paths_resolve_against_the_folder(tmp_path):
    videos = tmp_path / "videos_root"
    (videos / "videos").mkdir(parents=True)
    (videos / "flat.mp4").write_bytes(b"x")
    (videos / "videos" / "nested.mp4").write_bytes(b"x")
    records = [_record(video="flat.mp4"), _record(video="nested.mp4", question="Q2"), _record(video="gone.mp4", question="Q3")]
    dataset = load_questions(_write(tmp_path, "q.json", records), videos)
    paths = [q.video_path for q in dataset.questions]
    assert paths[0] == videos / "flat.mp4"
    assert paths[1] == videos / "videos" / "nested.mp4"
    assert paths[2] == videos / "gone.mp4"  # missing videos are the runner's business (an error row)
    assert not dataset.invalid


# --------------------------------------------------------------------------- formats


def test_json_with_data_key_and_jsonl(tmp_path):
    wrapped = _write(tmp_path, "wrapped.json", {"data": [_record()]})
    assert len(load_questions(wrapped).questions) == 1

    lines = "\n".join([json.dumps(_record()), "{not json", json.dumps(_record(question="Other?"))]) + "\n"
    dataset = load_questions(_write(tmp_path, "q.jsonl", lines))
    assert len(dataset.questions) == 2
    assert len(dataset.invalid) == 1
    assert "row 1" in str(dataset.invalid[0]) and "line 2 is not valid JSON" in str(dataset.invalid[0])


def test_folder_with_one_questions_file(tmp_path):
    folder = tmp_path / "snapshot"
    folder.mkdir()
    _write(folder, "MMR-V.json", [_record()])
    assert len(load_questions(folder).questions) == 1
    _write(folder, "other.jsonl", json.dumps(_record()))
    with pytest.raises(DatasetError, match="several possible questions files"):
        load_questions(folder)


def test_parquet_loads(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "q.parquet"
    pq.write_table(pa.Table.from_pylist([_record(), _record(question="Q2")]), path)
    loaded = load_questions(path)
    assert [q.question for q in loaded.questions] == [_record()["question"], "Q2"]


def test_parquet_without_pyarrow_says_what_to_install(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name.startswith("pyarrow"):
            raise ImportError("no pyarrow")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    path = _write(tmp_path, "q.parquet", "not really parquet")
    with pytest.raises(ConfigError, match="pip install pyarrow"):
        load_questions(path)


def test_hub_without_datasets_says_what_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_datasets(name, *args, **kwargs):
        if name == "datasets":
            raise ImportError("no datasets")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(ConfigError, match=r"sleuth\[hub\]"):
        load_questions("hf://JokerJan/MMR-VBench")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("{broken", "not valid JSON"),
        ('{"rows": []}', "without a 'data' list"),
        ('"just a string"', "expected a list"),
    ],
)
def test_unreadable_files_fail_with_one_line(tmp_path, payload, message):
    path = _write(tmp_path, "bad.json", payload)
    with pytest.raises(DatasetError, match=message) as info:
        load_questions(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        load_questions(tmp_path / "absent.json")
    with pytest.raises(DatasetError, match="unknown format .csv"):
        load_questions(_write(tmp_path, "q.csv", "a,b"))


# --------------------------------------------------------------------------- row validation


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"question": None}, "missing field(s): question"),
        ({"options": []}, "'options' is empty"),
        ({"options": "(A) x (B) y"}, "'options' is a string"),
        ({"correctAnswer": "maybe"}, "cannot read an answer letter"),
        ({"correctAnswer": "(7)"}, "cannot read an answer letter"),
        ({"options": ["(A) x", "(A) y"], "correctAnswer": "A"}, "duplicate option letters A"),
    ],
)
def test_invalid_rows_name_the_row_and_reason(tmp_path, overrides, reason):
    records = [_record(question="fine"), _record(question_idx="k9", **overrides)]
    dataset = load_questions(_write(tmp_path, "q.json", records))
    assert len(dataset.questions) == 1
    (problem,) = dataset.invalid
    assert isinstance(problem, RowError)
    assert problem.index == 1 and problem.key == "k9"
    assert reason in str(problem)
    assert "row 1 (question k9)" in str(problem)


def test_gold_letter_missing_from_the_options_is_kept_and_flagged(tmp_path):
    # MMR-V's question 268: gold K, options A-J. The official script keeps it (and can only
    # score it right if the model answers K), so it counts towards the 1,257 questions.
    ten = [f"({letter}) option {letter}" for letter in "ABCDEFGHIJ"]
    records = [_record(question_idx="267"), _record(question_idx="268", options=ten, correctAnswer="(K)")]
    dataset = load_questions(_write(tmp_path, "q.json", records))
    assert not dataset.invalid
    fine, odd = dataset.questions
    assert (odd.answer, odd.letters[-1], odd.flags) == ("K", "J", ["gold_not_in_options"])
    assert fine.flags == []
    assert dataset.flagged == [
        "question 268: gold K is not among options A-J; kept and scored as the official script does"
    ]


def test_flagged_lists_non_consecutive_letters_one_by_one(tmp_path):
    records = [_record(question_idx="5", options=["(A) x", "(C) y", "(D) z"], correctAnswer="B")]
    dataset = load_questions(_write(tmp_path, "q.json", records))
    (line,) = dataset.flagged
    assert line.startswith("question 5: gold B is not among options A, C, D; ")


def test_non_object_row(tmp_path):
    dataset = load_questions(_write(tmp_path, "q.json", [_record(), 42]))
    assert "row 1: expected an object" in str(dataset.invalid[0])


def test_unmarked_options_get_letters(tmp_path):
    dataset = load_questions(_write(tmp_path, "q.json", [_record(options=["one", "two"], correctAnswer="B")]))
    question: Question = dataset.questions[0]
    assert question.options == ["(A) one", "(B) two"]
    assert question.letters == ["A", "B"]


# --------------------------------------------------------------------------- small normalisers


@pytest.mark.parametrize(
    ("raw", "letter"),
    [("(B)", "B"), ("(B) ", "B"), ("B", "B"), ("(c) text of the option", "C"), (" [D] ", "D"), ("", None), (None, None)],
)
def test_parse_answer_letter(raw, letter):
    assert parse_letter(raw) == letter


def test_video_type_and_category_normalisers():
    assert normalise_video_type("art") == "Art"
    assert normalise_video_type(" tv ") == "TV"
    assert normalise_video_type("movie") == "Movie"
    assert normalise_video_type("documentary") == "Documentary"
    assert all(category_of(name) == "implicit" for name in IMPLICIT_L2)
    assert all(category_of(name.lower()) == "explicit" for name in EXPLICIT_L2)
    assert category_of("Something Else") == "unknown"
