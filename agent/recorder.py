"""Builds the reasoning graph (``Trace``) as the agent runs.

The graph nodes call ``TraceRecorder`` methods; it numbers the trace nodes,
links them (``next``: what followed what; ``prompted``: which observations
the model had read when it made a call; ``evidence``: which observations
contain the frames an answer cites) and keeps the totals.
"""

from __future__ import annotations

from typing import Any

from agent.backends.base import Reply, Usage
from agent.trace import Edge, FinalAnswer, FrameRef, Node, NodeKind, OptionVerdict, TokenUsage, Trace

# An answer cites a frame by its label (t=12.50s); allow for rounding and for
# citing a neighbouring frame of the same moment.
EVIDENCE_TOLERANCE_S = 0.5
# nodes whose shown frames a model saw (a caption memory's frames were seen by the captioning model)
SEEING_KINDS = ("overview", "captions", "observation")


class TraceRecorder:
    def __init__(self, trace: Trace):
        self.trace = trace
        self._emitted = 0
        self._unknown_cost = False

    # ------------------------------------------------------------------ nodes
    def add(
        self,
        kind: NodeKind,
        step: int,
        *,
        after: list[str] | None = None,
        text: str = "",
        tool: str | None = None,
        arguments: dict[str, Any] | None = None,
        frames: list[FrameRef] | None = None,
        error: str | None = None,
    ) -> Node:
        node = Node(
            id=f"n{len(self.trace.nodes)}", kind=kind, step=step, text=text, tool=tool,
            arguments=arguments, frames=frames or [], error=error,
        )
        self.trace.nodes.append(node)
        for source in after or []:
            self.link(source, node.id, "next")
        return node

    def link(self, source: str, target: str, kind: str) -> None:
        self.trace.edges.append(Edge(source=source, target=target, kind=kind))

    def model_call(self, node: Node, *, usage: Usage, latency_s: float, cost_usd: float | None) -> None:
        """Add one model call's usage to ``node`` (a node may stand for several calls, e.g. a caption
        memory) and to the totals."""
        before = node.tokens or TokenUsage()
        node.tokens = TokenUsage(prompt=before.prompt + usage.prompt_tokens,
                                 completion=before.completion + usage.completion_tokens)
        node.latency_s = round((node.latency_s or 0.0) + latency_s, 4)
        first = node.cost_usd is None and before.total == 0
        node.cost_usd = cost_usd if first or cost_usd is None or node.cost_usd is None else node.cost_usd + cost_usd
        totals = self.trace.totals
        totals.model_calls += 1
        totals.tokens = TokenUsage(
            prompt=totals.tokens.prompt + usage.prompt_tokens,
            completion=totals.tokens.completion + usage.completion_tokens,
        )
        totals.latency_s = round(totals.latency_s + latency_s, 4)
        if cost_usd is None:
            self._unknown_cost = True
        totals.cost_usd = None if self._unknown_cost else round((totals.cost_usd or 0.0) + cost_usd, 8)

    def reply(self, node: Node, reply: Reply) -> None:
        self.model_call(node, usage=reply.usage, latency_s=reply.latency_s, cost_usd=reply.cost_usd)

    # ------------------------------------------------------------------ answer
    def finish(self, answer: FinalAnswer, step: int, *, after: list[str]) -> Node:
        """Record the final answer and link it to the observations that hold its evidence."""
        # an answer may rest only on frames a model saw: citing a search hit never shown, or any other
        # moment, is flagged (and counted by scores and reports)
        answer.unseen_evidence = [t for t in answer.evidence if not self._seen(t)]
        self.trace.answer = answer
        text = answer.rationale if answer.option else f"no answer ({answer.reason})"
        error = None if answer.option else answer.reason
        if answer.unseen_evidence and error is None:
            error = "cites frames no model was shown: " + ", ".join(f"{t:.2f}s" for t in answer.unseen_evidence)
        node = self.add("answer", step, after=after, text=text, error=error)
        node.arguments = {"option": answer.option, "evidence": answer.evidence}
        for source_id in self.evidence_nodes(answer.evidence):
            self.link(node.id, source_id, "evidence")
        return node

    def judged(self, node: Node, verdicts: list[OptionVerdict]) -> None:
        """Keep the verdicts on ``node`` with evidence edges to the frames behind them; a verdict citing a
        moment no model was shown is flagged, like an answer's."""
        node.verdicts = list(verdicts)
        times = [t for v in verdicts for t in v.times]
        for source_id in self.evidence_nodes(times):
            self.link(node.id, source_id, "evidence")
        unseen = sorted({t for t in times if not self._seen(t)})
        if unseen:
            node.error = "verdicts cite frames no model was shown: " + ", ".join(f"{t:.2f}s" for t in unseen)

    def _seen(self, t: float) -> bool:
        return any(_near(n.frames, t, True) for n in self.trace.nodes if n.kind in SEEING_KINDS)

    def evidence_nodes(self, timestamps: list[float]) -> list[str]:
        """Observation/overview nodes that contain a frame near a cited timestamp (shown frames first)."""
        found: list[str] = []
        for t in timestamps:
            matches = [n for n in self.trace.nodes if n.kind in SEEING_KINDS and _near(n.frames, t, True)]
            if not matches:  # cited a search hit it never looked at
                matches = [n for n in self.trace.nodes if n.kind == "observation" and _near(n.frames, t, False)]
            found += [n.id for n in matches if n.id not in found]
        return found

    # ------------------------------------------------------------------ streaming
    def new_nodes(self) -> list[Node]:
        """Nodes added since the last call (for progress events)."""
        nodes = self.trace.nodes[self._emitted:]
        self._emitted = len(self.trace.nodes)
        return nodes


def _near(frames: list[FrameRef], t: float, shown: bool) -> bool:
    return any(abs(f.t - t) <= EVIDENCE_TOLERANCE_S and f.shown == shown for f in frames)
