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
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from agent.backends.base import Message, Reply, TextPart, ToolCall
from agent.state import AgentContext, AgentState, PendingCall
from agent.strategies.base import Strategy, register_strategy
from agent.toolbox import AnswerRequest, Observation, describe_tools
from agent.trace import FinalAnswer, FrameRef
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


def prompt(name: str, **values: Any) -> str:
    return load_prompt(name).text.strip().format(**values)


def _hint(ctx: AgentContext) -> str:
    return ctx.answer_texts.hint


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
    cfg, toolbox, rec = ctx.config, ctx.toolbox, ctx.recorder
    question_node = rec.add("question", 0, text="\n".join([ctx.question, *ctx.options]))
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
    intro = prompt("agent_question", question=ctx.question, answer_format=ctx.answer_texts.format)
    content: list = [TextPart(text=intro)]
    n = min(cfg.overview_frames, cfg.max_frames)
    shown, frontier = 0, [question_node.id]
    if n > 0:
        batch = toolbox.video.sample_uniform(n)
        frames = batch.frames
        refs = [FrameRef(t=float(f.t), source="overview", thumb=toolbox.thumbnail(f.image)) for f in frames]
        sheets = cfg.overview_mode == "contact_sheet" and not ctx.delegated
        images = (_contact_sheets(toolbox, frames, cfg.sheet_tiles) if sheets
                  else [toolbox.image_part(f.image, f.t) for f in frames])
        skipped = "".join(f"\nframe {i} could not be decoded ({why})" for i, why in batch.skipped)
        node = rec.add("overview", 0, after=[question_node.id], frames=refs,
                       error=skipped.strip() or None)
        if ctx.delegated:
            request = prompt("agent_perception_describe", question=ctx.question)
            reply, error = toolbox.perceive(images, request)
            if error:
                node.error, node.frames = error, []
                content.append(TextPart(text=f"(no overview: {error})"))
            else:
                rec.reply(node, reply)
                node.text = reply.text.strip()
                shown = len(frames)
                content.append(TextPart(text="\n\n" + prompt(
                    "agent_overview_delegated", n_frames=len(frames), duration=toolbox.duration,
                    description=node.text or "(empty reply)")))
        else:
            shown = len(frames)  # a tiled frame is a frame the model sees: it counts all the same
            node.text = f"{len(frames)} uniform frames"
            content.append(TextPart(text="\n\n" + prompt("agent_overview", n_frames=len(frames), duration=toolbox.duration)))
            if sheets:
                node.text += f" in contact sheets of {cfg.sheet_tiles}"
            content.extend(images)
        frontier = [node.id]
    messages = [Message(role="system", content=system), Message(role="user", content=content)]
    tokens = sum(n.tokens.total for n in rec.trace.nodes if n.tokens)
    return {
        "messages": messages, "step": 0, "frames_shown": shown, "tokens_used": tokens, "pending": [],
        "frontier": frontier, "prompting": frontier, "reasked": False, "final_attempts": 0,
        "exhausted": None, "final": None,
    }


