"""The ``planner`` strategy: a langgraph ``StateGraph`` that plans, calls tools and answers.

    START -> overview -> plan -> act -> plan -> ... -> END
                                   \\-> final_answer (a budget ran out) -> END

- ``overview`` shows N uniform frames with the question;
- ``plan`` is one model call with the tools;
- ``act`` runs the calls it made and shows the frames they produced;
- ``final_answer`` asks for the answer with what the model has, offering only
  the ``answer`` tool, and re-asks once if that answer is unusable.

Each node is a plain function of (state, runtime) returning a state update;
run-scoped dependencies (backend, toolbox, trace recorder) come from
``runtime.context`` (an ``AgentContext``).
"""

from __future__ import annotations

from functools import lru_cache

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from agent.backends.base import Message, TextPart
from agent.state import AgentContext, AgentState
from agent.strategies.base import Strategy, register_strategy
from agent.strategies.steps import (check_answer, failed, given, hint, progress_event, prompt, record_observation,
                                    record_reply, show_overview)
from agent.toolbox import AnswerRequest, Observation, describe_tools
from agent.trace import FinalAnswer
from prompts import load_prompt
from sleuth import deadline
from sleuth.answers import resolve_letter
from sleuth.errors import SleuthError

# every prompt file the planner may send; their hashes go in each trace
PROMPT_NAMES = (
    "agent_system",
    "agent_delegated_note",
    "agent_question",
    "agent_overview",
    "agent_overview_delegated",
    "agent_continue",
    "agent_reask",
    "agent_final",
    "agent_perception",
    "agent_perception_describe",
    "agent_verdicts",
    "agent_elimination",
    "agent_standing",
    "answer_choice",
    "answer_number",
    "answer_text",
)


def verdict_notes(ctx: AgentContext) -> str:
    """The system prompt's lines on option verdicts and the elimination rule, when this run has them."""
    if "judge_options" not in ctx.toolbox.tool_names:
        return ""
    notes = "\n\n" + prompt("agent_verdicts")
    if ctx.config.answer_rule == "elimination":
        notes += " " + prompt("agent_elimination")
    return notes


# --------------------------------------------------------------------------- nodes


def overview(state: AgentState, runtime: Runtime[AgentContext]) -> dict:
    """Question plus N uniform frames: the planner's first look at the video."""
    ctx = runtime.context
    cfg, toolbox = ctx.config, ctx.toolbox
    system = prompt(
        "agent_system",
        duration=toolbox.duration,
        overview_frames=min(cfg.overview_frames, cfg.max_frames),
        perception_note=load_prompt("agent_delegated_note").text.rstrip() + "\n" if ctx.delegated else "",
        max_steps=cfg.max_steps,
        max_frames=cfg.max_frames,
        tools=describe_tools(toolbox.specs()),
        answer_rule=ctx.answer_texts.rule + verdict_notes(ctx),
    )
    content, shown, frontier = show_overview(ctx)
    messages = [Message(role="system", content=system), Message(role="user", content=content)]
    tokens = sum(n.tokens.total for n in ctx.recorder.trace.nodes if n.tokens)
    return {
        "messages": messages, "step": 0, "frames_shown": shown, "tokens_used": tokens, "pending": [],
        "frontier": frontier, "prompting": frontier, "reasked": False, "final_attempts": 0,
        "exhausted": None, "final": None,
    }


def plan(state: AgentState, runtime: Runtime[AgentContext]) -> dict:
    """One planning call: the model thinks and calls tools."""
    ctx = runtime.context
    step = state["step"] + 1
    try:
        deadline.check()
        reply = ctx.backend.chat(state["messages"], tools=ctx.toolbox.specs())
    except SleuthError as exc:  # BackendError, a local model that cannot build its prompt, the deadline
        return {"step": step, "final": failed(ctx, exc, step, state["frontier"]), "pending": []}
    thought, pending, dropped = record_reply(ctx, reply, step, state)
    kept_calls = [item["call"] for item in pending]
    messages = state["messages"] + [Message(role="assistant", content=reply.text, tool_calls=kept_calls)]
    return {
        "step": step, "messages": messages, "pending": pending, "frontier": [thought],
        "tokens_used": state["tokens_used"] + reply.usage.total_tokens, "dropped_calls": dropped,
    }


