"""The agent end to end against the scripted OpenAI-compatible server.

The synthetic video (40 frames at 10 fps) encodes each frame's index in its
pixels, so every image the server receives can be checked against the
timestamp label in front of it.
"""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from agent.config import AgentConfig
from agent.run import solve
from agent.trace import Trace
from sleuth.errors import ConfigError
from tests.fake_openai import Call, Fault, Text, ToolCalls
from tests.video_fixtures import decode_index
from tools.video import VideoNotFoundError

QUESTION = "How many white bands does the last frame show?"
OPTIONS = ["(A) none", "(B) some", "(C) all"]
DURATION = 4.0  # synthetic_video: 40 frames at 10 fps


@pytest.fixture
def planner(openai_backend_factory):
    return openai_backend_factory(max_retries=0)


def run(video, backend, searcher, **kwargs):
    kwargs.setdefault("config", AgentConfig(overview_frames=4, max_steps=4, max_frames=16))
    return solve(video, QUESTION, OPTIONS, backend=backend, searcher=searcher, **kwargs)


def shown_images(request: dict) -> list[tuple[str, int]]:
    """(label, frame index decoded from the pixels) for every image in a request, in order."""
    found = []
    for message in request["messages"]:
        parts = message["content"] if isinstance(message["content"], list) else []
        for before, part in zip([None, *parts], parts):
            if part["type"] == "image_url":
                data = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
                label = before["text"] if before and before["type"] == "text" else None
                found.append((label, decode_index(np.asarray(Image.open(io.BytesIO(data))))))
    return found


def text_of(message: dict) -> str:
    content = message["content"]
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)


def tool_results(request: dict) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "tool"]


def check_trace(trace: Trace, tmp_path) -> Trace:
    """The trace round-trips through JSON, its edges point at real nodes, every frame lies inside the video."""
    loaded = Trace.load(trace.save(tmp_path / "trace.json"))
    assert loaded == trace
    ids = {n.id for n in trace.nodes}
    assert all(e.source in ids and e.target in ids for e in trace.edges)
    assert all(0.0 <= f.t <= trace.duration_s for f in trace.frames())
    assert trace.answer is not None and sum(n.kind == "answer" for n in trace.nodes) == 1
    return loaded


