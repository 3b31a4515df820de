"""Video-MMMU: loading the official records, the official prompts byte for byte, the official (MMMU)
answer parsing, Δknowledge, the download, and ``sleuth eval`` / ``score`` / ``report`` end to end."""

from __future__ import annotations

import base64
import io
import json
import os
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from agent.backends.base import GenerationSettings
from eval.benchmarks import get_benchmark
from eval.benchmarks.videommmu import EmptyReply, delta_knowledge
from eval.benchmarks.archives import DownloadError, unzip_all
from eval.dataset import DatasetError
from eval.results import RESULTS_FILE
from prompts import load_prompt
from sleuth.errors import ConfigError
from tests.cli_helpers import assert_resumes_with_nothing_to_do, run_cli
from tests.fake_openai import Call, Text, ToolCalls
from tests.video_fixtures import decode_index

SAMPLES = Path(__file__).parent / "data" / "videommmu_samples.json"
TRACKS = ("Perception", "Comprehension", "Adaptation")

# The official _default_template_yaml strings, as protocol.md quotes them.
PRE = "You should watch and learn the video content. Then apply what you learned to "
PC_POST = "\nPlease ignore the Quiz question in last frame of the video."
MCQ = "answer the following multi-choice question. The image for this question is at the end of the video.\n"
OPEN = "answer the following open-ended question. The image for this question is at the end of the video.\n"


def records() -> dict[str, dict[str, dict]]:
    data = json.loads(SAMPLES.read_text(encoding="utf-8"))
    return {track: {r["id"]: r for r in data[track].values()} for track in TRACKS}


def questions(variant: str | None = None, videos: Path | None = None) -> dict:
    dataset = get_benchmark("videommmu", variant).load(SAMPLES, videos)
    assert not dataset.invalid
    return {q.question_id: q for q in dataset.questions}


# --------------------------------------------------------------------------- loading


def test_loading_keeps_and_flags_the_known_data_problems():
    loaded = questions()
    assert len(loaded) == 20 and list(loaded)[0] == "Perception/dev_Biology_3"
    counts = {track: sum(q.groups["track"] == track for q in loaded.values()) for track in TRACKS}
    assert counts == {"Perception": 6, "Comprehension": 6, "Adaptation": 8}

    biology = loaded["Perception/dev_Biology_3"]
    assert biology.video == "Science/dev_Biology_3.mp4" and biology.answer == "G" and biology.answer_kind == "choice"
    assert biology.groups == {"track": "Perception", "discipline": "Science", "subject": "Biology"}
    assert biology.options[6] == "(G) 4, 5"
    # 14 options: lettered A-N, as the official code letters any number
    assert loaded["Perception/validation_Basic_Medical_Science_10"].letters == list("ABCDEFGHIJKLMN")
    assert loaded["Comprehension/validation_Basic_Medical_Science_9"].letters[-1] == "K"

    # question_type null (gold "C", 10 options): the official code prompts and scores it as open
    null_type = loaded["Adaptation/validation_Accounting_13"]
    assert (null_type.answer_kind, null_type.options, null_type.flags) == ("text", [], ["question_type_null"])
    # typed open, no options, a letter for gold: kept, scored by the open rule
    letter = loaded["Adaptation/validation_Basic_Medical_Science_10"]
    assert (letter.answer_kind, letter.answer, letter.flags) == ("text", "C", ["open_letter_answer"])
    assert loaded["Adaptation/validation_Math_15"].flags == ["gold_list_text"]
    assert loaded["Adaptation/validation_Chemistry_13"].answer_kind == "number"
    assert loaded["Adaptation/dev_Geography_5"].flags == []

    only = questions("question_only")
    assert list(only) == [q for q in loaded if q.startswith("Adaptation/")]  # same ids: runs pair up
    assert only["Adaptation/dev_Geography_5"].video == "question_only/dev_Geography_5_image.mp4"


