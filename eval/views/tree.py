"""A reasoning trace as a rich tree, readable in a terminal over SSH.

Same content as the HTML page, in text: options with the chosen and gold
answers, each step's nodes (thoughts, tool calls with arguments,
observations with the frames' timestamps and sources, errors), the answer
with its evidence, and tokens, latency and cost per step and in total.
``trace_outline`` gives the same structure as plain data for ``--json``.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from rich.tree import Tree

from agent.trace import Node, Trace
from eval.views.analysis import (
    call_signature,
    evidence_flags,
    format_clock,
    format_cost,
    format_seconds,
    parse_option,
    step_summaries,
    unseen_evidence,
    verdict,
)
from eval.views.labels import trace_labels

SOURCE_STYLE = {"overview": "grey62", "search": "dark_orange", "view": "dodger_blue1", "resample": "medium_purple1",
                "caption": "dark_cyan"}
KIND_STYLE = {
    "question": "bold",
    "overview": "grey62",
    "thought": "yellow",
    "tool_call": "bold cyan",
    "observation": "green",
    "captions": "dark_cyan",
    "judgement": "cyan",
    "answer": "bold magenta",
}
OBSERVATION_PREVIEW_CHARS = 240


def _usage(prompt: int | None, completion: int | None, latency: float | None, cost: float | None) -> Text:
    parts = []
    if prompt is not None:
        parts.append(f"{prompt + (completion or 0):,} tok")
    if latency is not None:
        parts.append(f"{latency:.2f} s")
    if prompt is not None or cost is not None:
        parts.append(format_cost(cost))
    return Text("  " + " · ".join(parts), style="dim") if parts else Text()


def _node_usage(node: Node) -> Text:
    tokens = node.tokens
    return _usage(tokens.prompt if tokens else None, tokens.completion if tokens else None, node.latency_s, node.cost_usd)


def _frames_line(node: Node, flags: list[bool]) -> Text:
    line = Text()
    listed = []
    for frame, is_evidence in zip(node.frames, flags):
        if not frame.shown:
            listed.append((frame, is_evidence))
            continue
        line.append(format_seconds(frame.t), style=SOURCE_STYLE.get(frame.source, ""))
        if frame.score is not None:
            line.append(f" ({frame.score:.3f})", style="dim")
        if is_evidence:
            line.append(" ★", style="bold red")
        line.append("  ")
    if listed:
        line.append("listed: ", style="dim")
        for frame, is_evidence in listed:
            line.append(format_seconds(frame.t), style="dim " + SOURCE_STYLE.get(frame.source, ""))
            if frame.score is not None:
                line.append(f" ({frame.score:.3f})", style="dim")
            if is_evidence:
                line.append(" ★", style="bold red")
            line.append("  ")
    line.rstrip()
    return line


def _edge_notes(trace: Trace, node: Node) -> Text:
    notes = []
    for edge in trace.edges:
        if edge.kind == "prompted" and edge.target == node.id:
            notes.append(f"← prompted by {edge.source}")
        elif edge.kind == "evidence" and edge.source == node.id:
            notes.append(f"→ evidence {edge.target}")
    return Text("  " + ", ".join(notes), style="dim italic") if notes else Text()


def _node_text(trace: Trace, node: Node) -> Text:
    head = Text()
    head.append(node.kind.replace("_", " "), style=KIND_STYLE.get(node.kind, ""))
    head.append(f" {node.id}", style="dim")
    if node.kind == "tool_call":
        head.append("  ")
        head.append(call_signature(node, max_len=400), style="cyan")
    elif node.kind == "observation" and node.tool:
        head.append(f"  {node.tool}", style="green")
    elif node.kind == "overview":
        head.append(f"  {len(node.frames)} frames", style="grey62")
    elif node.kind == "question":
        head.append(f"  {len(trace.options)} options", style="dim")
    elif node.kind == "answer":
        answer = trace.answer
        head.append(f"  {answer.option or 'no option'}" if answer else "", style="bold")
        if answer is not None and answer.reason == "budget_exhausted":
            head.append("  forced", style="bold yellow")
    elif node.kind == "judgement" and node.confidence is not None:
        head.append(f"  confidence {node.confidence}/3", style="cyan")
    head.append_text(_node_usage(node))
    head.append_text(_edge_notes(trace, node))
    if node.kind in ("thought", "judgement", "captions") and node.text:
        head.append("\n" + node.text, style="italic")
    elif node.kind == "observation" and node.text and not (node.error and node.error in node.text):
        preview = node.text if len(node.text) <= OBSERVATION_PREVIEW_CHARS else node.text[:OBSERVATION_PREVIEW_CHARS] + "…"
        head.append("\n" + preview)
    for caption in node.captions:
        head.append(f"\n{format_seconds(caption.start)}–{format_seconds(caption.end)}  ", style="bold")
        head.append(caption.text + ("  (cached)" if caption.cached else ""))
    for v in node.verdicts:
        head.append_text(_verdict_line(v))
    if node.error:
        head.append("\n⚠ " + node.error, style="bold red")
    return head


def _verdict_line(v: Any) -> Text:
    """``C supported (31.0s, 35.0s): note`` on a line of its own."""
    line = Text(f"\n{v.option} ", style="bold")
    line.append(v.verdict, style={"supported": "green", "refuted": "red"}.get(v.verdict, "grey62"))
    if v.times:
        line.append(" (" + ", ".join(format_seconds(t) for t in v.times) + ")", style="red")
    if v.note:
        line.append(": " + v.note)
    return line


def trace_tree(trace: Trace) -> Tree:
    """The whole trace as a ``rich.tree.Tree`` (print it with a rich ``Console``)."""
    title = Text()
    title.append(trace.question_id, style="bold")
    title.append("  " + trace.question)
    meta = f"\nvideo {trace.video}"
    if trace.duration_s:
        meta += f" ({format_clock(trace.duration_s)})"
    meta += "".join(f" · {role} {name}" for role, name in trace.models.items())
    title.append(meta, style="dim")
    for label in trace_labels(trace):
        title.append(f" [{label}]", style="bold yellow")
    tree = Tree(title, guide_style="grey50")

    answer = trace.answer
    options = tree.add(Text("options", style="bold"))
    for option in trace.options:
        letter, text = parse_option(option)
        line = Text(f"{letter or '·'}  ", style="bold")
        line.append(text)
        chosen = answer is not None and letter is not None and answer.option == letter
        gold = answer is not None and letter is not None and answer.gold == letter
        if chosen:
            line.append("  ◀ agent", style="bold green" if gold else "bold red")
        if gold:
            line.append("  ✓ gold", style="bold green")
        options.add(line)

    flags = evidence_flags(trace)
    flags_by_node: dict[str, list[bool]] = {}
    i = 0
    for node in trace.nodes:
        flags_by_node[node.id] = flags[i : i + len(node.frames)]
        i += len(node.frames)

    for summary in step_summaries(trace):
        label = Text("before planning" if summary.step == 0 else f"step {summary.step}", style="bold")
        if summary.model_calls:
            label.append_text(
                _usage(summary.prompt_tokens, summary.completion_tokens, summary.latency_s, summary.cost_usd)
            )
        branch = tree.add(label)
        for node in summary.nodes:
            node_branch = branch.add(_node_text(trace, node))
            if node.frames:
                node_branch.add(_frames_line(node, flags_by_node[node.id]))

    outcome_class, outcome_words = verdict(trace)
    result = Text("answer ", style="bold")
    result.append(outcome_words, style={"correct": "bold green", "wrong": "bold red"}.get(outcome_class, "bold"))
    if answer is not None:
        result.append(f"  chose {answer.option or '—'}, gold {answer.gold or '?'}")
        if answer.reason == "budget_exhausted":
            result.append("  forced: budget exhausted", style="bold yellow")
        if answer.confidence is not None:
            result.append(f"  confidence {answer.confidence}/3", style="cyan")
        if answer.evidence:
            result.append("  cites " + ", ".join(format_seconds(t) for t in answer.evidence), style="red")
        missing = unseen_evidence(trace)
        if missing:
            result.append(
                "  (never seen: " + ", ".join(format_seconds(t) for t in missing) + ")", style="bold yellow"
            )
    answer_branch = tree.add(result)
    if answer is not None and answer.rationale:
        answer_branch.add(Text(answer.rationale, style="italic"))
    for v in answer.verdicts if answer is not None else []:
        answer_branch.add(_verdict_line(v)[1:])

    totals = trace.totals
    tree.add(
        Text(
            f"totals  {totals.steps} steps · {totals.model_calls} model calls · {totals.frames_shown} frames shown · "
            f"{totals.tokens.prompt:,} + {totals.tokens.completion:,} tok · {totals.latency_s:.1f} s · "
            f"{format_cost(totals.cost_usd)}",
            style="bold",
        )
    )
    return tree


def trace_outline(trace: Trace) -> dict[str, Any]:
    """The tree's content as JSON-ready data (frames without thumbnails)."""
    flags = evidence_flags(trace)
    frame_index = 0
    steps = []
    for summary in step_summaries(trace):
        nodes = []
        for node in summary.nodes:
            frames = []
            for frame in node.frames:
                frames.append(
                    {
                        "t": frame.t,
                        "source": frame.source,
                        "score": frame.score,
                        "shown": frame.shown,
                        "evidence": flags[frame_index],
                    }
                )
                frame_index += 1
            nodes.append(
                {
                    "id": node.id,
                    "kind": node.kind,
                    "text": node.text,
                    "tool": node.tool,
                    "arguments": node.arguments,
                    "error": node.error,
                    "frames": frames,
                    "tokens": node.tokens.model_dump() if node.tokens else None,
                    "latency_s": node.latency_s,
                    "cost_usd": node.cost_usd,
                    "verdicts": [v.model_dump() for v in node.verdicts],
                    "confidence": node.confidence,
                    "captions": [c.model_dump() for c in node.captions],
                }
            )
        steps.append(
            {
                "step": summary.step,
                "prompt_tokens": summary.prompt_tokens,
                "completion_tokens": summary.completion_tokens,
                "latency_s": round(summary.latency_s, 6),
                "cost_usd": summary.cost_usd,
                "nodes": nodes,
            }
        )
    return {
        "question_id": trace.question_id,
        "video": trace.video,
        "duration_s": trace.duration_s,
        "question": trace.question,
        "options": trace.options,
        "answer": trace.answer.model_dump() if trace.answer else None,
        "unseen_evidence": unseen_evidence(trace),
        "steps": steps,
        "edges": [e.model_dump() for e in trace.edges if e.kind != "next"],
        "totals": trace.totals.model_dump(),
        "labels": trace_labels(trace),
    }


__all__ = ["trace_outline", "trace_tree"]