def act(state: AgentState, runtime: Runtime[AgentContext]) -> dict:
    """Run the tool calls of the last planning step; frames go in one user turn after the tool results."""
    ctx = runtime.context
    cfg, rec = ctx.config, ctx.recorder
    step, messages = state["step"], list(state["messages"])
    try:
        deadline.check()
    except SleuthError as exc:
        return {"final": failed(ctx, exc, step, state["frontier"]), "pending": []}
    frames_shown, tokens = state["frames_shown"], state["tokens_used"]
    reasked, final = state["reasked"], None
    if not state["pending"]:
        messages.append(Message(role="user", content=prompt("agent_continue", answer_hint=hint(ctx))))
        return {"messages": messages, "prompting": state["frontier"], "exhausted": budget_exhausted(state, ctx)}

    observations: list[str] = []
    shown_parts: list = []
    unsent: list = []  # (trace node, observation) whose images wait for the next user turn
    followups: list[str] = []
    if state.get("dropped_calls"):
        followups.append(f"note: your reply made {state['dropped_calls']} more tool calls than the "
                         f"{cfg.max_tool_calls} run per step; those were not run")
    for pending in state["pending"]:
        call = pending["call"]
        if final is not None:  # calls after a valid answer are not run
            break
        obs = ctx.toolbox.call(call, frames_left=cfg.max_frames - frames_shown)
        node = record_observation(ctx, obs, step, pending["node_id"])
        observations.append(node.id)
        frames_shown += obs.frames_shown
        tokens += obs.usage.total_tokens if obs.usage else 0
        if obs.verdicts:
            rec.judged(node, obs.verdicts)
        if obs.answer is not None:
            final, problem = check_answer(ctx, obs.answer)
            if final is not None and (refusal := _elimination_refusal(ctx, final.option)):
                final = None  # the elimination rule (the one re-ask for an invalid answer is not used up)
                node.error = obs.text = node.text = f"refused: {refusal}"
                followups.append(refusal)
            elif problem:
                node.error = problem
                obs.text = node.text = f"error: {problem}"
                if reasked:
                    final = FinalAnswer(option=None, rationale=obs.answer.rationale,
                                        evidence=obs.answer.evidence, reason="invalid_letter")
                else:
                    reasked = True
                    followups.append(prompt("agent_reask", given=given(obs.answer), answer_hint=hint(ctx)))
        messages.append(Message(role="tool", tool_call_id=call.id, name=call.name, content=obs.text))
        if obs.images:
            shown_parts.append(TextPart(text=f"Frames from {call.name} (call {call.id}):"))
            shown_parts.extend(obs.images)
            unsent.append((node, obs))
    if final is not None:
        frames_shown -= _never_shown(ctx, unsent)
        rec.finish(final, step, after=observations[-1:])
        return {"messages": messages, "frames_shown": frames_shown, "tokens_used": tokens, "final": final,
                "pending": [], "reasked": reasked}
    status = (f"[{cfg.max_steps - step} of {cfg.max_steps} steps and "
              f"{cfg.max_frames - frames_shown} of {cfg.max_frames} frames left]")
    # tool messages carry text only (chat-completions protocol), so the frames follow as a user turn
    messages.append(Message(role="user", content=[*shown_parts, TextPart(text="\n".join([*followups, status]))]))
    update = {
        "messages": messages, "frames_shown": frames_shown, "tokens_used": tokens, "pending": [],
        "frontier": observations, "prompting": observations, "reasked": reasked,
    }
    update["exhausted"] = budget_exhausted({**state, **update}, ctx)
    return update


def final_answer(state: AgentState, runtime: Runtime[AgentContext]) -> dict:
    """A budget ran out: ask for the answer with only the ``answer`` tool offered (re-asked once if unusable)."""
    ctx = runtime.context
    rec = ctx.recorder
    attempts = state.get("final_attempts", 0)
    step = state["step"] + 1
    messages = list(state["messages"])
    if attempts == 0:
        reason = state.get("exhausted") or "The step budget is used up."
        messages.append(Message(role="user", content=prompt("agent_final", reason=reason, answer_hint=hint(ctx))))
    try:
        deadline.check()
        reply = ctx.backend.chat(messages, tools=ctx.toolbox.specs(only=("answer",)))
    except SleuthError as exc:  # BackendError, a local model that cannot build its prompt, the deadline
        return {"step": step, "final": failed(ctx, exc, step, state["frontier"]), "final_attempts": attempts + 1}
    thought, pending, _ = record_reply(ctx, reply, step, state)
    messages.append(Message(role="assistant", content=reply.text, tool_calls=[item["call"] for item in pending]))
    tokens = state["tokens_used"] + reply.usage.total_tokens

    request, last, problem = None, thought, "no call to `answer`"
    for item in pending:
        call = item["call"]
        if call.name != "answer" or request is not None:
            obs = Observation(tool=call.name, text="error: not run: only `answer` is available now",
                              error="only `answer` is available now")
        else:
            obs = ctx.toolbox.call(call, frames_left=0)
            request = obs.answer
            problem = obs.error if request is None else None
        node = record_observation(ctx, obs, step, item["node_id"])
        last = node.id
        messages.append(Message(role="tool", tool_call_id=call.id, name=call.name, content=obs.text))
    if request is None and not pending and ctx.answer_kind == "choice" and resolve_letter(reply.text, ctx.letters, ctx.options):
        # a model without tool calls may just write the letter; take it only when that is all it wrote
        request = AnswerRequest(option=reply.text.strip(), rationale=reply.text.strip(), evidence=[])

    final = None
    if request is not None:
        final, problem = check_answer(ctx, request)
        if final is not None:
            final.reason = "budget_exhausted"
    unusable_reason = "invalid_letter" if request is not None else "no_answer"
    may_reask = attempts == 0 and not state.get("reasked")
    if final is None and not may_reask:
        final = FinalAnswer(option=None, reason=unusable_reason,
                            rationale=(request.rationale if request else "") or reply.text.strip()[:500],
                            evidence=request.evidence if request else [])
    update = {"step": step, "messages": messages, "tokens_used": tokens, "frontier": [last],
              "final_attempts": attempts + 1, "pending": []}
    if final is not None:
        rec.finish(final, step, after=[last])
        update["final"] = final
    else:
        said = given(request) if request is not None else (reply.text.strip()[:80] or "(nothing)")
        messages.append(Message(role="user", content=prompt("agent_reask", given=said, answer_hint=hint(ctx))))
        update["reasked"] = True
    return update


