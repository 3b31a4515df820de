"""The ``confidence`` strategy: answer, rate confidence, and when unsure look for what is missing.

Follows VideoAgent (Wang et al., ECCV 2024): after a uniform first look, the
model answers and rates its confidence from 1 to 3; below 3 it says what
information is missing and in which segment, frames retrieved from inside that
segment are added, and it answers again, for a bounded number of rounds.

Where it differs: one ``judge_answer`` call gives the answer, the confidence
and the missing piece (VideoAgent uses three prompts); retrieval is CLIP
text-to-frame search restricted to the chosen segment (VideoAgent retrieves
by captions of candidate frames), and the frames found are shown to the
model rather than captioned. Every frame counts against ``max_frames``; the
rounds are bounded by ``confidence_rounds`` and ``max_steps``.
"""

from __future__ import annotations

from agent.backends.base import Message, TextPart, ToolCall
from agent.state import AgentContext
from agent.strategies.base import Strategy, register_strategy
from agent.strategies.steps import (check_answer, failed, hint, progress_event, prompt, record_observation,
                                    record_reply, show_overview)
from agent.toolbox import AnswerRequest, Observation, ToolInputError, Toolbox, tool
from agent.trace import FinalAnswer
from sleuth import deadline
from sleuth.answers import parse_number
from sleuth.errors import SleuthError

CONFIDENT = 3


class ConfidenceToolbox(Toolbox):
    """The shared tools plus ``judge_answer``, the only tool the model calls itself in this strategy."""

    @tool
    def judge_answer(self, answer: str, confidence: int, rationale: str, evidence: list[float], query: str = "",
                     start: float | None = None, end: float | None = None) -> Observation:
        """Give your answer now and how sure you are (1 to 3); below 3, say what to look for and where. Shows no images.

        Args:
            answer: your answer now: an option letter, a number or a few words, as the question asks.
            confidence: 1 (a guess), 2 (the evidence points to it but something is unclear) or 3 (the evidence settles it).
            rationale: why, in one to three sentences.
            evidence: timestamps (seconds) of the frames behind the answer.
            query: below 3: what would be visible in the frame that settles it, e.g. "a rabbit holding an apple".
            start: below 3: where to look from (seconds); leave out to search the whole video.
            end: below 3: where to look up to (seconds).
        """
        if confidence not in (1, 2, 3):
            raise ToolInputError(f"confidence must be 1, 2 or 3, got {confidence}")
        evidence = [float(t) for t in evidence]
        if self.answer_kind == "choice":
            request = AnswerRequest(option=answer, rationale=rationale, evidence=evidence)
        elif self.answer_kind == "number":
            value = parse_number(answer)
            if value is None:
                raise ToolInputError(f"{answer!r} is not a number; this question asks for one")
            request = AnswerRequest(option=None, value=value, rationale=rationale, evidence=evidence)
        else:
            request = AnswerRequest(option=None, value=answer.strip(), rationale=rationale, evidence=evidence)
        return Observation(tool="judge_answer", text=f"answer {answer!r} at confidence {confidence} received",
                           answer=request, confidence=confidence)


def _judged_answer(ctx: AgentContext, obs: Observation | None) -> tuple[FinalAnswer | None, str | None]:
    """The answer a ``judge_answer`` call made, or what to tell the model instead."""
    if obs is None:
        return None, "You did not call `judge_answer`."
    if obs.answer is None:  # its arguments were refused
        return None, obs.error
    return check_answer(ctx, obs.answer)


