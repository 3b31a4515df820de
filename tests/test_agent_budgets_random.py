"""Every strategy under arbitrary tool calls: whatever a model asks for, no budget is exceeded and every
moment an answer or a verdict cites was shown to a model or is flagged. Seeded, so a failure replays."""

from __future__ import annotations

import random

import pytest

from agent.config import AgentConfig
from agent.run import solve
from tests.fake_openai import Call, Text, ToolCalls

DURATION = 4.0  # synthetic_video


def random_call(rng: random.Random) -> Call:
    t = lambda: round(rng.uniform(-1.0, DURATION + 1.0), 2)  # noqa: E731 (out-of-range times included)
    kind = rng.choice(["search", "view", "resample", "answer", "judge", "judge_answer", "bogus", "bad_args"])
    if kind == "search":
        return Call("search_frames", {"query": rng.choice(["bands", "a dog", ""]), "k": rng.randint(0, 6)})
    if kind == "view":
        return Call("view_frames", {"timestamps": [t() for _ in range(rng.randint(0, 9))]})
    if kind == "resample":
        return Call("resample_clip", {"start": t(), "end": t(), "n": rng.randint(0, 12)})
    if kind == "answer":
        return Call("answer", {"option": rng.choice("ABCDE"), "rationale": "r",
                               "evidence": [t() for _ in range(rng.randint(0, 3))]})
    if kind == "judge":
        return Call("judge_options", {"verdicts": [
            {"option": rng.choice("ABCDE"), "verdict": rng.choice(["supported", "refuted", "unknown", "maybe"]),
             "times": [t() for _ in range(rng.randint(0, 2))]} for _ in range(rng.randint(0, 3))]})
    if kind == "judge_answer":
        return Call("judge_answer", {"answer": rng.choice("ABCDE"), "confidence": rng.randint(0, 4), "rationale": "r",
                                     "evidence": [t() for _ in range(rng.randint(0, 3))], "query": rng.choice(["", "x"]),
                                     "start": t(), "end": t()})
    if kind == "bogus":
        return Call("zoom", {"factor": 2})
    return Call("view_frames", '{"timestamps": [1.0,')  # malformed JSON


def images_in(body: dict) -> int:
    return sum(1 for m in body["messages"] if isinstance(m["content"], list)
               for part in m["content"] if part["type"] == "image_url")


def frames_seen(requests: list[dict]) -> int:
    """Images a model received: every captioning call's own, plus the longest planner conversation (each
    planner request repeats the one before it)."""
    captioning = sum(images_in(body) for body in requests if not body.get("tools"))
    return captioning + max((images_in(body) for body in requests if body.get("tools")), default=0)


@pytest.mark.parametrize("strategy", ["planner", "captions", "confidence"])
@pytest.mark.parametrize("seed", range(6))
def test_no_budget_is_exceeded_and_citations_were_seen(seed, strategy, fake_openai, openai_backend_factory,
                                                       synthetic_video, random_searcher):
    rng = random.Random(seed)
    config = AgentConfig(max_frames=rng.randint(2, 12), max_steps=rng.randint(1, 5), overview_frames=rng.randint(0, 4),
                         max_tool_calls=rng.randint(1, 4), answer_rule=rng.choice(["free", "elimination"]),
                         caption_segments=rng.randint(1, 4), caption_frames=rng.randint(1, 3),
                         confidence_rounds=rng.randint(1, 4), search_k=rng.randint(1, 5))

    def reply(body):
        if not body.get("tools"):  # a captioning call
            return Text(rng.choice(["a scene", ""]))
        if rng.random() < 0.15:
            return Text(rng.choice(["B", "I think so.", ""]) or "nothing")
        return ToolCalls([random_call(rng) for _ in range(rng.randint(1, 5))])

    fake_openai.responder = reply
    trace = solve(synthetic_video, "How many bands?", ["(A) none", "(B) some", "(C) all"],
                  backend=openai_backend_factory(max_retries=0), searcher=random_searcher, config=config,
                  strategy=strategy)

    assert trace.totals.frames_shown <= config.max_frames
    seen = frames_seen(fake_openai.requests)  # what the server actually received
    if trace.answer.reason == "error":  # e.g. an empty captioning reply: the question fails, no row is scored
        assert seen <= config.max_frames
    else:
        assert seen == trace.totals.frames_shown
    assert trace.totals.steps <= config.max_steps + 2  # the forced final answer and its one re-ask
    for step in {n.step for n in trace.nodes}:
        assert sum(n.kind == "tool_call" for n in trace.nodes if n.step == step) <= config.max_tool_calls
    shown = [f.t for f in trace.frames() if f.shown]
    for position, node in enumerate(trace.nodes):  # a verdict citing a moment unseen so far is flagged on its node
        if node.verdicts:
            before = [f.t for n in trace.nodes[:position] for f in n.frames if f.shown]
            unseen = [t for v in node.verdicts for t in v.times if not any(abs(t - s) <= 0.5 for s in before)]
            assert bool(unseen) == bool(node.error and "no model was shown" in node.error)
    for t in trace.answer.evidence:
        seen = any(abs(t - s) <= 0.5 for s in shown)
        assert seen != (t in trace.answer.unseen_evidence)  # seen, or flagged: never silently unseen
    assert trace.answer.option in (None, "A", "B", "C")