# --------------------------------------------------------------------------- routing


def budget_exhausted(state: AgentState, ctx: AgentContext) -> str | None:
    """The sentence telling the model which budget ran out, or None while all remain."""
    cfg = ctx.config
    if state["step"] >= cfg.max_steps:
        return f"You have used all {cfg.max_steps} steps."
    if state["frames_shown"] >= cfg.max_frames:
        return f"You have looked at all {cfg.max_frames} frames of your budget."
    if cfg.max_tokens is not None and state["tokens_used"] >= cfg.max_tokens:
        return f"You have used the token budget ({state['tokens_used']} of {cfg.max_tokens} tokens)."
    return None


def after_plan(state: AgentState) -> str:
    return END if state.get("final") is not None else "act"


def after_act(state: AgentState) -> str:
    if state.get("final") is not None:
        return END
    return "final_answer" if state.get("exhausted") else "plan"


def after_final_answer(state: AgentState) -> str:
    return END if state.get("final") is not None else "final_answer"


@lru_cache(maxsize=None)
def build_graph(opening=overview):
    """The compiled agent graph, opening with ``opening`` (the overview, or another first look such as
    a caption memory); one per process and opening, as runs differ only by their context."""
    graph = StateGraph(AgentState, context_schema=AgentContext)
    graph.add_node("overview", opening)
    graph.add_node("plan", plan)
    graph.add_node("act", act)
    graph.add_node("final_answer", final_answer)
    graph.add_edge(START, "overview")
    graph.add_edge("overview", "plan")
    graph.add_conditional_edges("plan", after_plan, ["act", END])
    graph.add_conditional_edges("act", after_act, ["plan", "final_answer", END])
    graph.add_conditional_edges("final_answer", after_final_answer, ["final_answer", END])
    return graph.compile()


def recursion_limit(ctx: AgentContext) -> int:
    """Supersteps a run may take: overview, two per planning step, the final answer and its re-ask."""
    return 2 * ctx.config.max_steps + 8


# --------------------------------------------------------------------------- recording helpers


def _never_shown(ctx: AgentContext, unsent: list) -> int:
    """Frames fetched in the step that answered never reach a model: the answer came before them. They
    are marked not shown (an answer citing them is flagged) and given back to the budget; returns how many."""
    count = 0
    for node, obs in unsent:
        for ref in node.frames:
            ref.shown = False
        node.text += "\n(not shown to the model: the answer in the same reply ended the run first)"
        ctx.toolbox.pixels_shown -= sum(part.width * part.height for part in obs.images)
        count += obs.frames_shown
    return count


def _elimination_refusal(ctx: AgentContext, letter: str | None) -> str | None:
    """Under the elimination rule, why an answer of ``letter`` is refused now (None: accepted)."""
    if ctx.config.answer_rule != "elimination" or "judge_options" not in ctx.toolbox.tool_names:
        return None
    standing = ctx.toolbox.board.standing()
    if len(standing) > 1:
        return prompt("agent_standing", n_standing=len(standing), standing=", ".join(standing))
    if letter not in standing:
        return f"you refuted {letter}; the option still standing is {', '.join(standing) or 'none'}. Answer with it, or judge again."
    return None


# --------------------------------------------------------------------------- the strategy


@register_strategy
class PlannerStrategy(Strategy):
    """Plan, call tools, look, answer: a uniform overview, then up to ``max_steps`` planning calls, each
    followed by its tool calls; a forced final answer when a budget runs out."""

    name = "planner"
    prompt_names = PROMPT_NAMES
    opening = staticmethod(overview)  # the first node: the model's first look at the video

    def run(self, context: AgentContext, on_event=None) -> dict:
        """Stream the graph, folding updates into the final state and forwarding progress events."""
        from langgraph.errors import GraphRecursionError

        state: dict = {}
        try:
            for chunk in build_graph(self.opening).stream(
                {}, config={"recursion_limit": recursion_limit(context)}, context=context, stream_mode="updates"
            ):
                for graph_node, update in chunk.items():
                    state.update(update or {})
                    progress_event(on_event, graph_node, state, context.recorder)
        except GraphRecursionError:
            context.recorder.finish(
                FinalAnswer(option=None, reason="error", error_kind="agent",
                            rationale="the agent exceeded its step limit"),
                state.get("step", 0), after=state.get("frontier", [])[-1:],
            )
        return state
