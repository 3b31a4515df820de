"""Video-Holmes: real sample records, the official prompt byte for byte, the official answer cascade,
grouping by question type, the download, and ``sleuth eval`` / ``score`` / ``report`` end to end (offline).

The sample records (``tests/data/video_holmes_samples.json``, sources in its ``_sources``) are copied
unchanged from the official repo's pipeline examples, a GitHub issue quoting the test file, and the paper.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eval.benchmarks import get_benchmark
from eval.benchmarks.video_holmes.download import DownloadError, download
from eval.dataset import normalise_records
from eval.results import RESULTS_FILE
from sleuth.errors import ConfigError
from tests.cli_helpers import assert_resumes_with_nothing_to_do, run_cli
from tests.fake_openai import Call, Text, ToolCalls

SAMPLES = Path(__file__).parent / "data" / "video_holmes_samples.json"
RECORDS = json.loads(SAMPLES.read_text(encoding="utf-8"))["data"]

# protocol.md §3, the official evaluate.py's f-string, typed out by hand
OFFICIAL_THINKING = (
    "Based on the given video, reason and answer the single-choice question. Provide your reasoning between the "
    "<think> and </think> tags, and then give your final answer between the <answer> and </answer> tags. "
    "The question is: {q}. The options are: {o}. Your answer:"
)
PAPER_NO_THINKING = (
    "Based on the given video, answer the single-choice question. Give your final answer choise between the "
    "<answer> and </answer> tags. The question is: {q}. The options are: {o}. Your answer:"
)


@pytest.fixture(scope="module")
def bench():
    return get_benchmark("video_holmes")


def _load(bench, records, **kwargs):
    return normalise_records(records, bench.normalise, source="test", **kwargs)


# --------------------------------------------------------------------------- records


def test_sample_records_load_with_their_types_and_keys(bench, tmp_path):
    # the download's folder also holds the training questions and annotations: the test file is the one read
    root = tmp_path / "Benchmark"
    (root / "annotations").mkdir(parents=True)
    (root / "test_Video-Holmes.json").write_text(SAMPLES.read_text(encoding="utf-8"), encoding="utf-8")
    (root / "train_Video-Holmes.json").write_text("[]", encoding="utf-8")
    (root / "annotations" / "RSmjqss0XKQ.json").write_text("{}", encoding="utf-8")
    dataset = bench.load(root, None)

    assert [str(e) for e in dataset.invalid] == [
        f"{root / 'test_Video-Holmes.json'}: row 9 (question yHioWLdgnMI#396): missing field(s): 'Options', 'Answer'"
    ]
    questions = {q.question_id: q for q in dataset.questions}
    assert len(questions) == 11
    first = questions["RSmjqss0XKQ#1"]
    assert first.video == "RSmjqss0XKQ.mp4" and first.answer == "A" and first.letters == list("ABCDEF")
    assert first.options[:2] == ["(A) Cleaners", "(B) Colleagues from the same department"]
    assert first.groups == {"question_type": "SR"} and first.flags == []
    assert questions["yHioWLdgnMI#394"].groups == {"question_type": "TCI"}
    # the pipeline's per-film numbering restarts at 1: the film keeps the keys apart; no number: a stable hash
    assert "ru0HUKY3nfM#4" in questions and "RSmjqss0XKQ#4" in questions
    (unnumbered,) = [q for q in dataset.questions if q.question_id.startswith("q")]
    assert unnumbered.groups["question_type"] == "IMC" and unnumbered.video == "ru0HUKY3nfM.mp4"
    assert sorted({q.groups["question_type"] for q in dataset.questions}) == sorted(
        ("SR", "IMC", "TCI", "TA", "MHR", "PAR", "CTI"))
    # the question stays as written (trailing spaces and all): the prompt is built from it
    assert questions["RSmjqss0XKQ#4"].question.endswith("vending machine  ")


def test_clips_are_found_in_the_hub_and_the_official_layouts(bench, tmp_path):
    videos = tmp_path / "Benchmark"
    for folder, name in (("videos_cropped", "RSmjqss0XKQ.mp4"), ("videos", "yHioWLdgnMI.mp4"), ("", "ru0HUKY3nfM.mp4")):
        (videos / folder).mkdir(parents=True, exist_ok=True)
        (videos / folder / name).write_bytes(b"")
    dataset = _load(bench, RECORDS, videos_dir=videos)
    paths = {q.video: q.video_path for q in dataset.questions}
    assert paths == {
        "RSmjqss0XKQ.mp4": videos / "videos_cropped" / "RSmjqss0XKQ.mp4",
        "yHioWLdgnMI.mp4": videos / "videos" / "yHioWLdgnMI.mp4",
        "ru0HUKY3nfM.mp4": videos / "ru0HUKY3nfM.mp4",
    }


def _changed(**fields):
    record = copy.deepcopy(RECORDS[0])
    for name, value in fields.items():
        if value is None:
            record.pop(name)
        else:
            record[name] = value
    return record


@pytest.mark.parametrize("record, reason", [
    (_changed(**{"video ID": None}), "missing field(s): 'video ID'"),
    (_changed(Question="", Answer=None), "missing field(s): 'Question', 'Answer'"),
    (_changed(Options=["Cleaners", "Siblings"]), "'Options' must be a non-empty {\"A\": text, ...} mapping, got list"),
    (_changed(Options={"A": "x", "G": "y"}), "option key 'G' is not one of A-F (the official scorer reads only A-F)"),
    (_changed(Options={"A": "x", "B": "  "}), "option B is empty or not text"),
    (_changed(Answer="d"), "'Answer' must be one capital letter A-F (the official scorer compares it as is), got 'd'"),
    (_changed(Answer="(A)"), "got '(A)'"),
    (_changed(Answer="AB"), "got 'AB'"),
    (_changed(Question=["why?"]), "'Question' must be non-empty text"),
    (_changed(**{"Question ID": [1]}), "'Question ID' must be a number or text, got [1]"),
    (_changed(**{"video ID": 7}), "'video ID' must be the clip's name as text, got 7"),
    (_changed(**{"video ID": "../../etc/x"}), "leaves the videos folder"),
    (["not", "a", "record"], "expected an object, got list"),
])
def test_malformed_records_are_skipped_with_a_reason(bench, record, reason):
    dataset = _load(bench, [record, RECORDS[1]])
    assert [q.question_id for q in dataset.questions] == ["RSmjqss0XKQ#2"]
    (error,) = dataset.invalid
    assert error.index == 0 and reason in error.reason


def test_data_problems_the_official_script_keeps_are_kept_and_flagged(bench):
    dataset = _load(bench, [
        _changed(Options={k: v for k, v in RECORDS[0]["Options"].items() if k != "F"}, Answer="F"),
        _changed(**{"Question ID": 99, "Question Type": "XYZ"}),
        _changed(**{"Question ID": 98, "Question Type": None}),
        RECORDS[0],  # same film and number as the first: a duplicate key
    ])
    gold_missing, unknown, untyped = dataset.questions
    assert gold_missing.flags == ["gold_not_in_options"] and gold_missing.letters == list("ABCDE")
    assert unknown.flags == ["unknown_question_type"] and unknown.groups == {"question_type": "XYZ"}
    assert untyped.flags == ["unknown_question_type"] and untyped.groups == {"question_type": ""}
    assert "duplicate key (first seen at row 0)" in str(dataset.invalid[0])


# --------------------------------------------------------------------------- the official protocol


def _texts_with_images(message) -> str:
    return "".join(getattr(part, "text", None) or "<image>" for part in message.content)


def test_official_prompt_and_request_byte_for_byte(bench):
    questions = {q.question_id: q for q in _load(bench, RECORDS).questions}
    frames = [np.full((90, 160, 3), value, dtype=np.uint8) for value in (10, 120, 250)]

    (message,) = bench.build_messages(questions["RSmjqss0XKQ#1"], frames)
    prompt = OFFICIAL_THINKING.format(
        q="What is the relationship between the woman in blue and the man in green?",
        o="A: Cleaners, B: Colleagues from the same department, C: Siblings, D: Strangers who collided accidentally, "
          "E: Undercover police officers, F: Office coworkers",
    )
    assert message.role == "user"
    # InternVL's frame prefix, ''.join(f'Frame{i+1}: <image>\n'), then the prompt; one image per <image>
    assert _texts_with_images(message) == "Frame1: <image>\nFrame2: <image>\nFrame3: <image>\n" + prompt
    images = [part for part in message.content if part.type == "image"]
    assert [(i.width, i.height) for i in images] == [(448, 448)] * 3  # squashed, as the official loader does
    assert all(Image.open(io.BytesIO(i.jpeg)).size == (448, 448) for i in images)

    # newlines and trailing spaces of a question, and symbols in options, go in untouched
    timeline = questions["ru0HUKY3nfM#4"]
    (message,) = bench.build_messages(timeline, [])
    record = RECORDS[11]
    assert _texts_with_images(message) == OFFICIAL_THINKING.format(
        q=record["Question"], o=", ".join(f"{k}: {v}" for k, v in record["Options"].items()))
    assert "①→②→③→④→⑤, B: ②→①" in _texts_with_images(message)

    paper = get_benchmark("video_holmes", "no_thinking")
    (message,) = paper.build_messages(questions["RSmjqss0XKQ#1"], [])
    assert _texts_with_images(message) == PAPER_NO_THINKING.format(
        q="What is the relationship between the woman in blue and the man in green?",
        o="A: Cleaners, B: Colleagues from the same department, C: Siblings, D: Strangers who collided accidentally, "
          "E: Undercover police officers, F: Office coworkers",
    )
    assert bench.prompt_names() == ["video_holmes_thinking"] and paper.prompt_names() == ["video_holmes_no_thinking"]
    with pytest.raises(ConfigError, match="--variant no_thinking"):
        bench.prompt_names(cot=True)


def test_frames_and_generation_follow_the_official_script(bench):
    from agent.backends.base import GenerationSettings

    # get_index: int(seg/2 + np.round(seg*i)), seg = (n-1)/N; numpy rounds 499.5 to 500 (half to even)
    assert bench.sample_indices(1000, 4) == [124, 374, 624, 873]
    assert bench.sample_indices(40, 32)[:6] == [0, 1, 2, 4, 5, 6] and bench.sample_indices(40, 32)[-1] == 38
    assert bench.sample_indices(3, 5) == [0, 0, 1, 1, 2]  # a short clip repeats frames, as the official loader does
    assert bench.sample_indices(0, 32) == []
    assert bench.default_frames == 32
    settings = bench.generation_settings(GenerationSettings(temperature=0.0, max_tokens=50))
    assert settings.temperature is None and settings.max_tokens == 1024  # do_sample=True, max_new_tokens=1024


# --------------------------------------------------------------------------- answers


@pytest.mark.parametrize("reply, letter, rule", [
    ("<think>They wear cleaning uniforms.</think>\n<answer>A</answer>", "A", "tag_letter"),
    ("<think>...</think><answer>C: The A4 paper with the black hole fell off the safe</answer>", "C", "tag_marked"),
    ("<answer>[F] Don't let desire consume you</answer>", "F", "tag_marked"),
    ("<answer>\n  B \n</answer>", "B", "tag_letter"),
    ("<answer>B</answer> On reflection: <answer>D</answer>", "D", "tag_letter"),  # the last tag
    # an echo of the instruction before the answer: the last tag is the answer
    ("I give my final answer between the <answer> and </answer> tags: <answer>E</answer>", "E", "tag_letter"),
    ("The answer is C", "C", "reply_letter"),  # no tags: the whole reply
    ("I think D is right", "D", "reply_marked"),
    # the official cascade's misreadings, kept on purpose: A..F in order, any capital A first
    ("<answer>The A4 paper with the black hole fell off the safe</answer>", "A", "tag_letter"),  # option C's text
    ("<answer>B, not A</answer>", "A", "tag_letter"),
    ("Answer: C", "A", "reply_letter"),
    ("Final Answer: D", "A", "reply_letter"),  # lmms-eval's reasoning format
    ("The clown is B) a colleague", "B", "reply_letter"),
    # nothing readable: no letter and no guess (lmms-eval would pick one at random)
    ("<answer>c</answer>", None, "none"),
    ("<answer></answer> C", None, "none"),  # an empty tag is read, not the reply around it
    ("I cannot tell from these frames.", None, "none"),
    ("", None, "none"),
])
def test_extraction_is_the_official_cascade(bench, reply, letter, rule):
    question = _load(bench, RECORDS[:1]).questions[0]
    for strict in (False, True):  # the default already is the official rule
        found = bench.extract(reply, question, strict_official=strict)
        assert (found.value, found.rule) == (letter, rule)


def test_scores_are_letter_equality(bench):
    assert bench.score("C", "C") == 1.0 and bench.score("A", "C") == 0.0 and bench.score(None, "C") == 0.0


# --------------------------------------------------------------------------- download


def _zip(path: Path, members: dict[str, bytes], *, link: str | None = None) -> None:
    with zipfile.ZipFile(path, "w") as bundle:
        for name, payload in members.items():
            bundle.writestr(name, payload)
        if link:
            info = zipfile.ZipInfo(link)
            info.external_attr = (0o120777 << 16)
            bundle.writestr(info, "/etc/passwd")


def test_download_without_fetch_unzips_and_verifies(tmp_path, capsys):
    root = tmp_path / "Benchmark"
    root.mkdir()
    records = RECORDS[:9]  # two films
    (root / "test_Video-Holmes.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    _zip(root / "videos.zip", {"videos_cropped/": b"", "videos_cropped/RSmjqss0XKQ.mp4": b"\x00" * 500,
                               "videos_cropped/yHioWLdgnMI.mp4": b"\x01" * 300, "videos_cropped/extra.mp4": b"x"})
    _zip(root / "annotations.zip", {"annotations/RSmjqss0XKQ.json": b"{}"})

    code, out, err = run_cli(["data", "download", str(root), "--benchmark", "video_holmes", "--skip-fetch", "--json"],
                             capsys)
    assert code == 0, err
    outcome = json.loads(out)
    assert outcome["unpacked_files"] == {"videos.zip": 3, "annotations.zip": 1}
    assert outcome["videos_dir"] == str(root / "videos_cropped") and outcome["video_files"] == 3
    assert outcome["questions_file"] == str(root / "test_Video-Holmes.json")
    assert outcome["referenced_videos"] == 2 and outcome["missing_videos"] == []
    assert (root / "videos_cropped" / "RSmjqss0XKQ.mp4").read_bytes() == b"\x00" * 500

    # again: nothing written twice; a question naming a clip the zip lacks fails verification
    records.append({**records[0], "video ID": "NotThere123", "Question ID": 5})
    (root / "test_Video-Holmes.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    done = download(root, fetch=False, progress=False)
    assert done.unpacked == {"videos.zip": 0, "annotations.zip": 0} and done.verified.missing == ["NotThere123.mp4"]
    code, _, err = run_cli(["data", "download", str(root), "--benchmark", "video_holmes", "--skip-fetch"], capsys)
    assert code == 2 and "1 videos named by the questions are missing (e.g. NotThere123.mp4)" in err


@pytest.mark.parametrize("name", ["../escape.mp4", "/abs/escape.mp4", "videos_cropped/../../escape.mp4",
                                  "..\\escape.mp4", "C:\\escape.mp4"])
def test_unzipping_refuses_paths_outside_the_folder(tmp_path, name):
    root = tmp_path / "Benchmark"
    root.mkdir()
    _zip(root / "videos.zip", {"videos_cropped/ok.mp4": b"ok", name: b"evil"})
    with pytest.raises(DownloadError, match="points outside the target folder"):
        download(root, fetch=False, progress=False)
    assert not (root / "videos_cropped").exists() and not (tmp_path / "escape.mp4").exists()


def test_unzipping_refuses_links_and_missing_videos_say_why(tmp_path):
    root = tmp_path / "Benchmark"
    root.mkdir()
    _zip(root / "videos.zip", {"videos_cropped/ok.mp4": b"ok"}, link="videos_cropped/link.mp4")
    with pytest.raises(DownloadError, match="is a link; refusing to unpack"):
        download(root, fetch=False, progress=False)
    (root / "videos.zip").unlink()
    with pytest.raises(DownloadError, match="issue #7") as raised:
        download(root, fetch=False, progress=False)
    assert "--skip-fetch" in str(raised.value)


def test_hub_errors_say_how_to_log_in_or_work_offline(tmp_path, capsys, monkeypatch):
    import huggingface_hub

    class GatedRepoError(Exception):
        """Named like the hub's (whose constructor differs between versions): recognised by name."""

    def gated(**kwargs):
        raise GatedRepoError("403 Client Error: Cannot access gated repo")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", gated)
    code, _, err = run_cli(["data", "download", str(tmp_path / "a"), "--benchmark", "video_holmes"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "TencentARC/Video-Holmes is gated" in err and "huggingface-cli login" in err

    monkeypatch.undo()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run_cli(["data", "download", str(tmp_path / "b"), "--benchmark", "video_holmes"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "offline?" in err and "--benchmark video_holmes --skip-fetch" in err


# --------------------------------------------------------------------------- end to end


REPLIES = {  # question id -> the scripted model's reply (uniform method)
    "RSmjqss0XKQ#1": "<think>Both wear cleaning uniforms.</think>\n<answer>A</answer>",  # SR, gold A: right
    "RSmjqss0XKQ#2": "<think>He is angry.</think><answer>B: Venting anger at the broken machine</answer>",  # IMC: right
    "RSmjqss0XKQ#3": "<answer>The A4 paper with the black hole fell off the safe</answer>",  # TCI, gold C: misread A
    "RSmjqss0XKQ#4": "Answer: C",  # TA, gold A: the misread A happens to be right
    "RSmjqss0XKQ#5": "I cannot tell from these frames.",  # MHR: unreadable, wrong
}


def _question_id(body) -> str:
    text = "".join(p.get("text", "") for p in body["messages"][0]["content"] if p["type"] == "text")
    for record in RECORDS[:9]:
        if f"The question is: {record['Question']}." in text:
            return f"{record['video ID']}#{record['Question ID']}"
    raise AssertionError("unknown question")


def test_eval_score_and_report_end_to_end(fake_openai, synthetic_video, tiny_clip_model, tmp_path, capsys):
    videos = tmp_path / "Benchmark"
    for folder, film in (("videos_cropped", "RSmjqss0XKQ"), ("videos", "yHioWLdgnMI")):
        (videos / folder).mkdir(parents=True)
        (videos / folder / f"{film}.mp4").symlink_to(synthetic_video)
    data = tmp_path / "test_Video-Holmes.json"
    data.write_text(json.dumps(RECORDS[:10], ensure_ascii=False), encoding="utf-8")  # 9 questions, 1 malformed
    common = ["eval", "--benchmark", "video_holmes", "--data", str(data), "--videos", str(videos),
              "--model", "fake-model", "--base-url", fake_openai.base_url, "--api-key", "sk-x", "--max-retries", "0",
              "--frames", "4", "--no-progress"]

    fake_openai.responder = lambda body: Text(REPLIES.get(_question_id(body), "<answer>F</answer>"))
    uniform = tmp_path / "uniform"
    code, _, err = run_cli([*common, "--method", "uniform", "--out", str(uniform)], capsys)
    assert code == 0, err
    assert_resumes_with_nothing_to_do([*common, "--method", "uniform", "--out", str(uniform)], capsys, fake_openai)
    body = fake_openai.requests[0]
    assert "temperature" not in body and body["max_tokens"] == 1024
    content = body["messages"][0]["content"]
    assert [p["type"] for p in content] == ["text", "image_url"] * 4 + ["text"]
    assert [p["text"] for p in content[:-1:2]] == ["Frame1: ", "\nFrame2: ", "\nFrame3: ", "\nFrame4: "]
    assert content[-1]["text"].startswith("\nBased on the given video, reason and answer")
    jpeg = base64.b64decode(content[1]["image_url"]["url"].split(",", 1)[1])
    assert Image.open(io.BytesIO(jpeg)).size == (448, 448)

    rows = {r["question_id"]: r for r in map(json.loads, (uniform / RESULTS_FILE).read_text().splitlines())}
    assert len(rows) == 9 and {r["benchmark"] for r in rows.values()} == {"video_holmes"}
    assert [(rows[k]["prediction"], rows[k]["extraction"], rows[k]["correct"]) for k in REPLIES] == [
        ("A", "tag_letter", True), ("B", "tag_marked", True), ("A", "tag_letter", False),
        ("A", "reply_letter", True), (None, "none", False),
    ]
    assert rows["yHioWLdgnMI#394"]["question_type"] == "TCI" and rows["RSmjqss0XKQ#8"]["correct"]  # CTI, gold F

    code, out, err = run_cli(["score", str(uniform), "--json"], capsys)
    assert code == 0, err
    card = json.loads(out)
    groups = {(g["kind"], g["name"]): (g["correct"], g["n"]) for g in card["groups"]}
    assert groups == {
        ("overall", "Overall"): (4, 9), ("question_type", "SR"): (1, 1), ("question_type", "IMC"): (1, 1),
        ("question_type", "TCI"): (0, 2), ("question_type", "TA"): (1, 1), ("question_type", "MHR"): (0, 1),
        ("question_type", "PAR"): (0, 2), ("question_type", "CTI"): (1, 1),
    }
    assert card["extraction_rules"] == {"none": 1, "reply_letter": 1, "tag_letter": 6, "tag_marked": 1}
    assert any("missing field(s): 'Options', 'Answer'" in line for line in card["invalid_rows"])

    # the agent, with scripted tool calls: search once, then answer B
    def agent_script(body):
        if not any(m.get("role") == "tool" for m in body["messages"]):
            return ToolCalls([Call("search_frames", {"query": "the man in white", "k": 2})])
        return ToolCalls([Call("answer", {"option": "B", "rationale": "he kicks it", "evidence": [0.5]})])

    fake_openai.reset()
    fake_openai.responder = agent_script
    agent = tmp_path / "agent"
    code, _, err = run_cli([*common, "--method", "agent", "--out", str(agent), "--overview-frames", "2",
                            "--max-steps", "3", "--clip-model", tiny_clip_model, "--random-weights",
                            "--cache-dir", str(tmp_path / "cache")], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in (agent / RESULTS_FILE).read_text().splitlines()]
    assert len(rows) == 9 and {(r["prediction"], r["extraction"]) for r in rows} == {("B", "tool")}
    assert sorted(r["question_id"] for r in rows if r["correct"]) == ["RSmjqss0XKQ#2", "RSmjqss0XKQ#5"]  # gold B
    code, out, err = run_cli(["score", str(agent), "--json"], capsys)
    assert code == 0 and json.loads(out)["groups"][0]["correct"] == 2

    report = tmp_path / "report"
    code, _, err = run_cli(["report", str(uniform), str(agent), "--out", str(report)], capsys)
    assert code == 0, err
    markdown = (report / "report.md").read_text(encoding="utf-8")
    assert markdown.startswith("# Video-Holmes evaluation report")
    assert "| Overall | 95% CI (Wilson) | SR | IMC | TCI | TA | MHR | PAR | CTI |" in markdown
    assert "| GPT-4o (paper) | 42.0 | 50.0 | 49.6 | 38.8 | 30.0 | 44.0 | 39.2 | 37.0 | 32 frames |" in markdown
    assert "Video-Holmes paper (arXiv 2505.21374v1), Table 2" in markdown