def test_malformed_records_are_rejected_with_a_reason(tmp_path):
    good = records()["Adaptation"]["dev_Geography_5"]
    bad = {
        "Adaptation": [
            {**good, "id": "dev_Astrology_5"},
            {**good, "id": "dev_Geography"},
            {**good, "answer": "(A)"},
            {**good, "question_type": "perception"},
            {**good, "options": "A, B"},
            {**good, "answer": "K"},
        ]
    }
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad), encoding="utf-8")
    dataset = get_benchmark("videommmu").load(path, None)
    reasons = [e.reason for e in dataset.invalid]
    assert reasons == [
        "subject 'Astrology' (from the id) is none of Video-MMMU's 30; the official code stops here",
        "id 'dev_Geography' is not <split>_<subject>_<number>, which the official code needs",
        "multiple-choice answer '(A)' is not an option letter",
        "question_type 'perception' is not 'multiple-choice', 'open' or null",
        "'options' is not a list of texts",
    ]
    (kept,) = dataset.questions  # a gold letter past the options: kept and flagged, like elsewhere
    assert kept.flags == ["gold_not_in_options"]
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps([good]), encoding="utf-8")
    (problem,) = get_benchmark("videommmu").load(flat, None).invalid
    assert problem.reason.startswith("track None is not one of Perception, Comprehension, Adaptation")


# --------------------------------------------------------------------------- the official prompts


def test_prompt_files_are_the_official_strings():
    assert load_prompt("videommmu_pre_prompt").text == PRE
    assert load_prompt("videommmu_perception_and_comprehension_prompt").text == PC_POST
    assert load_prompt("videommmu_mcq_prompt").text == MCQ
    assert load_prompt("videommmu_open_ended_prompt").text == OPEN


def test_prompts_render_as_the_official_doc_to_text():
    bench, loaded, raw = get_benchmark("videommmu"), questions(), records()

    perception = raw["Perception"]["dev_Biology_3"]
    assert bench.prompt_text(loaded["Perception/dev_Biology_3"]) == (
        "The video gives two examples of aldose and ketose, how many carbon atoms do they have respectively?\n"
        "A. 3, 3\nB. 3, 4\nC. 3, 5\nD. 3, 6\nE. 4, 3\nF. 4, 4\nG. 4, 5\nH. 4, 6\nI. 5, 5\nJ. 5, 6"
        "\nPlease ignore the Quiz question in last frame of the video."
    )
    assert perception["question"].endswith("respectively?")

    mcq = raw["Adaptation"]["new_Art_4"]
    lines = "\n".join(f"{letter}. {option}" for letter, option in zip("ABCDEFGHIJ", mcq["options"]))
    assert bench.prompt_text(loaded["Adaptation/new_Art_4"]) == PRE + MCQ + mcq["question"] + "\n" + lines
    assert lines.startswith("A. Line\nB. Shape\n")

    # open, and the null-typed question the official code treats as open: no options shown
    for key in ("validation_Chemistry_13", "validation_Accounting_13"):
        text = bench.prompt_text(loaded[f"Adaptation/{key}"])
        assert text == PRE + OPEN + raw["Adaptation"][key]["question"]
    assert "$52,000" not in bench.prompt_text(loaded["Adaptation/validation_Accounting_13"])

    # the question-only baseline: question + "\n" + options, no pre-prompt (open questions end in "\n")
    only, solo = get_benchmark("videommmu", "question_only"), questions("question_only")
    assert only.prompt_text(solo["Adaptation/new_Art_4"]) == mcq["question"] + "\n" + lines
    chem = raw["Adaptation"]["validation_Chemistry_13"]["question"]
    assert only.prompt_text(solo["Adaptation/validation_Chemistry_13"]) == chem + "\n"
    assert only.prompt_text(solo["Adaptation/validation_Accounting_13"]).endswith("\nJ. $42,000")
    assert only.prompt_names() == [] and "videommmu_mcq_prompt" in bench.prompt_names()

    # options the record already letters "A. ..." (Perception validation_Economics_2) stay as they are
    economics = loaded["Perception/dev_Biology_3"].model_copy(update={"record": {
        **perception, "options": ["A. (P1, Q1)", "B. (P2, Q2)"]}})
    assert bench.prompt_text(economics).startswith(perception["question"] + "\nA. (P1, Q1)\nB. (P2, Q2)\nPlease")
    with pytest.raises(ConfigError, match="no chain-of-thought prompt"):
        bench.prompt_names(cot=True)