def test_full_run_searches_views_resamples_and_answers(fake_openai, planner, synthetic_video, random_searcher, tmp_path):
    fake_openai.enqueue(
        ToolCalls([Call("search_frames", {"query": "many white bands", "k": 2})], content="Search first."),
        ToolCalls([Call("view_frames", {"timestamps": [3.9, 1.0]}),
                   Call("resample_clip", {"start": 2.0, "end": 3.0, "n": 3})], content="Look closer."),
        ToolCalls([Call("answer", {"option": "B", "rationale": "bands are visible", "evidence": [3.9, 2.5]})]),
    )
    events = []
    trace = run(synthetic_video, planner, random_searcher, gold="(B)", question_id="q1", on_event=events.append)

    requests = fake_openai.requests
    assert len(requests) == 3
    # request 1: system prompt, then the question with 4 uniform frames labelled with their timestamps
    first = requests[0]
    assert [m["role"] for m in first["messages"]] == ["system", "user"]
    assert "4.0 seconds long" in first["messages"][0]["content"]
    assert QUESTION in first["messages"][1]["content"][0]["text"] and "(C) all" in first["messages"][1]["content"][0]["text"]
    assert shown_images(first) == [("t=0.00s", 0), ("t=1.30s", 13), ("t=2.60s", 26), ("t=3.90s", 39)]
    assert {t["function"]["name"] for t in first["tools"]} == {"search_frames", "view_frames", "resample_clip", "judge_options",
                                                         "answer"}
    # request 2: the search hits came back as JSON in a tool message
    hits = json.loads(tool_results(requests[1])[0])
    assert 1 <= len(hits) <= 2 and all(set(h) == {"t", "score"} and 0 <= h["t"] <= DURATION for h in hits)
    # request 3: the viewed and re-sampled frames follow the tool results as labelled images
    new_images = shown_images(requests[2])[4:]
    assert new_images == [("t=3.90s", 39), ("t=1.00s", 10), ("t=2.00s", 20), ("t=2.50s", 25), ("t=3.00s", 30)]
    assert all(round(float(label[2:-1]) * 10) == index for label, index in shown_images(requests[2]))
    results = tool_results(requests[2])
    assert results[1].startswith("showing 2 frames (t=3.90s, t=1.00s)") and "10 of 16 frames left" in results[1]
    assert results[2].startswith("showing 3 frames") and "7 of 16 frames left" in results[2]
    assert requests[2]["messages"][-1]["content"][-1]["text"] == "[2 of 4 steps and 7 of 16 frames left]"

    assert trace.answer.option == "B" and trace.answer.reason == "answered" and trace.answer.correct is True
    assert trace.answer.evidence == [3.9, 2.5] and trace.answer.gold == "B"
    assert trace.totals.steps == 3 and trace.totals.model_calls == 3 and trace.totals.frames_shown == 9
    assert trace.totals.tokens.total > 0 and trace.totals.cost_usd is None  # the fake model has no price
    kinds = [n.kind for n in trace.nodes]
    assert kinds == ["question", "overview", "thought", "tool_call", "observation", "thought", "tool_call",
                     "tool_call", "observation", "observation", "thought", "tool_call", "observation", "answer"]
    sources = {f.source for f in trace.frames()}
    assert sources == {"overview", "search", "view", "resample"}
    assert all(f.thumb for f in trace.frames() if f.shown)
    # evidence: 3.9 s was seen in the overview and in view_frames, 2.5 s in the resampled clip
    answer = trace.nodes[-1]
    cited = {e.target for e in trace.edges if e.kind == "evidence" and e.source == answer.id}
    assert cited == {"n1", "n8", "n9"}
    # the view/resample calls were prompted by the search observation
    assert {(e.source, e.target) for e in trace.edges if e.kind == "prompted"} >= {("n4", "n6"), ("n4", "n7")}
    assert trace.models == {"planner": "fake-model", "perception": "fake-model", "clip": random_searcher.model_id}
    assert "random-weights" in trace.labels
    assert set(trace.prompts) >= {"agent_system", "agent_final", "agent_reask", "agent_perception"}
    assert trace.settings["agent"]["max_frames"] == 16
    check_trace(trace, tmp_path)
    # progress was streamed node by node, then a final event
    assert [e["event"] for e in events] == ["overview", "plan", "act", "plan", "act", "plan", "act", "done"]
    streamed = [n["id"] for e in events for n in e.get("nodes", [])]
    assert streamed == [n.id for n in trace.nodes]


def test_step_budget_forces_a_final_answer_with_only_the_answer_tool(fake_openai, planner, synthetic_video,
                                                                      random_searcher, tmp_path):
    def script(body):
        tools = [t["function"]["name"] for t in body.get("tools", [])]
        if tools == ["answer"]:
            return ToolCalls([Call("answer", {"option": "c", "rationale": "best guess", "evidence": []})])
        return ToolCalls([Call("view_frames", {"timestamps": [0.1]})])

    fake_openai.responder = script
    config = AgentConfig(overview_frames=2, max_steps=3, max_frames=32)
    trace = run(synthetic_video, planner, random_searcher, config=config)
    assert len(fake_openai.requests) == 4  # 3 planning steps + the final answer
    final = fake_openai.requests[-1]
    assert "You have used all 3 steps." in final["messages"][-1]["content"]
    assert trace.answer.option == "C" and trace.answer.reason == "budget_exhausted"
    assert trace.totals.steps == 4 and trace.totals.frames_shown == 5
    check_trace(trace, tmp_path)


