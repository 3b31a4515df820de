"""Option verdicts and the elimination rule: the planner keeps a verdict per option with the frames
behind it, shows it in the trace, and (with ``answer_rule="elimination"``) answers only when one
option stands or a budget has run out."""

from __future__ import annotations

from agent.config import AgentConfig
from agent.run import solve
from tests.fake_openai import Call, ToolCalls
from tests.test_agent import OPTIONS, QUESTION, check_trace, tool_results


def judge(*verdicts: tuple[str, str, list[float]]) -> Call:
    return Call("judge_options", {"verdicts": [{"option": o, "verdict": v, "times": t, "note": f"{o} {v}"}
                                               for o, v, t in verdicts]})


def answer(option: str, evidence: list[float]) -> Call:
    return Call("answer", {"option": option, "rationale": "only it stands", "evidence": evidence})


def run(fake_openai, backend, video, searcher, steps, **config):
    replies = iter(steps)
    fake_openai.responder = lambda body: ToolCalls(next(replies))
    config = AgentConfig(overview_frames=4, max_steps=config.pop("max_steps", 6), max_frames=16, **config)
    return solve(video, QUESTION, OPTIONS, backend=backend, searcher=searcher, config=config)


def test_verdicts_are_kept_with_evidence_edges_and_a_standing_table(fake_openai, openai_backend_factory,
                                                                   synthetic_video, random_searcher, tmp_path):
    trace = run(fake_openai, openai_backend_factory(max_retries=0), synthetic_video, random_searcher, [
        [judge(("A", "refuted", [0.0]), ("B", "supported", [1.3]))],
        [judge(("A", "unknown", []), ("c", "refuted", [2.6])), answer("B", [1.3])],
    ])
    check_trace(trace, tmp_path)
    judged = [n for n in trace.nodes if n.verdicts]
    assert [[(v.option, v.verdict) for v in n.verdicts] for n in judged] == [
        [("A", "refuted"), ("B", "supported")], [("A", "unknown"), ("C", "refuted")]]
    # the later verdict on A replaced the earlier one; C came as a lower-case letter and was resolved
    assert [(v.option, v.verdict, v.times) for v in trace.answer.verdicts] == [
        ("A", "unknown", []), ("B", "supported", [1.3]), ("C", "refuted", [2.6])]
    overview = next(n for n in trace.nodes if n.kind == "overview")
    for node in judged:  # each verdict node points at the overview frames its times name
        assert {(e.source, e.target) for e in trace.edges if e.kind == "evidence" and e.source == node.id} == {
            (node.id, overview.id)}
    # the model reads the standing table after each judgement
    request = fake_openai.requests[1]
    assert "verdicts now: A: refuted; B: supported; C: not judged. Still standing: B, C." in tool_results(request)
    assert trace.answer.option == "B" and trace.answer.reason == "answered"


def test_a_verdict_citing_an_unseen_moment_is_flagged(fake_openai, openai_backend_factory, synthetic_video,
                                                      random_searcher):
    trace = run(fake_openai, openai_backend_factory(max_retries=0), synthetic_video, random_searcher, [
        [judge(("A", "refuted", [2.0]))], [answer("B", [1.3])],
    ])
    node = next(n for n in trace.nodes if n.verdicts)
    assert node.error == "verdicts cite frames no model was shown: 2.00s"


def test_a_bad_letter_in_a_verdict_is_an_error_the_model_reads(fake_openai, openai_backend_factory,
                                                               synthetic_video, random_searcher):
    trace = run(fake_openai, openai_backend_factory(max_retries=0), synthetic_video, random_searcher, [
        [judge(("Q", "refuted", [0.0]))], [answer("B", [1.3])],
    ])
    assert "'Q' is not one of this question's letters (A, B, C)" in tool_results(fake_openai.requests[1])[0]
    assert trace.answer.verdicts == []


def test_elimination_refuses_answers_while_several_options_stand(fake_openai, openai_backend_factory,
                                                                 synthetic_video, random_searcher):
    trace = run(fake_openai, openai_backend_factory(max_retries=0), synthetic_video, random_searcher, [
        [answer("B", [1.3])],  # nothing ruled out: refused
        [judge(("A", "refuted", [0.0]))],
        [answer("B", [1.3])],  # C still stands: refused
        [judge(("C", "refuted", [2.6])), answer("A", [0.0])],  # A was refuted: refused
        [answer("B", [1.3])],  # only B stands: accepted
    ], answer_rule="elimination")
    system = fake_openai.requests[0]["messages"][0]["content"]
    assert "You may answer only when a single option is left standing" in system
    refusals = [n.error for n in trace.nodes if n.kind == "observation" and n.tool == "answer" and n.error]
    assert refusals[0].startswith("refused: Not accepted yet: 3 options still stand (A, B, C)")
    assert refusals[1].startswith("refused: Not accepted yet: 2 options still stand (B, C)")
    assert refusals[2].startswith("refused: you refuted A; the option still standing is B")
    assert trace.answer.option == "B" and trace.answer.reason == "answered" and trace.totals.steps == 5


def test_elimination_gives_way_when_the_budget_runs_out(fake_openai, openai_backend_factory, synthetic_video,
                                                        random_searcher):
    trace = run(fake_openai, openai_backend_factory(max_retries=0), synthetic_video, random_searcher, [
        [answer("B", [1.3])], [answer("B", [1.3])],  # refused twice: the step budget is spent
        [answer("C", [2.6])],  # the forced final answer is taken as it is
    ], answer_rule="elimination", max_steps=2)
    assert trace.answer.option == "C" and trace.answer.reason == "budget_exhausted"


def test_free_rule_and_verdicts_off(fake_openai, openai_backend_factory, synthetic_video, random_searcher):
    trace = run(fake_openai, openai_backend_factory(max_retries=0), synthetic_video, random_searcher, [
        [answer("B", [1.3])]], option_verdicts=False)
    assert trace.answer.option == "B" and trace.totals.steps == 1
    tools = {t["function"]["name"] for t in fake_openai.requests[0]["tools"]}
    assert "judge_options" not in tools and "judge_options" not in fake_openai.requests[0]["messages"][0]["content"]
