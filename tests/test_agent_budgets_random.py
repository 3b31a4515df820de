"""The planner under arbitrary tool calls: whatever a model asks for, no budget is exceeded and every
moment an answer cites was shown to a model or is flagged. Seeded, so a failure replays."""

from __future__ import annotations

import random

import pytest

from agent.config import AgentConfig
from agent.run import solve
from tests.fake_openai import Call, Text, ToolCalls

DURATION = 4.0  # synthetic_video


def random_call(rng: random.Random) -> Call:
    t = lambda: round(rng.uniform(-1.0, DURATION + 1.0), 2)  # noqa: E731 (out-of-range times included)
    kind = rng.choice(["search", "view", "resample", "answer", "bogus", "bad_args"])
    if kind == "search":
        return Call("search_frames", {"query": rng.choice(["bands", "a dog", ""]), "k": rng.randint(0, 6)})
    if kind == "view":
        return Call("view_frames", {"timestamps": [t() for _ in range(rng.randint(0, 9))]})
    if kind == "resample":
        return Call("resample_clip", {"start": t(), "end": t(), "n": rng.randint(0, 12)})
    if kind == "answer":
        return Call("answer", {"option": rng.choice("ABCDE"), "rationale": "r",
                               "evidence": [t() for _ in range(rng.randint(0, 3))]})
    if kind == "bogus":
        return Call("zoom", {"factor": 2})
    return Call("view_frames", '{"timestamps": [1.0,')  # malformed JSON


def images_in(body: dict) -> int:
    return sum(1 for m in body["messages"] if isinstance(m["content"], list)
               for part in m["content"] if part["type"] == "image_url")


@pytest.mark.parametrize("seed", range(10))
def test_no_budget_is_exceeded_and_citations_were_seen(seed, fake_openai, openai_backend_factory, synthetic_video,
                                                       random_searcher):
    rng = random.Random(seed)
    config = AgentConfig(max_frames=rng.randint(2, 12), max_steps=rng.randint(1, 5), overview_frames=rng.randint(0, 4),
                         max_tool_calls=rng.randint(1, 4))

    def reply(body):
        if rng.random() < 0.15:
            return Text(rng.choice(["B", "I think so.", ""]) or "nothing")
        return ToolCalls([random_call(rng) for _ in range(rng.randint(1, 5))])

    fake_openai.responder = reply
    trace = solve(synthetic_video, "How many bands?", ["(A) none", "(B) some", "(C) all"],
                  backend=openai_backend_factory(max_retries=0), searcher=random_searcher, config=config)

    assert trace.totals.frames_shown <= config.max_frames
    assert max(map(images_in, fake_openai.requests)) <= config.max_frames  # what the server actually received
    assert trace.totals.steps <= config.max_steps + 2  # the forced final answer and its one re-ask
    for step in {n.step for n in trace.nodes}:
        assert sum(n.kind == "tool_call" for n in trace.nodes if n.step == step) <= config.max_tool_calls
    shown = [f.t for f in trace.frames() if f.shown]
    for t in trace.answer.evidence:
        seen = any(abs(t - s) <= 0.5 for s in shown)
        assert seen != (t in trace.answer.unseen_evidence)  # seen, or flagged: never silently unseen
    assert trace.answer.option in (None, "A", "B", "C")