def test_frame_budget_is_never_exceeded(fake_openai, planner, synthetic_video, random_searcher, tmp_path):
    fake_openai.enqueue(
        ToolCalls([Call("view_frames", {"timestamps": [0.5, 1.5, 2.5]})]),  # 3 wanted, 2 left: refused
        ToolCalls([Call("resample_clip", {"start": 1, "end": 2, "n": 2})]),  # exactly the 2 left
        ToolCalls([Call("answer", {"option": "A", "rationale": "dark", "evidence": [1.0]})]),
    )
    trace = run(synthetic_video, planner, random_searcher, config=AgentConfig(overview_frames=6, max_frames=8))
    assert "frame budget: view_frames asks for 3 frames but only 2 of 8 are left" in tool_results(fake_openai.requests[1])[0]
    final = fake_openai.requests[2]
    assert "You have looked at all 8 frames of your budget." in final["messages"][-1]["content"]
    assert [t["function"]["name"] for t in final["tools"]] == ["answer"]
    assert len(shown_images(final)) == 8 == trace.totals.frames_shown
    assert trace.answer.option == "A" and trace.answer.reason == "budget_exhausted"
    check_trace(trace, tmp_path)


def test_overview_larger_than_the_frame_budget_is_capped(fake_openai, planner, synthetic_video, random_searcher, tmp_path):
    fake_openai.enqueue(ToolCalls([Call("answer", {"option": "A", "rationale": "r", "evidence": []})]))
    trace = run(synthetic_video, planner, random_searcher, config=AgentConfig(overview_frames=8, max_frames=3))
    assert len(shown_images(fake_openai.requests[0])) == 3 == trace.totals.frames_shown
    assert trace.answer.option == "A"


def test_token_budget_forces_a_final_answer(fake_openai, planner, synthetic_video, random_searcher, tmp_path):
    fake_openai.enqueue(
        ToolCalls([Call("view_frames", {"timestamps": [1.0]})], usage=(900, 200)),
        ToolCalls([Call("answer", {"option": "B", "rationale": "r", "evidence": [1.0]})], usage=(50, 5)),
    )
    trace = run(synthetic_video, planner, random_searcher,
                config=AgentConfig(overview_frames=2, max_frames=16, max_tokens=1000))
    assert "You have used the token budget (1100 of 1000 tokens)." in fake_openai.requests[1]["messages"][-1]["content"]
    assert trace.answer.reason == "budget_exhausted" and trace.totals.tokens.total == 1155
    check_trace(trace, tmp_path)


def test_every_kind_of_bad_tool_call_is_an_observation(fake_openai, planner, synthetic_video, random_searcher, tmp_path):
    fake_openai.enqueue(
        ToolCalls([
            Call("zoom", {"t": 1}),
            Call("view_frames", '{"timestamps": [1.0,'),  # malformed JSON
            Call("view_frames", {"timestamps": "1.0 and 2.0"}),
            Call("resample_clip", {"start": 3, "end": 1}),
            Call("view_frames", {"timestamps": [-2, 250]}),
        ]),
        ToolCalls([Call("answer", {"option": "B", "rationale": "r", "evidence": [0.0, 3.9]})]),
    )
    trace = run(synthetic_video, planner, random_searcher)
    results = tool_results(fake_openai.requests[1])
    assert len(results) == 5
    assert results[0].startswith("error: unknown tool 'zoom'")
    assert results[1].startswith("error: the arguments are not a JSON object")
    assert results[2].startswith("error: invalid arguments for view_frames: timestamps")
    assert results[3].startswith("error: empty window: start 3.00s is not before end 1.00s")
    assert results[4].startswith("showing 2 frames (t=0.00s, t=3.90s)")
    assert "timestamp -2s is outside the video (0 to 4.00s); clamped to 0.00s" in results[4]
    assert "timestamp 250s is outside the video" in results[4]
    observations = [n for n in trace.nodes if n.kind == "observation"]
    assert [bool(n.error) for n in observations[:5]] == [True, True, True, True, False]
    malformed = [n for n in trace.nodes if n.kind == "tool_call"][1]
    assert malformed.error and malformed.arguments == {"raw": '{"timestamps": [1.0,'}
    assert trace.answer.option == "B"
    check_trace(trace, tmp_path)


