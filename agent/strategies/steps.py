"""Steps every strategy takes the same way: prompts, the overview, recording a model reply and its
tool calls, checking an answer, failing on an error. Strategies compose these; none of them decides."""

from __future__ import annotations

from typing import Any

from agent.backends.base import Reply, TextPart, ToolCall
from agent.state import AgentContext, PendingCall
from agent.toolbox import AnswerRequest, Observation
from agent.trace import FinalAnswer, FrameRef
from prompts import load_prompt
from sleuth.answers import resolve_letter
from sleuth.errors import SleuthError
from tools.video import uniform_indices


def prompt(name: str, **values: Any) -> str:
    return load_prompt(name).text.strip().format(**values)


def hint(ctx: AgentContext) -> str:
    return ctx.answer_texts.hint


def show_overview(ctx: AgentContext) -> tuple[list, int, list[str]]:
    """Record the question and an overview of N uniform frames (as images, contact sheets, or a
    perception model's description); returns the first user turn's parts, the frames shown and the
    trace nodes that follow."""
    cfg, toolbox, rec = ctx.config, ctx.toolbox, ctx.recorder
    question_node = rec.add("question", 0, text="\n".join([ctx.question, *ctx.options]))
    intro = prompt("agent_question", question=ctx.question, answer_format=ctx.answer_texts.format)
    content: list = [TextPart(text=intro)]
    n = min(cfg.overview_frames, cfg.max_frames)
    shown, frontier = 0, [question_node.id]
    if n > 0:
        sheets = cfg.overview_in_sheets
        # sheets tile the decoded frames; frames shown one by one are rendered (kept for later questions)
        batch = toolbox.video.sample_uniform(n) if sheets else toolbox.look(uniform_indices(toolbox.video.meta.n_frames, n))
        frames = batch.frames
        refs = [FrameRef(t=float(f.t), source="overview", thumb=toolbox.thumbnail(f)) for f in frames]
        images = (contact_sheets(toolbox, frames, cfg.sheet_tiles) if sheets
                  else [toolbox.image_part(f) for f in frames])
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
    return content, shown, frontier


def contact_sheets(toolbox: Any, frames: list, per_sheet: int) -> list:
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


def record_reply(
    ctx: AgentContext, reply: Reply, step: int, state: dict
) -> tuple[str, list[PendingCall], int]:
    """A thought node for the model call and a tool_call node per call it made, up to
    ``max_tool_calls``; returns the thought's id, the calls to run, and how many were dropped."""
    rec = ctx.recorder
    thought = rec.add("thought", step, after=state["frontier"], text=reply.text)
    rec.reply(thought, reply)
    calls = with_ids(reply.tool_calls, step)
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


def failed(ctx: AgentContext, exc: SleuthError, step: int, frontier: list[str]) -> FinalAnswer:
    """End the run on a failure that is not the model's answer: the question becomes an error row."""
    node = ctx.recorder.add("thought", step, after=frontier, error=str(exc))
    why = str(exc) if exc.kind == "deadline" else f"the planner model failed: {exc}"
    final = FinalAnswer(option=None, reason="error", error_kind=exc.kind, rationale=why)
    ctx.recorder.finish(final, step, after=[node.id])
    return final


def with_ids(calls: list[ToolCall], step: int) -> list[ToolCall]:
    """Tool messages must answer a call id; text-protocol calls may come without one."""
    return [c if c.id else c.model_copy(update={"id": f"call_{step}_{i}"}) for i, c in enumerate(calls)]


def record_observation(ctx: AgentContext, obs: Observation, step: int, call_node: str):
    node = ctx.recorder.add("observation", step, after=[call_node], tool=obs.tool, text=obs.text,
                            frames=obs.frames, error=obs.error)
    if obs.model_calls:
        ctx.recorder.model_call(node, usage=obs.usage, latency_s=obs.latency_s or 0.0, cost_usd=obs.cost_usd)
    return node


def check_answer(ctx: AgentContext, request: AnswerRequest) -> tuple[FinalAnswer | None, str | None]:
    """The final answer a request makes, or why it is not one (the model is told and asked again)."""
    if ctx.answer_kind != "choice":
        if request.value is None or request.value == "":
            return None, f"the answer is empty; give {hint(ctx)}"
        return FinalAnswer(option=None, kind=ctx.answer_kind, value=request.value, rationale=request.rationale,
                           evidence=request.evidence), None
    letter = resolve_letter(request.option or "", ctx.letters, ctx.options)
    if letter is None:
        return None, f"{request.option!r} is not one of this question's letters ({', '.join(ctx.letters)})"
    return FinalAnswer(option=letter, rationale=request.rationale, evidence=request.evidence), None


def given(request: AnswerRequest) -> str:
    return str(request.option if request.option is not None else request.value)


def progress_event(on_event: Any, name: str, state: dict, recorder: Any) -> None:
    """Forward one progress event (the nodes added since the last one) to ``on_event``, if any."""
    nodes = recorder.new_nodes()
    if on_event is not None:
        on_event({
            "event": name,
            "step": state.get("step", 0),
            "frames_shown": state.get("frames_shown", 0),
            "tokens": state.get("tokens_used", 0),
            "nodes": [n.model_dump(exclude={"frames": {"__all__": {"thumb"}}}) for n in nodes],
        })