def test_request_frames_and_settings_follow_gpt4v():
    bench = get_benchmark("videommmu")
    question = questions()["Perception/dev_Biology_3"]
    frame = np.zeros((120, 160, 3), dtype=np.uint8)
    (message,) = bench.build_messages(question, [frame, frame])
    assert message.role == "user" and message.content[0].text == bench.prompt_text(question)
    assert [(p.width, p.height) for p in message.content[1:]] == [(160, 120)] * 2  # full resolution
    settings = bench.generation_settings(GenerationSettings(temperature=0.7, max_tokens=99))
    assert (settings.temperature, settings.max_tokens) == (0.0, 1024)
    assert bench.sample_indices(40, 4) == [0, 13, 26, 39]  # linspace: the last frame is the quiz image
    assert bench.sample_indices(5, 32) == [0, 1, 2, 3, 4]  # min(total_frames, N), no repeats
    assert get_benchmark("videommmu", "question_only").sample_indices(60, 32) == [0]


# --------------------------------------------------------------------------- answers


@pytest.mark.parametrize("reply, letter, rule", [
    ("G", "G", "letter_space"),
    ("The answer is G.", "G", "letter_space"),
    ("(G)", "G", "letter_paren"),
    ("G: 4, 5", "G", "letter_colon"),
    ("A. is wrong. G. is right", "G", "letter_period"),
    ("Both examples have 4, 5 carbon atoms", "G", "option_text"),
    ("**G**", None, "none"),  # no letter format the official parser knows: wrong, never a random pick
    # where the official rule misreads: "E." of "E. coli", and the pronoun "I" (a valid letter with 10 options)
    ("E. coli is not involved, so the answer is G", "E", "letter_period"),
    ("The answer is G, I think", "I", "letter_space"),
    ("I cannot tell", "I", "letter_space"),
])
def test_multiple_choice_parsing_is_the_official_rule(reply, letter, rule):
    bench = get_benchmark("videommmu")
    question = questions()["Perception/dev_Biology_3"]
    found = bench.extract(reply, question)
    assert (found.value, found.rule) == (letter, rule)
    assert bench.score(found.value, question.answer, question.answer_kind) == float(letter == "G")


@pytest.mark.parametrize("key, reply, prediction, rule, right", [
    ("validation_Chemistry_13", "The mass is 12.966 g.", 12.97, "open_number", True),  # rounded to 2 decimals
    ("validation_Chemistry_13", "Mass = 25.94 / 2\nso the mass is 13", 13.0, "open_number", False),
    ("validation_Chemistry_13", "It could be 12.97 or 25.9", 12.97, "open_number", True),  # hedging counts
    ("validation_Chemistry_13", "I do not know", "i do not know", "open_text", False),
    ("validation_Basic_Medical_Science_10", "C", " c", "open_text", True),  # a letter as a word edge
    ("validation_Basic_Medical_Science_10", "The answer is (C).", "(c)", "open_text", False),  # misread
    ("validation_Math_15", "The rate is 3.43 ft/s", "3.43 ft/s", "open_text", False),  # unanswerable gold
])
def test_open_parsing_is_the_official_rule(key, reply, prediction, rule, right):
    bench = get_benchmark("videommmu")
    question = questions()[f"Adaptation/{key}"]
    found = bench.extract(reply, question)
    assert (found.value, found.rule) == (prediction, rule)
    assert bench.score(found.value, question.answer, question.answer_kind) == float(right)


def test_empty_replies_leave_the_denominator_and_tool_answers_score_like_candidates():
    bench, loaded = get_benchmark("videommmu"), questions()
    for reply in ("", "  \n", "API Error"):
        with pytest.raises(EmptyReply) as caught:
            bench.extract(reply, loaded["Perception/dev_Biology_3"])
        assert caught.value.kind == "empty"
    # the agent's answers: a letter, a number, a text, each judged as one official candidate
    assert bench.score("G", "G", "choice") == 1.0 and bench.score(None, "G", "choice") == 0.0
    assert bench.score(12.966, "12.97", "number") == 1.0 and bench.score(12.9, "12.97", "number") == 0.0
    assert bench.score("C", "C", "text") == 1.0 and bench.score("(C)", "C", "text") == 0.0