def test_a_model_that_never_calls_answer_ends_with_no_answer(fake_openai, planner, synthetic_video,
                                                             random_searcher, tmp_path):
    fake_openai.responder = lambda body: Text("I am not sure what the video shows.")
    trace = run(synthetic_video, planner, random_searcher, config=AgentConfig(overview_frames=2, max_steps=2))
    # 2 planning steps, each followed by a nudge, then the final answer and its one re-ask
    assert len(fake_openai.requests) == 4
    assert "You did not call a tool." in fake_openai.requests[1]["messages"][-1]["content"]
    assert "You have used all 2 steps." in fake_openai.requests[2]["messages"][-1]["content"]
    assert fake_openai.requests[3]["messages"][-1]["content"].startswith('"I am not sure what the video shows."')
    assert trace.answer.option is None and trace.answer.reason == "no_answer"
    assert trace.answer.correct is None
    check_trace(trace, tmp_path)


def test_no_answer_with_gold_counts_as_wrong(fake_openai, planner, synthetic_video, random_searcher, tmp_path):
    fake_openai.responder = lambda body: Text("Hmm.")
    trace = run(synthetic_video, planner, random_searcher, gold="A", config=AgentConfig(overview_frames=1, max_steps=1))
    assert trace.answer.option is None and trace.answer.correct is False and trace.answer.gold == "A"


def test_invalid_letter_is_re_asked_once(fake_openai, planner, synthetic_video, random_searcher, tmp_path):
    fake_openai.enqueue(
        ToolCalls([Call("answer", {"option": "E", "rationale": "r", "evidence": []})]),
        ToolCalls([Call("answer", {"option": "(C) all", "rationale": "r2", "evidence": [3.9]})]),
    )
    trace = run(synthetic_video, planner, random_searcher)
    reask = fake_openai.requests[1]["messages"]
    assert tool_results(fake_openai.requests[1])[0] == "error: 'E' is not one of this question's letters (A, B, C)"
    assert '"E" is not a valid answer to this question. Call `answer` again with exactly one of the letters A, B, C' in (
        reask[-1]["content"][-1]["text"])
    assert trace.answer.option == "C" and trace.answer.reason == "answered" and trace.answer.rationale == "r2"
    check_trace(trace, tmp_path)


def test_invalid_letter_twice_is_no_answer_never_a_guess(fake_openai, planner, synthetic_video, random_searcher, tmp_path):
    fake_openai.responder = lambda body: ToolCalls([Call("answer", {"option": "Z", "rationale": "r", "evidence": []})])
    trace = run(synthetic_video, planner, random_searcher)
    assert len(fake_openai.requests) == 2
    assert trace.answer.option is None and trace.answer.reason == "invalid_letter"
    check_trace(trace, tmp_path)


def test_final_answer_may_be_a_bare_letter_from_a_model_without_tools(fake_openai, planner, synthetic_video,
                                                                     random_searcher, tmp_path):
    fake_openai.enqueue(Text("Let me think about the bands."), Text("(B)"))
    trace = run(synthetic_video, planner, random_searcher, config=AgentConfig(overview_frames=1, max_steps=1))
    assert trace.answer.option == "B" and trace.answer.reason == "budget_exhausted"


def test_server_failure_is_recorded_not_raised(fake_openai, planner, synthetic_video, random_searcher, tmp_path):
    fake_openai.enqueue(
        ToolCalls([Call("view_frames", {"timestamps": [1.0]})]),
        Fault.server_error(message="the GPU caught fire"),
    )
    events = []
    trace = run(synthetic_video, planner, random_searcher, on_event=events.append)
    assert trace.answer.option is None and trace.answer.reason == "error"
    failed = [n for n in trace.nodes if n.kind == "thought" and n.error]
    assert len(failed) == 1 and "the GPU caught fire" in failed[0].error
    assert events[-1]["event"] == "done" and events[-1]["answer"]["reason"] == "error"
    check_trace(trace, tmp_path)