def plan(state: AgentState, runtime: Runtime[AgentContext]) -> dict:
    """One planning call: the model thinks and calls tools."""
    ctx = runtime.context
    rec = ctx.recorder
    step = state["step"] + 1
    try:
        deadline.check()
        reply = ctx.backend.chat(state["messages"], tools=ctx.toolbox.specs())
    except SleuthError as exc:  # BackendError, a local model that cannot build its prompt, the deadline
        return {"step": step, "final": _failed(ctx, exc, step, state["frontier"]), "pending": []}
    thought, pending, dropped = _record_reply(ctx, reply, step, state)
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
        return {"final": _failed(ctx, exc, step, state["frontier"]), "pending": []}
    frames_shown, tokens = state["frames_shown"], state["tokens_used"]
    reasked, final = state["reasked"], None
    if not state["pending"]:
        messages.append(Message(role="user", content=prompt("agent_continue", answer_hint=_hint(ctx))))
        return {"messages": messages, "prompting": state["frontier"], "exhausted": budget_exhausted(state, ctx)}

    observations: list[str] = []
    shown_parts: list = []
    followups: list[str] = []
    if state.get("dropped_calls"):
        followups.append(f"note: your reply made {state['dropped_calls']} more tool calls than the "
                         f"{cfg.max_tool_calls} run per step; those were not run")
    for pending in state["pending"]:
        call = pending["call"]
        if final is not None:  # calls after a valid answer are not run
            break
        obs = ctx.toolbox.call(call, frames_left=cfg.max_frames - frames_shown)
        node = _record_observation(ctx, obs, step, pending["node_id"])
        observations.append(node.id)
        frames_shown += obs.frames_shown
        tokens += obs.usage.total_tokens if obs.usage else 0
        if obs.verdicts:
            rec.judged(node, obs.verdicts)
        if obs.answer is not None:
            final, problem = _check_answer(ctx, obs.answer)
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
                    followups.append(prompt("agent_reask", given=_given(obs.answer), answer_hint=_hint(ctx)))
        messages.append(Message(role="tool", tool_call_id=call.id, name=call.name, content=obs.text))
        if obs.images:
            shown_parts.append(TextPart(text=f"Frames from {call.name} (call {call.id}):"))
            shown_parts.extend(obs.images)
    if final is not None:
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
        messages.append(Message(role="user", content=prompt("agent_final", reason=reason, answer_hint=_hint(ctx))))
    try:
        deadline.check()
        reply = ctx.backend.chat(messages, tools=ctx.toolbox.specs(only=("answer",)))
    except SleuthError as exc:  # BackendError, a local model that cannot build its prompt, the deadline
        return {"step": step, "final": _failed(ctx, exc, step, state["frontier"]), "final_attempts": attempts + 1}
    thought, pending, _ = _record_reply(ctx, reply, step, state)
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
        node = _record_observation(ctx, obs, step, item["node_id"])
        last = node.id
        messages.append(Message(role="tool", tool_call_id=call.id, name=call.name, content=obs.text))
    if request is None and not pending and ctx.answer_kind == "choice" and resolve_letter(reply.text, ctx.letters, ctx.options):
        # a model without tool calls may just write the letter; take it only when that is all it wrote
        request = AnswerRequest(option=reply.text.strip(), rationale=reply.text.strip(), evidence=[])

    final = None
    if request is not None:
        final, problem = _check_answer(ctx, request)
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
        given = _given(request) if request is not None else (reply.text.strip()[:80] or "(nothing)")
        messages.append(Message(role="user", content=prompt("agent_reask", given=given, answer_hint=_hint(ctx))))
        update["reasked"] = True
    return update


def _contact_sheets(toolbox: Any, frames: list, per_sheet: int) -> list:
    """The frames tiled ``per_sheet`` to an image, each tile labelled with its timestamp."""
    from agent.backends.base import ImagePart
    from tools.contact_sheet import contact_sheet

    sheets = []
    for start in range(0, len(frames), per_sheet):
        group = frames[start:start + per_sheet]
        sheet = contact_sheet([f.image for f in group], [f.t for f in group])
        label = f"contact sheet: {len(group)} frames, t={group[0].t:.2f}s to t={group[-1].t:.2f}s"
        part = ImagePart.from_array(sheet, detail=toolbox.config.image_detail, label=label)
        toolbox.count_pixels(part)
        sheets.append(part)
    return sheets


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


@lru_cache(maxsize=1)
def build_graph():
    """The compiled agent graph (one per process; runs differ only by their context)."""
    graph = StateGraph(AgentState, context_schema=AgentContext)
    graph.add_node("overview", overview)
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


def _record_reply(
    ctx: AgentContext, reply: Reply, step: int, state: AgentState
) -> tuple[str, list[PendingCall], int]:
    """A thought node for the model call and a tool_call node per call it made, up to
    ``max_tool_calls``; returns the thought's id, the calls to run, and how many were dropped."""
    rec = ctx.recorder
    thought = rec.add("thought", step, after=state["frontier"], text=reply.text)
    rec.reply(thought, reply)
    calls = _with_ids(reply.tool_calls, step)
    limit = ctx.config.max_tool_calls
    dropped = max(0, len(calls) - limit)
    if dropped:  # a runaway reply (thousands of calls) must not run for minutes or flood the trace
        thought.error = f"{len(calls)} tool calls in one reply; the first {limit} were run, {dropped} dropped"
    pending: list[PendingCall] = []
    for call in calls[:limit]:
        node = rec.add("tool_call", step, after=[thought.id], tool=call.name,
                       arguments=call.arguments if not call.error else {"raw": call.raw_arguments},
                       text=call.raw_arguments, error=call.error)
        for source in state.get("prompting", []):
            rec.link(source, node.id, "prompted")
        pending.append({"call": call, "node_id": node.id})
    return thought.id, pending, dropped