# --------------------------------------------------------------------------- Δknowledge


def _card(model: str, adaptation: float | None, n: int):
    group = SimpleNamespace(n=n, accuracy=adaptation)

    def find(kind, name):
        if (kind, name) != ("track", "Adaptation"):
            raise KeyError(name)
        return group

    return SimpleNamespace(model=model, group=find)


def test_delta_knowledge_by_hand():
    # GPT-4o in the paper: Adaptation 55.67% after; a question-only 47.33% gives (55.67-47.33)/52.67 = 15.83%
    assert delta_knowledge(0.5567, 0.4733) == pytest.approx(100 * 8.34 / 52.67)
    assert delta_knowledge(0.25, 0.40) == pytest.approx(-25.0)  # worse after the video: negative
    assert delta_knowledge(0.9, 1.0) is None
    bench = get_benchmark("videommmu")
    runs = {
        "video": (_card("m", 0.75, 8), {"variant": None, "model": "m"}),
        "blind": (_card("m", 0.5, 8), {"variant": "question_only", "model": "m"}),
        "other-model": (_card("x", 0.5, 8), {"variant": "question_only", "model": "x"}),
    }
    assert bench.derived_metrics(runs) == [
        "Δknowledge of m: +50.0% = (75.00 − 50.00) / (100 − 50.00) × 100; Adaptation 75.00% with the video "
        "(video, n=8), 50.00% question-only (blind, n=8)"
    ]
    runs["blind"] = (_card("m", 1.0, 4), {"variant": "question_only", "model": "m"})
    (line,) = bench.derived_metrics(runs)
    assert "undefined" in line and line.endswith("compare runs over the same questions")


# --------------------------------------------------------------------------- download


