"""The agent's tools on their own: schemas from signatures, letters, and every kind of bad call."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from agent.backends.base import ToolCall
from agent.config import AgentConfig
from agent.toolbox import Toolbox, tool_spec
from sleuth.answers import resolve_letter
from tests.video_fixtures import decode_index
from tools.video import open_video

LETTERS = ["A", "B", "C"]
OPTIONS = ["(A) a cat", "(B) a dog", "(C) a cow"]


@pytest.fixture
def toolbox(synthetic_video, random_searcher):
    config = AgentConfig(max_frames=10, search_k=3, resample_n=4, min_gap_s=0.5)
    with open_video(synthetic_video) as video:
        yield Toolbox(video=video, video_path=synthetic_video, searcher=random_searcher, config=config,
                      letters=LETTERS, options=OPTIONS)


def call(name: str, arguments: dict | None = None, **extra) -> ToolCall:
    return ToolCall(id="c1", name=name, arguments=arguments or {}, **extra)


def test_schemas_come_from_the_signatures(toolbox):
    specs = {s.name: s for s in toolbox.specs()}
    assert list(specs) == ["search_frames", "view_frames", "resample_clip", "judge_options", "answer"] == toolbox.tool_names
    search = specs["search_frames"].parameters
    assert search["required"] == ["query"]
    assert search["properties"]["k"] == {"default": 3, "description": "how many moments to return.", "type": "integer"}
    assert {"type": "number"} in search["properties"]["start"]["anyOf"]
    assert specs["view_frames"].parameters["properties"]["timestamps"]["items"] == {"type": "number"}
    assert specs["resample_clip"].parameters["required"] == ["start", "end"]
    assert specs["resample_clip"].parameters["properties"]["n"]["default"] == 4
    assert specs["answer"].parameters["required"] == ["option", "rationale", "evidence"]
    assert "CLIP" in specs["search_frames"].description
    # direct perception: the planner sees frames itself, so no sub-question argument
    assert "question" not in specs["view_frames"].parameters["properties"]
    assert [s.name for s in toolbox.specs(only=("answer",))] == ["answer"]
    json.dumps([s.openai_schema() for s in specs.values()])  # serialisable as sent


def test_delegated_mode_adds_the_sub_question(synthetic_video, random_searcher):
    config = AgentConfig(perception="delegated")
    with open_video(synthetic_video) as video:
        box = Toolbox(video=video, video_path=synthetic_video, searcher=random_searcher, config=config,
                      letters=LETTERS, perception_backend=object())
        specs = {s.name: s for s in box.specs()}
    assert "question" in specs["view_frames"].parameters["properties"]
    assert "question" in specs["resample_clip"].parameters["properties"]
    assert "question" not in specs["view_frames"].parameters["required"]


def test_tool_spec_reads_google_docstrings():
    def measure(length: float, unit: str = "cm") -> None:
        """Measure something.

        Args:
            length: how long it is,
                in units.
            unit: the unit.
        """

    spec = tool_spec(measure)
    assert spec.description == "Measure something."
    assert spec.parameters["properties"]["length"]["description"] == "how long it is, in units."
    assert spec.parameters["properties"]["unit"] == {"default": "cm", "description": "the unit.", "type": "string"}


@pytest.mark.parametrize(
    "given, expected",
    [("B", "B"), ("b", "B"), ("(B)", "B"), ("B)", "B"), ("(B) a dog", "B"), ("B. a dog", "B"), ("a dog", "B"),
     ("(B) A DOG", "B"), ("Z", None), ("(Z)", None), ("", None), ("Because it barks", None), ("A or B", None)],
)
def test_resolve_letter(given, expected):
    assert resolve_letter(given, LETTERS, OPTIONS) == expected


def test_view_frames_shows_the_nearest_frames_labelled(toolbox):
    obs = toolbox.call(call("view_frames", {"timestamps": [0.5, 2.0]}), frames_left=10)
    assert obs.error is None and obs.frames_shown == 2
    assert [f.t for f in obs.frames] == pytest.approx([0.5, 2.0])
    assert [f.source for f in obs.frames] == ["view", "view"]
    assert all(f.thumb.startswith("data:image/jpeg;base64,") for f in obs.frames)
    assert [im.label for im in obs.images] == ["t=0.50s", "t=2.00s"]
    shown = [decode_index(np.asarray(Image.open(io.BytesIO(im.jpeg)))) for im in obs.images]
    assert shown == [5, 20]  # the synthetic video's frame i is at i / 10 s
    assert "8 of 10 frames left" in obs.text


def test_out_of_range_timestamps_are_clamped_and_reported(toolbox):
    obs = toolbox.call(call("view_frames", {"timestamps": [-3, 99.5]}), frames_left=10)
    assert obs.error is None
    assert [f.t for f in obs.frames] == pytest.approx([0.0, 3.9])
    assert "timestamp -3s is outside the video (0 to 4.00s); clamped to 0.00s" in obs.text
    assert "timestamp 99.5s is outside the video" in obs.text


def test_resample_clip_windows(toolbox):
    obs = toolbox.call(call("resample_clip", {"start": 1.0, "end": 2.0}), frames_left=10)
    assert obs.frames_shown == 4 and [f.source for f in obs.frames] == ["resample"] * 4
    assert all(1.0 <= f.t <= 2.0 for f in obs.frames)
    clamped = toolbox.call(call("resample_clip", {"start": 3.5, "end": 40, "n": 2}), frames_left=10)
    assert clamped.error is None and "end 40s is outside the video" in clamped.text
    assert all(3.5 <= f.t <= 4.0 for f in clamped.frames)
    empty = toolbox.call(call("resample_clip", {"start": 2.0, "end": 1.0}), frames_left=10)
    assert empty.error and "empty window" in empty.text
    zero = toolbox.call(call("resample_clip", {"start": 0, "end": 1, "n": 0}), frames_left=10)
    assert zero.error == "n must be at least 1, got 0"


def test_frame_budget_overrun_says_what_is_left(toolbox):
    obs = toolbox.call(call("view_frames", {"timestamps": [0.1, 0.2, 0.3]}), frames_left=2)
    assert obs.frames_shown == 0 and not obs.images
    assert obs.error == ("frame budget: view_frames asks for 3 frames but only 2 of 10 are left; "
                         "ask for at most 2, or answer")
    obs = toolbox.call(call("resample_clip", {"start": 0, "end": 1, "n": 8}), frames_left=0)
    assert "only 0 of 10 are left" in obs.error


@pytest.mark.parametrize(
    "bad_call, message",
    [
        (call("zoom_in", {"t": 1}), "unknown tool 'zoom_in'; the tools are: search_frames, view_frames, resample_clip, judge_options, answer"),
        (call("view_frames", {}, raw_arguments='{"timestamps": [1,', error="Expecting value"),
         "the arguments are not a JSON object (Expecting value)"),
        (call("view_frames", {"timestamps": "soon"}), "invalid arguments for view_frames: timestamps"),
        (call("view_frames", {}), "missing argument 'timestamps'"),
        (call("view_frames", {"timestamps": [1.0], "zoom": 2}), "unexpected argument 'zoom'"),
        (call("view_frames", {"timestamps": []}), "view_frames needs at least one timestamp"),
        (call("search_frames", {"query": "  "}), "search_frames needs a non-empty query"),
        (call("search_frames", {"query": "x", "k": 0}), "k must be at least 1"),
        (call("answer", {"option": "B"}), "missing argument 'rationale'"),
    ],
)
def test_bad_calls_become_observations(toolbox, bad_call, message):
    obs = toolbox.call(bad_call, frames_left=10)
    assert obs.error is not None and message in obs.error
    assert obs.text.startswith("error: ") and obs.frames_shown == 0 and obs.answer is None


def test_search_frames_returns_json_hits_inside_the_window(toolbox):
    obs = toolbox.call(call("search_frames", {"query": "white bands", "k": 3, "start": 1.0, "end": 3.0}), frames_left=10)
    hits = json.loads(obs.text)
    assert 1 <= len(hits) <= 3 and all(1.0 <= h["t"] <= 3.0 for h in hits)
    assert [f.source for f in obs.frames] == ["search"] * len(hits)
    assert all(not f.shown and f.score is not None for f in obs.frames)
    assert obs.frames_shown == 0  # hits are listed, not shown
    clamped = toolbox.call(call("search_frames", {"query": "white", "start": -5, "end": 1.0}), frames_left=10)
    assert "start -5s is outside the video" in clamped.text and all(h["t"] <= 1.0 for h in json.loads(clamped.text.split("\n")[0]))


def test_answer_is_returned_for_the_graph_to_check(toolbox):
    obs = toolbox.call(call("answer", {"option": "(B)", "rationale": "barks", "evidence": [1, 2.5]}), frames_left=0)
    assert obs.error is None and obs.answer.option == "(B)" and obs.answer.evidence == [1.0, 2.5]


def test_judge_options_schema_is_self_contained_and_verdicts_are_checked(toolbox):
    spec = {s.name: s for s in toolbox.specs()}["judge_options"].parameters
    assert "$defs" not in spec and "$ref" not in json.dumps(spec)  # servers that do not resolve references
    item = spec["properties"]["verdicts"]["items"]
    assert item["properties"]["verdict"]["enum"] == ["supported", "refuted", "unknown"]
    obs = toolbox.call(call("judge_options", {"verdicts": [{"option": "(b) a dog", "verdict": "supported",
                                                            "times": [9.0]}]}), frames_left=10)
    assert obs.error is None and [(v.option, v.times) for v in obs.verdicts] == [("B", [4.0])]  # clamped to the video
    assert obs.text == "verdicts now: A: not judged; B: supported; C: not judged. Still standing: A, B, C."
    bad = toolbox.call(call("judge_options", {"verdicts": [{"option": "B", "verdict": "likely"}]}), frames_left=10)
    assert bad.error.startswith("invalid arguments for judge_options: verdicts.0.verdict")