def test_delegated_perception_sends_frames_to_the_perception_model(fake_openai, openai_backend_factory, synthetic_video,
                                                                   random_searcher, tmp_path):
    def script(body):
        if body["model"] == "vision-model":
            question = body["messages"][0]["content"][0]["text"]
            return Text(f"I see {len(shown_images(body))} frames. ({len(question)} chars asked)", usage=(100, 10))
        if not tool_results(body):
            return ToolCalls([Call("view_frames", {"timestamps": [1.0, 2.0], "question": "How many bands are white?"})])
        return ToolCalls([Call("answer", {"option": "B", "rationale": "the perception model said so", "evidence": [2.0]})])

    fake_openai.responder = script
    planner = openai_backend_factory(max_retries=0)
    perception = openai_backend_factory(model="vision-model", max_retries=0)
    config = AgentConfig(overview_frames=3, max_frames=8, perception="delegated")
    trace = run(synthetic_video, planner, random_searcher, config=config, perception_backend=perception)

    by_model = {}
    for body in fake_openai.requests:
        by_model.setdefault(body["model"], []).append(body)
    assert len(by_model["vision-model"]) == 2 and len(by_model["fake-model"]) == 2
    overview_look, view_look = by_model["vision-model"]
    assert [label for label, _ in shown_images(overview_look)] == ["t=0.00s", "t=1.90s", "t=3.90s"]
    assert QUESTION in overview_look["messages"][0]["content"][0]["text"]
    assert shown_images(view_look) == [("t=1.00s", 10), ("t=2.00s", 20)]
    assert "How many bands are white?" in view_look["messages"][0]["content"][0]["text"]
    # the planner never receives an image, only the perception model's words
    assert all(not shown_images(body) for body in by_model["fake-model"])
    assert "I see 3 frames." in text_of(by_model["fake-model"][0]["messages"][1])
    assert "question" in by_model["fake-model"][0]["tools"][1]["function"]["parameters"]["properties"]
    assert tool_results(by_model["fake-model"][1])[0].startswith("perception model on t=1.00s, t=2.00s: I see 2 frames.")
    assert trace.models["perception"] == "vision-model" and trace.models["planner"] == "fake-model"
    assert trace.totals.frames_shown == 5 and trace.totals.model_calls == 4
    assert trace.answer.option == "B"
    check_trace(trace, tmp_path)


def test_garbage_from_a_tiny_random_vlm_ends_cleanly(tiny_vlm_dir, synthetic_video, random_searcher, tmp_path):
    from agent.backends import create_backend
    from agent.backends.config import BackendConfig

    backend = create_backend(BackendConfig(backend="transformers", model=str(tiny_vlm_dir), device="cpu", max_tokens=24))
    trace = run(synthetic_video, backend, random_searcher,
                config=AgentConfig(overview_frames=2, max_steps=2, max_frames=4, image_max_side=64))
    assert trace.answer.option is None and trace.answer.reason in ("no_answer", "invalid_letter", "error")
    thoughts = [n for n in trace.nodes if n.kind == "thought"]
    assert thoughts and all(n.tokens is not None or n.error for n in thoughts)
    assert trace.totals.model_calls >= 2
    check_trace(trace, tmp_path)


def test_missing_video_raises_a_video_error(planner, random_searcher, tmp_path):
    with pytest.raises(VideoNotFoundError, match="missing.mp4"):
        solve(tmp_path / "missing.mp4", QUESTION, OPTIONS, backend=planner, searcher=random_searcher)


def test_bad_settings_are_config_errors(planner, synthetic_video, random_searcher):
    with pytest.raises(ConfigError, match="perception model"):
        solve(synthetic_video, QUESTION, OPTIONS, backend=planner, searcher=random_searcher,
              config=AgentConfig(perception="delegated"))
    with pytest.raises(ConfigError, match="gold answer 'Q'"):
        solve(synthetic_video, QUESTION, OPTIONS, backend=planner, searcher=random_searcher, gold="Q")
    with pytest.raises(ConfigError, match="at least one option"):
        solve(synthetic_video, QUESTION, [], backend=planner, searcher=random_searcher)


def test_options_without_letters_are_lettered_in_order(fake_openai, planner, synthetic_video, random_searcher):
    fake_openai.enqueue(ToolCalls([Call("answer", {"option": "B", "rationale": "r", "evidence": []})]))
    trace = solve(synthetic_video, QUESTION, ["none", "some"], backend=planner, searcher=random_searcher,
                  config=AgentConfig(overview_frames=1))
    assert trace.options == ["(A) none", "(B) some"] and trace.answer.option == "B"
    assert "Answer with one of these letters: A, B." in fake_openai.requests[0]["messages"][1]["content"][0]["text"]