def _zip(path: Path, members: dict[str, bytes], link: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as bundle:
        for name, payload in members.items():
            bundle.writestr(name, payload)
        if link:
            info = zipfile.ZipInfo(link)
            info.external_attr = 0o120777 << 16
            bundle.writestr(info, "/etc/passwd")
    return path


def test_download_unpacks_safely_and_verifies(tmp_path, capsys):
    root = tmp_path / "VideoMMMU"
    raw = records()
    for track in TRACKS:  # the hub's layout: one file per track folder (JSON here: no pyarrow needed)
        (root / track).mkdir(parents=True)
        (root / track / "test.json").write_text(json.dumps(list(raw[track].values())), encoding="utf-8")
    ids = sorted({r["id"] for track in TRACKS for r in raw[track].values()})
    science = [i for i in ids if i.split("_")[1] in ("Biology", "Geography", "Chemistry", "Math")]
    _zip(root / "Science.zip", {f"Science/{i}.mp4": b"video" for i in science})
    _zip(root / "question_only_videos.zip", {"question_only/new_Art_4_image.mp4": b"still"})
    code, out, err = run_cli(["data", "download", str(root), "--benchmark", "videommmu", "--skip-fetch",
                              "--json"], capsys)
    listing = json.loads(out)
    assert code == 2 and "videos named by the questions are missing" in err
    assert listing["archives"] == ["Science.zip", "question_only_videos.zip"]
    assert listing["extracted_files"] == len(science) + 1 and listing["video_files"] == len(science) + 1
    assert "Art/new_Art_4.mp4" in listing["missing_videos"]
    assert "question_only/dev_Geography_5_image.mp4" in listing["missing_videos"]
    assert "Science/dev_Biology_3.mp4" not in listing["missing_videos"]
    assert listing["questions_file"] == str(root) and listing["referenced_videos"] == 10 + 8
    assert len(get_benchmark("videommmu").load(root, root).questions) == 20  # the folder is --data too

    for name, members, link, message in (
        ("evil.zip", {"../evil.mp4": b"x"}, None, "points outside the target folder"),
        ("abs.zip", {"/tmp/abs.mp4": b"x"}, None, "points outside the target folder"),
        ("link.zip", {}, "Art/link.mp4", "is a link"),
    ):
        with pytest.raises(DownloadError, match=message):
            unzip_all([_zip(tmp_path / name, members, link)], tmp_path / "out", progress=False)
    assert not (tmp_path / "evil.mp4").exists() and not (tmp_path / "out").exists()
    (tmp_path / "broken.zip").write_bytes(b"not a zip")
    with pytest.raises(DownloadError, match="not a readable zip archive"):
        unzip_all([tmp_path / "broken.zip"], tmp_path / "out", progress=False)


def test_hub_offline_or_gated_fails_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run_cli(["data", "download", str(tmp_path / "v"), "--benchmark", "videommmu"], capsys)
    err = err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("error: could not download lmms-lab/VideoMMMU") and "--skip-fetch" in err
    with pytest.raises((ConfigError, DatasetError), match="pip install|offline"):
        get_benchmark("videommmu").load(None, None)  # without datasets, or offline: one line saying what to do

    class GatedRepoError(Exception):  # what huggingface_hub raises before the conditions are accepted
        pass

    def gated(**kwargs):
        raise GatedRepoError("403 Client Error\nmore lines")

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", gated)
    code, _, err = run_cli(["data", "download", str(tmp_path / "v"), "--benchmark", "videommmu"], capsys)
    assert code == 2 and err.strip().startswith("error: lmms-lab/VideoMMMU is gated: accept its terms at "
                                                "https://huggingface.co/datasets/lmms-lab/VideoMMMU")


# --------------------------------------------------------------------------- end to end

# question id -> (reply, expected prediction, rule, right) under the official protocol
WITH_VIDEO = {
    "Perception/dev_Biology_3": ("The answer is G.", "G", "letter_space", True),
    "Perception/test_Geography_114": ("(A)", "A", "letter_paren", True),
    "Perception/validation_Chemistry_13": ("E. coli aside, the answer is C", "E", "letter_period", False),
    "Perception/validation_Math_15": ("Not sure.", None, "none", False),
    "Perception/validation_Basic_Medical_Science_10": ("The answer is N", "N", "letter_space", False),
    "Perception/new_Art_4": ("The text highlighted in blue reads primary colors", "E", "option_text", True),
    "Comprehension/dev_Geography_5": ("J.", "J", "letter_space", True),
    "Comprehension/test_Geography_114": ("The answer is C, I think", "I", "letter_space", False),
    "Comprehension/validation_Chemistry_13": ("I", "I", "letter_space", True),
    "Comprehension/validation_Accounting_13": ("Answer: D", "D", "letter_space", False),
    "Comprehension/validation_Basic_Medical_Science_9": ("A. no. B. yes", "B", "letter_period", True),
    "Comprehension/new_Art_4": ("E: Statement 1 and 3 are correct", "E", "letter_colon", True),
    "Adaptation/dev_Geography_5": ("A", "A", "letter_space", True),
    "Adaptation/test_Geography_114": ("(B)", "B", "letter_paren", True),
    "Adaptation/validation_Chemistry_13": ("The mass is 12.966 g.", 12.97, "open_number", True),
    "Adaptation/validation_Chemistry_19": ("It could be 2 or 4", 4.0, "open_number", True),
    "Adaptation/validation_Math_15": ("The rate is 3.43 ft/s", "3.43 ft/s", "open_text", False),
    "Adaptation/validation_Accounting_13": ("C", " c", "open_text", True),
    "Adaptation/validation_Basic_Medical_Science_10": ("The answer is (C).", "(c)", "open_text", False),
    "Adaptation/new_Art_4": ("E", "E", "letter_space", True),
}
QUESTION_ONLY = {  # 4 of 8 right
    "Adaptation/dev_Geography_5": "A", "Adaptation/test_Geography_114": "A",
    "Adaptation/validation_Chemistry_13": "13", "Adaptation/validation_Chemistry_19": "4",
    "Adaptation/validation_Math_15": "3.43", "Adaptation/validation_Accounting_13": "C",
    "Adaptation/validation_Basic_Medical_Science_10": "C", "Adaptation/new_Art_4": "A",
}


@pytest.fixture
def videommmu_videos(tmp_path, synthetic_video):
    """The synthetic video under every name the sample records use, in both official layouts."""
    folder = tmp_path / "video_mmmu"
    for question in questions().values():
        names = [question.video]
        if question.groups["track"] == "Adaptation":
            names.append(f"question_only/{question.record['id']}_image.mp4")
        for name in names:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            if not (folder / name).exists():
                os.symlink(synthetic_video, folder / name)
    return folder


def _replier(table: dict[str, str], texts: dict[str, str]):
    """Reply to each request with the scripted reply of the question whose text the prompt holds."""
    def reply(body):
        prompt = body["messages"][0]["content"][0]["text"]
        (qid,) = [qid for qid, text in texts.items() if text in prompt]
        return Text(table[qid])
    return reply


def _rows(run: Path) -> dict[str, dict]:
    return {r["question_id"]: r for r in map(json.loads, (run / RESULTS_FILE).read_text().splitlines())}


def test_eval_score_and_report_with_delta_knowledge(fake_openai, videommmu_videos, tiny_clip_model, tmp_path, capsys):
    loaded = questions()
    texts = {qid: q.record["question"] for qid, q in loaded.items()}
    common = ["eval", "--benchmark", "videommmu", "--data", str(SAMPLES), "--videos", str(videommmu_videos),
              "--model", "fake-model", "--base-url", fake_openai.base_url, "--api-key", "sk-x", "--max-retries", "0",
              "--no-progress"]

    # the official end-to-end protocol
    fake_openai.responder = _replier({q: reply for q, (reply, *_) in WITH_VIDEO.items()}, texts)
    video_run = tmp_path / "with-video"
    code, _, err = run_cli([*common, "--method", "uniform", "--out", str(video_run)], capsys)
    assert code == 0, err
    assert_resumes_with_nothing_to_do([*common, "--method", "uniform", "--out", str(video_run)], capsys, fake_openai)
    rows = _rows(video_run)
    assert {qid: (r["prediction"], r["extraction"], r["correct"]) for qid, r in rows.items()} == {
        qid: (prediction, rule, right) for qid, (_, prediction, rule, right) in WITH_VIDEO.items()}
    assert {r["frames"] for r in rows.values()} == {32} and rows["Adaptation/new_Art_4"]["id"] == "new_Art_4"
    biology = texts["Perception/dev_Biology_3"]
    first = next(b for b in fake_openai.requests if biology in b["messages"][0]["content"][0]["text"])
    assert (first["temperature"], first["max_tokens"]) == (0.0, 1024) and len(first["messages"]) == 1
    content = first["messages"][0]["content"]
    assert content[0]["text"] == get_benchmark("videommmu").prompt_text(loaded["Perception/dev_Biology_3"])
    assert [part["type"] for part in content[1:]] == ["image_url"] * 32
    last = content[-1]["image_url"]["url"]
    assert last.startswith("data:image/jpeg;base64,")
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(last.split(",", 1)[1]))).convert("RGB"))
    assert decode_index(image) == 39  # the video's last frame (the Adaptation question's image) is sent

    # the question-only baseline: one flag
    fake_openai.reset()
    fake_openai.responder = _replier(QUESTION_ONLY, texts)
    blind_run = tmp_path / "question-only"
    code, _, err = run_cli([*common, "--method", "uniform", "--variant", "question_only", "--out", str(blind_run)],
                           capsys)
    assert code == 0, err
    blind = _rows(blind_run)
    assert sorted(blind) == sorted(QUESTION_ONLY) and {r["frames"] for r in blind.values()} == {1}
    assert blind["Adaptation/new_Art_4"]["video"] == "question_only/new_Art_4_image.mp4"
    assert sum(r["correct"] for r in blind.values()) == 4
    assert json.loads((blind_run / "config.json").read_text())["variant"] == "question_only"

    code, out, err = run_cli(["score", str(video_run), "--json"], capsys)
    assert code == 0, err
    card = json.loads(out)
    groups = {(g["kind"], g["name"]): g for g in card["groups"]}
    assert card["benchmark"] == "videommmu" and groups[("overall", "Overall")]["accuracy"] == pytest.approx(13 / 20)
    assert [groups[("track", t)]["accuracy"] for t in TRACKS] == pytest.approx([3 / 6, 4 / 6, 6 / 8])
    assert groups[("discipline", "Art")]["n"] == 3 and groups[("discipline", "Humanities")]["n"] == 0
    assert groups[("subject", "Chemistry")]["n"] == 4
    assert card["extraction_rules"]["none"] == 1 and card["extraction_rules"]["option_text"] == 1
    assert card["flags"] == {"gold_list_text": 1, "open_letter_answer": 1, "question_type_null": 1}

    report = tmp_path / "report"
    code, _, err = run_cli(["report", str(video_run), str(blind_run), "--out", str(report)], capsys)
    assert code == 0, err
    markdown = (report / "report.md").read_text(encoding="utf-8")
    assert markdown.startswith("# Video-MMMU evaluation report")
    assert ("| Overall | Perception | Comprehension | Adaptation | Art | Business | Science | Medicine | Humanities "
            "| Engineering |") in markdown.replace(" 95% CI (Wilson) |", "")
    assert "| GPT-4o (paper) | 61.2 | 66.0 | 62.0 | 55.7 | 69.5 | 66.9 | 51.5 | 64.8 | 69.5 | 57.1 |" in markdown
    assert ("Δknowledge of fake-model: +50.0% = (75.00 − 50.00) / (100 − 50.00) × 100; Adaptation 75.00% with the "
            "video (with-video, n=8), 50.00% question-only (question-only, n=8)") in markdown


