"""The ``captions`` strategy against the scripted server: the video described segment by segment, the
planner reading that memory then looking for itself; captions cached and still counted."""

from __future__ import annotations

import re

from agent.config import AgentConfig
from agent.run import solve
from tests.fake_openai import Call, Text, ToolCalls
from tests.test_agent import OPTIONS, QUESTION, check_trace, shown_images, text_of

SEGMENT = re.compile(r"from (\d+\.\d)s to (\d+\.\d)s")


def responder(planner_steps):
    steps = iter(planner_steps)

    def reply(body):
        if not body.get("tools"):  # a captioning call: describe the segment it names
            start, end = SEGMENT.search(text_of(body["messages"][0])).groups()
            return Text(f"bands between {start} and {end}")
        return ToolCalls(next(steps))
    return reply


def run(fake_openai, backend, video, searcher, **config):
    config = AgentConfig(max_frames=config.pop("max_frames", 16), caption_segments=4, caption_frames=2, **config)
    return solve(video, QUESTION, OPTIONS, backend=backend, searcher=searcher, config=config, strategy="captions")


STEPS = [[Call("view_frames", {"timestamps": [3.5]})],
         [Call("answer", {"option": "B", "rationale": "seen", "evidence": [3.5, 0.0]})]]


def test_the_planner_reads_a_caption_memory_then_looks(fake_openai, openai_backend_factory, synthetic_video,
                                                       random_searcher, tmp_path):
    fake_openai.responder = responder(STEPS)
    trace = run(fake_openai, openai_backend_factory(max_retries=0), synthetic_video, random_searcher)
    check_trace(trace, tmp_path)
    captioning = fake_openai.requests[:4]
    for i, body in enumerate(captioning):  # each segment's model saw 2 of its own frames
        images = shown_images(body)
        assert len(images) == 2 and all(i <= index / 10 <= i + 1 for _, index in images)
    first_plan = fake_openai.requests[4]
    assert shown_images(first_plan) == []  # the memory is words; no overview frames
    assert "caption memory" in first_plan["messages"][0]["content"]
    memory = text_of(first_plan["messages"][1])
    assert "- 0.0s to 1.0s: bands between 0.0 and 1.0" in memory and "- 3.0s to 4.0s: bands between 3.0 and 4.0" in memory
    node = next(n for n in trace.nodes if n.kind == "captions")
    assert len(node.captions) == 4 and not any(c.cached for c in node.captions)
    assert len(node.frames) == 8 and node.tokens.total > 0
    assert trace.totals.frames_shown == 8 + 1 and trace.totals.model_calls == 4 + 2
    # a caption frame was seen by a model: citing it is not flagged; the answer rests on it
    assert trace.answer.option == "B" and trace.answer.unseen_evidence == []


def test_a_cached_memory_is_reused_and_still_counts_its_frames(fake_openai, openai_backend_factory,
                                                               synthetic_video, random_searcher):
    fake_openai.responder = responder(STEPS)
    first = run(fake_openai, openai_backend_factory(max_retries=0), synthetic_video, random_searcher)
    fake_openai.reset()
    fake_openai.responder = responder(STEPS)
    second = run(fake_openai, openai_backend_factory(max_retries=0), synthetic_video, random_searcher)
    assert len(fake_openai.requests) == 2  # only the planner's calls: the captions came from the cache
    node = next(n for n in second.nodes if n.kind == "captions")
    before = next(n for n in first.nodes if n.kind == "captions")
    assert all(c.cached for c in node.captions) and [c.text for c in node.captions] == [c.text for c in before.captions]
    assert [f.t for f in node.frames] == [f.t for f in before.frames]
    assert second.totals.frames_shown == first.totals.frames_shown == 9
    assert second.totals.pixels_shown == first.totals.pixels_shown == 9 * 160 * 120


def test_captions_take_at_most_half_the_frame_budget(fake_openai, openai_backend_factory, synthetic_video,
                                                     random_searcher):
    fake_openai.responder = responder([[Call("answer", {"option": "A", "rationale": "r", "evidence": []})]])
    trace = run(fake_openai, openai_backend_factory(max_retries=0), synthetic_video, random_searcher, max_frames=6)
    node = next(n for n in trace.nodes if n.kind == "captions")
    assert len(node.captions) == 1 and trace.totals.frames_shown == 2
