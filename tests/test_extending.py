"""Extending sleuth from outside the package: a benchmark and an agent strategy registered in this file
alone run through ``sleuth eval``, and are scored and reported, like the built-in ones."""

from __future__ import annotations

import json

import pytest

from agent.backends.base import ImagePart, Message, TextPart
from agent.strategies import Strategy, register_strategy, strategy_names
from agent.trace import FinalAnswer
from eval.benchmarks import Benchmark, Grouping, Reference, benchmark_names, register_benchmark
from eval.dataset import Question, RowError, checked_video, resolve_video
from eval.results import RESULTS_FILE
from tests.cli_helpers import run_cli
from tests.fake_openai import Call, Text, ToolCalls

ROOMS = ("kitchen", "garage")


@register_benchmark
class CountingBenchmark(Benchmark):
    """How many things are in the room: number answers, grouped by room."""

    name = "toy_counting"
    title = "Toy Counting"
    answer_kind = "number"
    default_frames = 4
    groupings = (Grouping("room", "room", order=ROOMS, headline=True),)
    references = (Reference("Counting oracle", 100.0, {"kitchen": 100.0, "garage": 100.0}, "reported"),)
    reference_source = "made up for this test; reported, not run here"

    def normalise(self, record, index, *, videos_dir, source):
        try:
            video = checked_video(str(record["clip"]))
            count = str(record["count"])
        except (KeyError, ValueError) as exc:
            raise RowError(index, record.get("id"), f"bad record ({exc})", source=source) from None
        return Question(
            question_id=str(record["id"]), video=video,
            video_path=resolve_video(videos_dir, video) if videos_dir else None,
            question=record["ask"], answer_kind="number", answer=count, groups={"room": record["room"]},
            record=record,
        )

    def prompt_names(self, *, cot=False):
        return []

    def build_messages(self, question, images, *, cot=False):
        parts = [TextPart(text=f"{question.question} Reply with a number.")]
        parts.extend(ImagePart.from_array(image, max_side=64) for image in images)
        return [Message(role="user", content=parts)]


@register_strategy
class LookOnceStrategy(Strategy):
    """Look at the middle frame, then answer with the answer tool alone."""

    name = "look_once"

    def run(self, context, on_event=None):
        middle = context.toolbox.duration / 2
        look = context.toolbox.call(ToolCall_(name="view_frames", arguments={"timestamps": [middle]}), frames_left=1)
        node = context.recorder.add("observation", 1, tool="view_frames", text=look.text, frames=look.frames)
        reply = context.backend.chat(
            [Message(role="user", content=[TextPart(text=context.question), *look.images])],
            tools=context.toolbox.specs(only=("answer",)),
        )
        (call,) = reply.tool_calls
        answer = context.toolbox.call(call, frames_left=0).answer
        context.recorder.finish(
            FinalAnswer(option=None, kind=context.answer_kind, value=answer.value, rationale=answer.rationale,
                        evidence=answer.evidence),
            1, after=[node.id],
        )
        return {"step": 1, "frames_shown": look.frames_shown}


def ToolCall_(**fields):
    from agent.backends.base import ToolCall

    return ToolCall(id="look", **fields)


@pytest.fixture
def counting_data(tmp_path, synthetic_video):
    videos = tmp_path / "clips"
    videos.mkdir()
    records = []
    for i in range(4):
        (videos / f"room{i}.mp4").symlink_to(synthetic_video)
        records.append({"id": f"c{i}", "clip": f"room{i}.mp4", "ask": f"How many chairs in room {i}?",
                        "count": str(2 + i), "room": ROOMS[i % 2]})
    data = tmp_path / "counting.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in records), encoding="utf-8")
    return data, videos, records


