"""The ``captions`` strategy: a caption memory of the whole video first, then the planner's loop.

Follows VideoAgent (Wang et al., ECCV 2024) and Deep Video Discovery (Zhang
et al., 2025), which both describe the video segment by segment before they
search: the video is cut into ``caption_segments`` equal segments, a model
(the perception model when one is set, else the planner itself) describes
each from ``caption_frames`` of its frames, and the planner reads that
memory in place of an overview, then searches, looks and answers with the
planner's tools and budgets.

Where it differs: the memory is short enough to read whole, so there is no
separate caption-search tool (Deep Video Discovery searches its caption
database); segments are equal in time, not cut at scene changes. Captions are
cached per video content, model, prompt, segmentation and image size, and a
cached memory still counts the frames it was made from against ``max_frames``.
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from agent.backends.base import Message, TextPart
from agent.caption_cache import caption_key, read_captions, write_captions
from agent.state import AgentContext, AgentState
from agent.strategies.base import register_strategy
from agent.strategies.planner import PROMPT_NAMES, PlannerStrategy, verdict_notes
from agent.strategies.steps import prompt
from agent.toolbox import describe_tools
from agent.trace import Caption, FrameRef
from prompts import load_prompt, prompt_hashes
from sleuth import deadline


def caption_plan(ctx: AgentContext) -> tuple[int, int]:
    """(segments, frames per segment): as configured, with fewer segments when the captions would use
    more than half the frame budget (the rest is for looking)."""
    cfg = ctx.config
    per = min(cfg.caption_frames, cfg.max_frames)
    segments = min(cfg.caption_segments, (cfg.max_frames // 2) // per) if per else 0
    return segments, per


def caption_memory(state: AgentState, runtime: Runtime[AgentContext]) -> dict:
    """Question plus the caption memory: the planner's first look at the video, in words."""
    ctx = runtime.context
    cfg, toolbox, rec = ctx.config, ctx.toolbox, ctx.recorder
    question_node = rec.add("question", 0, text="\n".join([ctx.question, *ctx.options]))
    segments, per = caption_plan(ctx)
    node = rec.add("captions", 0, after=[question_node.id])
    captions = _captions(ctx, node, segments, per) if segments else []
    node.text = f"{len(captions)} segments, {per} frames each" + (
        " (from the caption cache)" if captions and captions[0].cached else "")
    shown = sum(c.frames for c in captions)
    memory = "\n".join(f"- {c.start:.1f}s to {c.end:.1f}s: {c.text.strip() or '(empty)'}" for c in captions)
    system = prompt(
        "captions_system", duration=toolbox.duration, segments=len(captions), caption_frames=per,
        caption_total=shown, tools=describe_tools(toolbox.specs()), max_steps=cfg.max_steps,
        max_frames=cfg.max_frames, answer_rule=ctx.answer_texts.rule + verdict_notes(ctx),
        perception_note=load_prompt("agent_delegated_note").text.rstrip() + "\n" if ctx.delegated else "",
    )
    intro = prompt("agent_question", question=ctx.question, answer_format=ctx.answer_texts.format)
    content = [TextPart(text=intro + "\n\n" + prompt("captions_memory", segments=len(captions),
                                                     duration=toolbox.duration, memory=memory or "(none)"))]
    messages = [Message(role="system", content=system), Message(role="user", content=content)]
    tokens = sum(n.tokens.total for n in rec.trace.nodes if n.tokens)
    return {
        "messages": messages, "step": 0, "frames_shown": shown, "tokens_used": tokens, "pending": [],
        "frontier": [node.id], "prompting": [node.id], "reasked": False, "final_attempts": 0,
        "exhausted": None, "final": None,
    }


def _captions(ctx: AgentContext, node, segments: int, per: int) -> list[Caption]:
    """The memory, from the cache when it has it, kept on ``node`` with the frames behind it and the
    captioning calls' usage."""
    toolbox, cfg = ctx.toolbox, ctx.config
    captioner = toolbox.perception_backend if ctx.delegated else ctx.backend
    duration = toolbox.duration
    bounds = [(duration * i / segments, duration * (i + 1) / segments) for i in range(segments)]
    cache_dir = _cache_dir(toolbox.searcher)
    key = None
    if cache_dir is not None:
        key = caption_key(video=toolbox.video_path, cache_dir=cache_dir, model=captioner.model,
                          prompt_sha256=prompt_hashes(["caption_segment"])["caption_segment"], segments=segments,
                          frames=per, image_max_side=cfg.image_max_side)
        cached = read_captions(cache_dir, key)
        if cached is not None and len(cached) == segments:
            # the frames behind a cached caption were shown to a model all the same: they count
            node.frames = [FrameRef(t=t, source="caption") for c in cached for t in c.times]
            node.captions = cached
            toolbox.pixels_shown += sum(c.pixels for c in cached)
            return cached
    captions = []
    for start, end in bounds:
        deadline.check()
        batch = toolbox.look(toolbox.video.window_indices(start, end, per))
        images = [toolbox.image_part(f) for f in batch.frames]
        request = prompt("caption_segment", n_frames=len(images), start=start, end=end)
        reply = captioner.chat([Message(role="user", content=[TextPart(text=request), *images])])
        ctx.recorder.model_call(node, usage=reply.usage, latency_s=reply.latency_s, cost_usd=reply.cost_usd)
        captions.append(Caption(start=round(start, 3), end=round(end, 3), text=reply.text.strip(),
                                frames=len(images), times=[float(f.t) for f in batch.frames],
                                pixels=sum(part.width * part.height for part in images)))
        node.frames += [FrameRef(t=float(f.t), source="caption", thumb=toolbox.thumbnail(f))
                        for f in batch.frames]
    node.captions = captions
    if key is not None:
        write_captions(cache_dir, key, captions)
    return captions


def _cache_dir(searcher):
    try:
        return searcher.cache_dir
    except AttributeError:
        return None


@register_strategy
class CaptionsStrategy(PlannerStrategy):
    """Describe the video segment by segment, then plan, call tools, look and answer."""

    name = "captions"
    prompt_names = PROMPT_NAMES + ("caption_segment", "captions_system", "captions_memory")
    opening = staticmethod(caption_memory)

    def opening_frames(self, config) -> int:
        return 0  # the caption memory's frames depend on the cache; nothing is decoded ahead