def _failed(ctx: AgentContext, exc: SleuthError, step: int, frontier: list[str]) -> FinalAnswer:
    """End the run on a failure that is not the model's answer: the question becomes an error row."""
    node = ctx.recorder.add("thought", step, after=frontier, error=str(exc))
    why = str(exc) if exc.kind == "deadline" else f"the planner model failed: {exc}"
    final = FinalAnswer(option=None, reason="error", error_kind=exc.kind, rationale=why)
    ctx.recorder.finish(final, step, after=[node.id])
    return final


def _with_ids(calls: list[ToolCall], step: int) -> list[ToolCall]:
    """Tool messages must answer a call id; text-protocol calls may come without one."""
    return [c if c.id else c.model_copy(update={"id": f"call_{step}_{i}"}) for i, c in enumerate(calls)]


def _record_observation(ctx: AgentContext, obs: Observation, step: int, call_node: str):
    node = ctx.recorder.add("observation", step, after=[call_node], tool=obs.tool, text=obs.text,
                            frames=obs.frames, error=obs.error)
    if obs.model_calls:
        ctx.recorder.model_call(node, usage=obs.usage, latency_s=obs.latency_s or 0.0, cost_usd=obs.cost_usd)
    return node


def _check_answer(ctx: AgentContext, request: AnswerRequest) -> tuple[FinalAnswer | None, str | None]:
    """The final answer a request makes, or why it is not one (the model is told and asked again)."""
    if ctx.answer_kind != "choice":
        if request.value is None or request.value == "":
            return None, f"the answer is empty; give {_hint(ctx)}"
        return FinalAnswer(option=None, kind=ctx.answer_kind, value=request.value, rationale=request.rationale,
                           evidence=request.evidence), None
    letter = resolve_letter(request.option or "", ctx.letters, ctx.options)
    if letter is None:
        return None, f"{request.option!r} is not one of this question's letters ({', '.join(ctx.letters)})"
    return FinalAnswer(option=letter, rationale=request.rationale, evidence=request.evidence), None


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


def _given(request: AnswerRequest) -> str:
    return str(request.option if request.option is not None else request.value)


# --------------------------------------------------------------------------- the strategy


@register_strategy
class PlannerStrategy(Strategy):
    """Plan, call tools, look, answer: a uniform overview, then up to ``max_steps`` planning calls, each
    followed by its tool calls; a forced final answer when a budget runs out."""

    name = "planner"
    prompt_names = PROMPT_NAMES

    def run(self, context: AgentContext, on_event=None) -> dict:
        """Stream the graph, folding updates into the final state and forwarding progress events."""
        from langgraph.errors import GraphRecursionError

        state: dict = {}
        try:
            for chunk in build_graph().stream(
                {}, config={"recursion_limit": recursion_limit(context)}, context=context, stream_mode="updates"
            ):
                for graph_node, update in chunk.items():
                    state.update(update or {})
                    nodes = context.recorder.new_nodes()
                    if on_event is not None:
                        on_event({
                            "event": graph_node,
                            "step": state.get("step", 0),
                            "frames_shown": state.get("frames_shown", 0),
                            "tokens": state.get("tokens_used", 0),
                            "nodes": [n.model_dump(exclude={"frames": {"__all__": {"thumb"}}}) for n in nodes],
                        })
        except GraphRecursionError:
            context.recorder.finish(
                FinalAnswer(option=None, reason="error", error_kind="agent",
                            rationale="the agent exceeded its step limit"),
                state.get("step", 0), after=state.get("frontier", [])[-1:],
            )
        return state