def test_agent_answers_letters_numbers_and_texts(fake_openai, videommmu_videos, tiny_clip_model, tmp_path, capsys):
    def agent_script(body):
        (answer,) = [t["function"] for t in body["tools"] if t["function"]["name"] == "answer"]
        fields = answer["parameters"]["properties"]
        given = {"option": "A"} if "option" in fields else {"value": 12.97} if "value" in fields else {"text": "C"}
        return ToolCalls([Call("answer", {**given, "rationale": "seen", "evidence": [1.0]})])

    fake_openai.responder = agent_script
    run = tmp_path / "agent"
    code, _, err = run_cli(["eval", "--benchmark", "videommmu", "--data", str(SAMPLES), "--videos",
                            str(videommmu_videos), "--method", "agent", "--out", str(run), "--model", "fake-model",
                            "--base-url", fake_openai.base_url, "--api-key", "sk-x", "--max-retries", "0",
                            "--frames", "4", "--overview-frames", "2", "--clip-model", tiny_clip_model,
                            "--random-weights", "--cache-dir", str(tmp_path / "cache"), "--concurrency", "2",
                            "--no-progress"], capsys)
    assert code == 0, err
    rows = _rows(run)
    kinds = {qid: r["answer_kind"] for qid, r in rows.items()}
    assert {qid for qid, kind in kinds.items() if kind != "choice"} == {
        "Adaptation/validation_Chemistry_13", "Adaptation/validation_Chemistry_19", "Adaptation/validation_Math_15",
        "Adaptation/validation_Accounting_13", "Adaptation/validation_Basic_Medical_Science_10"}
    assert {r["extraction"] for r in rows.values()} == {"tool"}
    assert rows["Adaptation/validation_Chemistry_13"]["prediction"] == 12.97
    assert sorted(qid for qid, r in rows.items() if r["correct"]) == [
        "Adaptation/dev_Geography_5", "Adaptation/validation_Accounting_13",
        "Adaptation/validation_Basic_Medical_Science_10", "Adaptation/validation_Chemistry_13",
        "Perception/test_Geography_114"]
    code, out, _ = run_cli(["score", str(run), "--json"], capsys)
    assert json.loads(out)["groups"][0]["accuracy"] == pytest.approx(5 / 20)