def test_routing_and_budgets_are_plain_functions():
    from types import SimpleNamespace

    from langgraph.graph import END

    from agent.strategies.planner import after_act, after_final_answer, after_plan, budget_exhausted
    from agent.trace import FinalAnswer

    ctx = SimpleNamespace(config=AgentConfig(max_steps=3, max_frames=10, max_tokens=500))
    fresh = {"step": 1, "frames_shown": 4, "tokens_used": 100}
    assert budget_exhausted(fresh, ctx) is None
    assert budget_exhausted({**fresh, "step": 3}, ctx) == "You have used all 3 steps."
    assert budget_exhausted({**fresh, "frames_shown": 10}, ctx) == "You have looked at all 10 frames of your budget."
    assert "token budget" in budget_exhausted({**fresh, "tokens_used": 500}, ctx)
    unlimited = SimpleNamespace(config=AgentConfig(max_tokens=None))
    assert budget_exhausted({**fresh, "tokens_used": 10**9}, unlimited) is None

    done = {"final": FinalAnswer(option="A")}
    assert after_plan({}) == "act" and after_plan(done) == END
    assert after_act({"exhausted": None}) == "plan" and after_act({"exhausted": "x"}) == "final_answer"
    assert after_act(done) == END
    assert after_final_answer({}) == "final_answer" and after_final_answer(done) == END


def test_citing_a_moment_no_model_saw_is_flagged(fake_openai, planner, synthetic_video, random_searcher, tmp_path):
    """Overview frames at 0.0, 1.3, 2.6 and 3.9 s: 1.95 s is more than the tolerance from all of them, and a
    search hit listed as text was never shown."""
    fake_openai.enqueue(
        ToolCalls([Call("search_frames", {"query": "white bands", "k": 3})]),
        ToolCalls([Call("answer", {"option": "B", "rationale": "bands", "evidence": [1.3, 1.95]})]),
    )
    trace = check_trace(run(synthetic_video, planner, random_searcher), tmp_path)
    assert trace.answer.option == "B" and trace.answer.unseen_evidence == [1.95]
    (answer,) = [n for n in trace.nodes if n.kind == "answer"]
    assert answer.error == "cites frames no model was shown: 1.95s"


def test_contact_sheet_overview_tiles_frames_and_counts_each(fake_openai, planner, synthetic_video, random_searcher,
                                                             tmp_path):
    fake_openai.enqueue(ToolCalls([Call("answer", {"option": "A", "rationale": "seen", "evidence": [0.0]})]))
    config = AgentConfig(overview_frames=8, max_frames=12, overview_mode="contact_sheet", sheet_tiles=4)
    trace = check_trace(run(synthetic_video, planner, random_searcher, config=config), tmp_path)
    images = shown_images(fake_openai.requests[0])
    assert [label for label, _ in images] == [
        "contact sheet: 4 frames, t=0.00s to t=1.60s", "contact sheet: 4 frames, t=2.20s to t=3.90s"]
    sheet = fake_openai.requests[0]["messages"][1]["content"][-1]["image_url"]["url"]
    width, height = Image.open(io.BytesIO(base64.b64decode(sheet.split(",", 1)[1]))).size
    assert (width, height) == (4 * 192, 144 + 12)  # four 192x144 tiles of the 160x120 frames, labelled
    assert trace.totals.frames_shown == 8  # eight frames seen, in two images
    (overview,) = [n for n in trace.nodes if n.kind == "overview"]
    assert len(overview.frames) == 8 and "contact sheets of 4" in overview.text


def test_a_planner_that_cannot_read_images_is_labelled(fake_openai, planner, synthetic_video, random_searcher):
    class TextOnly:  # a backend whose model reads text only (as the offline SmolLM2 planner)
        vision = False
        model = "text-only"

        def chat(self, messages, tools=None, settings=None):
            return planner.chat(messages, tools=tools, settings=settings)

    fake_openai.responder = lambda body: ToolCalls([Call("answer", {"option": "A", "rationale": "r", "evidence": []})])
    assert "planner sees no images" in run(synthetic_video, TextOnly(), random_searcher).labels
    assert "planner sees no images" not in run(synthetic_video, planner, random_searcher).labels