def test_registered_benchmark_and_strategy_run_score_and_report(
    fake_openai, counting_data, tiny_clip_model, tmp_path, capsys
):
    assert "toy_counting" in benchmark_names() and "look_once" in strategy_names()
    data, videos, records = counting_data
    common = ["eval", "--benchmark", "toy_counting", "--data", str(data), "--videos", str(videos),
              "--model", "fake-model", "--base-url", fake_openai.base_url, "--api-key", "sk-x", "--max-retries", "0",
              "--no-progress"]

    # the end-to-end protocol, as the benchmark defines it: "3" for every question
    fake_openai.responder = lambda body: Text("I count 3 chairs.")
    uniform = tmp_path / "uniform"
    code, _, err = run_cli([*common, "--method", "uniform", "--frames", "2", "--out", str(uniform)], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in (uniform / RESULTS_FILE).read_text().splitlines()]
    assert [r["prediction"] for r in rows] == [3.0] * 4 and {r["answer_kind"] for r in rows} == {"number"}
    # mean relative accuracy against 2, 3, 4, 5, as VSI-Bench's official code computes it (<=)
    assert [r["score"] for r in rows] == [0.1, 1.0, 0.6, 0.3]
    assert [r["room"] for r in rows] == ["kitchen", "garage"] * 2 and {r["benchmark"] for r in rows} == {"toy_counting"}
    body = fake_openai.requests[0]
    assert body["messages"][0]["content"][0]["text"] == "How many chairs in room 0? Reply with a number."

    # the agent with the registered strategy: it answers through the number-valued answer tool
    fake_openai.reset()
    fake_openai.responder = lambda body: ToolCalls([Call("answer", {"value": 4, "rationale": "four", "evidence": [1.0]})])
    agent = tmp_path / "agent"
    code, _, err = run_cli([*common, "--method", "agent", "--strategy", "look_once", "--frames", "2",
                            "--out", str(agent), "--clip-model", tiny_clip_model, "--random-weights",
                            "--cache-dir", str(tmp_path / "cache")], capsys)
    assert code == 0, err
    tools = fake_openai.requests[0]["tools"]
    assert [t["function"]["name"] for t in tools] == ["answer"]
    assert tools[0]["function"]["parameters"]["properties"]["value"]["type"] == "number"
    rows = [json.loads(line) for line in (agent / RESULTS_FILE).read_text().splitlines()]
    assert [r["prediction"] for r in rows] == [4.0] * 4 and [r["frames"] for r in rows] == [1] * 4
    assert json.loads((agent / "config.json").read_text())["identity"]["strategy"] == "look_once"
    assert json.loads((agent / "spec.json").read_text())["strategy"] == "look_once"

    # scored by the benchmark's own rule and grouping
    code, out, err = run_cli(["score", str(agent), "--json"], capsys)
    card = json.loads(out)
    groups = {(g["kind"], g["name"]): g for g in card["groups"]}
    assert card["benchmark"] == "toy_counting"
    assert groups[("overall", "Overall")]["accuracy"] == pytest.approx((0.0 + 0.4 + 1.0 + 0.6) / 4)
    assert set(groups) == {("overall", "Overall"), ("room", "kitchen"), ("room", "garage")}
    assert groups[("room", "garage")]["n"] == 2

    # and reported side by side, with the benchmark's headline groups and reference
    report = tmp_path / "report"
    code, _, err = run_cli(["report", str(uniform), str(agent), "--out", str(report)], capsys)
    assert code == 0, err
    markdown = (report / "report.md").read_text(encoding="utf-8")
    assert markdown.startswith("# Toy Counting evaluation report")
    assert "| Run | Method | Model | Questions | Errors | Overall | 95% CI (Wilson) | kitchen | garage |" in markdown
    assert "| Counting oracle (paper) | 100.0 | 100.0 | 100.0 | reported |" in markdown
    index = (report / "browser" / "index.html").read_text(encoding="utf-8")
    assert 'data-run="agent"' in index and 'data-accuracy="0.5"' in index  # partial credit counts, as in score


def test_unknown_names_fail_with_the_registered_choices(fake_openai, counting_data, tmp_path, capsys):
    data, videos, _ = counting_data
    base = ["eval", "--data", str(data), "--videos", str(videos), "--model", "fake-model",
            "--base-url", fake_openai.base_url, "--out", str(tmp_path / "run")]
    code, _, err = run_cli([*base, "--benchmark", "nope"], capsys)
    assert code == 2 and "unknown benchmark 'nope'; choose one of:" in err and "mmr_v" in err
    code, _, err = run_cli([*base, "--benchmark", "toy_counting", "--method", "nope"], capsys)
    assert code == 2 and "unknown method 'nope'; choose one of: agent, uniform" in err
