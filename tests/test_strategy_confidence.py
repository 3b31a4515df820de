"""The ``confidence`` strategy against the scripted server: answer and rate, search the segment the model
names for what is missing, look, answer again; bounded rounds; every frame counted."""

from __future__ import annotations

from agent.config import AgentConfig
from agent.run import solve
from tests.fake_openai import Call, Text, ToolCalls
from tests.test_agent import OPTIONS, QUESTION, check_trace, shown_images


def judge(answer: str, confidence: int, evidence=(), **extra) -> ToolCalls:
    return ToolCalls([Call("judge_answer", {"answer": answer, "confidence": confidence, "rationale": f"{answer}?",
                                            "evidence": list(evidence), **extra})])


def run(fake_openai, backend, video, searcher, replies, **config):
    replies = iter(replies)
    fake_openai.responder = lambda body: next(replies)
    config = AgentConfig(overview_frames=2, max_frames=config.pop("max_frames", 8), search_k=3, min_gap_s=0.5,
                         **config)
    return solve(video, QUESTION, OPTIONS, backend=backend, searcher=searcher, config=config, strategy="confidence")


def test_unsure_answers_search_the_named_segment_and_answer_again(fake_openai, openai_backend_factory,
                                                                  synthetic_video, random_searcher, tmp_path):
    trace = run(fake_openai, openai_backend_factory(max_retries=0), synthetic_video, random_searcher, [
        judge("A", 1, [0.0], query="white bands", start=1.0, end=3.0),
        judge("B", 3, [1.0]),
    ])
    check_trace(trace, tmp_path)
    first, second = fake_openai.requests
    assert [t["function"]["name"] for t in first["tools"]] == ["judge_answer"]  # the model's only tool
    assert "confidence" in first["messages"][0]["content"] and len(shown_images(first)) == 2
    found = shown_images(second)[2:]  # the overview, then the frames found inside 1.0 to 3.0 s
    assert len(found) == 3 and all(1.0 <= float(label[2:-1]) <= 3.0 for label, _ in found)
    assert all(round(float(label[2:-1]) * 10) == index for label, index in found)  # each frame is what it says
    judgements = [n for n in trace.nodes if n.kind == "judgement"]
    assert [n.confidence for n in judgements] == [1, 3]
    search = next(n for n in trace.nodes if n.kind == "tool_call" and n.tool == "search_frames")
    assert search.arguments == {"query": "white bands", "k": 3, "start": 1.0, "end": 3.0}
    assert trace.answer.option == "B" and trace.answer.confidence == 3 and trace.answer.reason == "answered"
    assert trace.totals.frames_shown == 5 and trace.answer.unseen_evidence == []


def test_rounds_are_bounded_and_an_unsure_last_answer_is_marked(fake_openai, openai_backend_factory,
                                                                 synthetic_video, random_searcher):
    trace = run(fake_openai, openai_backend_factory(max_retries=0), synthetic_video, random_searcher, [
        judge("A", 1, query="a dog"), judge("C", 2, query="a cat"),
    ], confidence_rounds=2)
    assert len(fake_openai.requests) == 2
    assert trace.answer.option == "C" and trace.answer.confidence == 2 and trace.answer.reason == "budget_exhausted"


def test_the_frame_budget_ends_the_rounds(fake_openai, openai_backend_factory, synthetic_video, random_searcher):
    trace = run(fake_openai, openai_backend_factory(max_retries=0), synthetic_video, random_searcher, [
        judge("A", 1, query="a dog"), judge("B", 1, query="a cat"), judge("C", 1, query="a cow"),
    ], max_frames=4)
    assert trace.totals.frames_shown == 4  # 2 overview + 2 found (3 asked for, 2 left)
    assert len(fake_openai.requests) == 2 and trace.answer.option == "B" and trace.answer.reason == "budget_exhausted"


def test_a_bad_answer_is_reasked_once_then_no_answer_never_a_guess(fake_openai, openai_backend_factory,
                                                                   synthetic_video, random_searcher):
    trace = run(fake_openai, openai_backend_factory(max_retries=0), synthetic_video, random_searcher, [
        judge("Z", 3), Text("I am not sure"),
    ])
    assert "'Z' is not one of this question's letters" in fake_openai.requests[1]["messages"][-1]["content"]
    assert trace.answer.option is None and trace.answer.reason == "no_answer"
    trace = run(fake_openai, openai_backend_factory(max_retries=0), synthetic_video, random_searcher, [
        judge("B", 7), judge("B", 3, [0.0]),
    ])
    assert "confidence must be 1, 2 or 3, got 7" in fake_openai.requests[-1]["messages"][-1]["content"]
    assert trace.answer.option == "B"