@register_strategy
class ConfidenceStrategy(Strategy):
    """Answer, rate confidence 1-3, search the segment the model names for what is missing, look, answer again."""

    name = "confidence"
    prompt_names = ("confidence_system", "confidence_round", "confidence_reask", "agent_question",
                    "agent_overview", "agent_overview_delegated", "agent_perception", "agent_perception_describe",
                    "answer_choice", "answer_number", "answer_text")
    toolbox_class = ConfidenceToolbox

    def run(self, context: AgentContext, on_event=None) -> dict:
        ctx, cfg, toolbox, rec = context, context.config, context.toolbox, context.recorder
        rounds = min(cfg.confidence_rounds, cfg.max_steps)
        content, shown, frontier = show_overview(ctx)
        system = prompt("confidence_system", duration=toolbox.duration, rounds=rounds, max_frames=cfg.max_frames,
                        overview_frames=shown, answer_rule=ctx.answer_texts.rule)
        messages = [Message(role="system", content=system), Message(role="user", content=content)]
        state = {"step": 0, "frames_shown": shown, "frontier": frontier, "prompting": frontier,
                 "tokens_used": sum(n.tokens.total for n in rec.trace.nodes if n.tokens)}
        progress_event(on_event, "overview", state, rec)
        reasked = False
        while True:
            step = state["step"] = state["step"] + 1
            try:
                deadline.check()
                reply = ctx.backend.chat(messages, tools=toolbox.specs(only=("judge_answer",)))
            except SleuthError as exc:
                failed(ctx, exc, step, state["frontier"])
                return state
            state["tokens_used"] += reply.usage.total_tokens
            thought, pending, _ = record_reply(ctx, reply, step, state)
            messages.append(Message(role="assistant", content=reply.text, tool_calls=[p["call"] for p in pending]))
            judged, last_node = None, thought
            for item in pending:  # the first judge_answer counts; anything else is answered with an error
                call = item["call"]
                if call.name != "judge_answer" or judged is not None:
                    obs = Observation(tool=call.name, text="error: not run: only one `judge_answer` is available",
                                      error="only one `judge_answer` is available")
                else:
                    obs = toolbox.call(call, frames_left=0)
                node = record_observation(ctx, obs, step, item["node_id"])
                last_node = node.id
                messages.append(Message(role="tool", tool_call_id=call.id, name=call.name, content=obs.text))
                if judged is None and call.name == "judge_answer":
                    judged = (obs, call, node)
            final, problem = _judged_answer(ctx, judged[0] if judged else None)
            if final is None:
                if reasked or step >= rounds:  # one re-ask, never a guess
                    request = judged[0].answer if judged else None
                    rec.finish(FinalAnswer(option=None, reason="invalid_letter" if request else "no_answer",
                                           rationale=(request.rationale if request else reply.text.strip()[:500])),
                               step, after=[last_node])
                    return state
                reasked = True
                messages.append(Message(role="user", content=prompt("confidence_reask", problem=problem,
                                                                    answer_hint=hint(ctx))))
                state["frontier"] = [last_node]
                continue
            obs, call, node = judged
            judgement = rec.add("judgement", step, after=[node.id],
                                text=f"{final.given()} at confidence {obs.confidence}: {final.rationale}")
            judgement.confidence = obs.confidence
            final.confidence = obs.confidence
            out_of_frames = state["frames_shown"] >= cfg.max_frames
            if obs.confidence >= CONFIDENT or step >= rounds or out_of_frames:
                final.reason = "answered" if obs.confidence >= CONFIDENT else "budget_exhausted"
                rec.finish(final, step, after=[judgement.id])
                return state
            found, images = self._look(ctx, call.arguments, step, judgement.id, state)
            status = (f"[{rounds - step} of {rounds} rounds and {cfg.max_frames - state['frames_shown']} of "
                      f"{cfg.max_frames} frames left]")
            text = prompt("confidence_round", round=step + 1, rounds=rounds, found=found, status=status)
            messages.append(Message(role="user", content=[*images, TextPart(text=text)]))
            progress_event(on_event, "round", state, rec)

    def _look(self, ctx: AgentContext, arguments: dict, step: int, after: str, state: dict) -> tuple[str, list]:
        """Search the named segment for what is missing and show the best hits; returns what to tell the
        model and the images. The calls are recorded as the strategy's, made on the model's request."""
        cfg, toolbox = ctx.config, ctx.toolbox
        query = (arguments.get("query") or "").strip() or ctx.question
        window = {k: arguments[k] for k in ("start", "end") if arguments.get(k) is not None}
        left = cfg.max_frames - state["frames_shown"]
        search = ToolCall(id=f"round_{step}_search", name="search_frames",
                          arguments={"query": query, "k": min(cfg.search_k, left), **window})
        hits = self._run(ctx, search, step, after, left)
        state["frontier"] = [hits[1]]
        times = [f.t for f in hits[0].frames]
        if hits[0].error or not times:
            return f"The search for {query!r} found nothing to show ({hits[0].text}).", []
        view = ToolCall(id=f"round_{step}_view", name="view_frames", arguments={"timestamps": times})
        seen, node_id = self._run(ctx, view, step, hits[1], left)
        state["frontier"] = state["prompting"] = [node_id]
        state["frames_shown"] += seen.frames_shown
        if seen.error:
            return f"The frames found for {query!r} could not be shown ({seen.error}).", []
        where = f" between {window.get('start', 0.0):.2f}s and {window.get('end', toolbox.duration):.2f}s"
        labels = ", ".join(f"t={t:.2f}s" for t in times)
        found = f"The {len(times)} frames that best match {query!r}{where} ({labels})"
        if not seen.images:  # delegated perception: the planner reads what the perception model said
            return f"{found}: {seen.text}", []
        return f"{found} are shown above.", [TextPart(text="Frames found:"), *seen.images]

    @staticmethod
    def _run(ctx: AgentContext, call: ToolCall, step: int, after: str, frames_left: int) -> tuple[Observation, str]:
        """Run one tool call the strategy makes, recorded as a tool call and its observation."""
        node = ctx.recorder.add("tool_call", step, after=[after], tool=call.name, arguments=call.arguments,
                                text="made by the strategy on the model's request")
        obs = ctx.toolbox.call(call, frames_left=frames_left)
        return obs, record_observation(ctx, obs, step, node.id).id
