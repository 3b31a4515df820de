"""The reasoning graph as Graphviz DOT or Mermaid text, for papers and slides.

Both exports group nodes by planning step, label each node in a line
(thought text, tool call with arguments, observation with frame counts,
answer against gold) and draw ``next`` edges solid, ``prompted`` edges dotted
and ``evidence`` edges highlighted. The node labels come from
``eval.views.analysis.node_label``.
"""

from __future__ import annotations

import re

from agent.trace import Node, Trace
from eval.views.analysis import node_label, shorten

_KIND_STYLE = {  # DOT shape, fill colour
    "question": ("box", "#e2e8f0"),
    "overview": ("box", "#f1f5f9"),
    "captions": ("box", "#ccfbf1"),
    "judgement": ("box", "#cffafe"),
    "thought": ("note", "#fef9c3"),
    "tool_call": ("box", "#dbeafe"),
    "observation": ("box", "#dcfce7"),
    "answer": ("doubleoctagon", "#fce7f3"),
}
EVIDENCE_COLOUR = "#e11d48"


# --------------------------------------------------------------------------- DOT


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(trace: Trace) -> str:
    """Graphviz DOT: ``dot -Tpdf trace.dot -o trace.pdf``."""
    known = {n.id for n in trace.nodes}
    title = f"{trace.question_id}: {shorten(trace.question, 80)}"
    lines = [
        f"digraph {_dot_quote('trace ' + trace.question_id)} {{",
        f"  graph [rankdir=TB, fontname=\"Helvetica\", labelloc=t, label={_dot_quote(title)}];",
        '  node [fontname="Helvetica", fontsize=10, style="rounded,filled", color="#64748b"];',
        '  edge [fontname="Helvetica", fontsize=9, color="#64748b"];',
    ]
    steps: dict[int, list[Node]] = {}
    for node in trace.nodes:
        steps.setdefault(node.step, []).append(node)
    for step in sorted(steps):
        lines.append(f"  subgraph cluster_step{step} {{")
        lines.append(f'    label={_dot_quote(f"step {step}")}; style=dashed; color="#cbd5e1"; fontcolor="#64748b";')
        for node in steps[step]:
            shape, fill = _KIND_STYLE.get(node.kind, ("box", "#ffffff"))
            extra = ', color="#dc2626", penwidth=2' if node.error else ""
            if node.error:
                fill = "#fee2e2"
            lines.append(
                f"    {_dot_quote(node.id)} [label={_dot_quote(node_label(node, trace))}, "
                f'shape={shape}, fillcolor="{fill}"{extra}];'
            )
        lines.append("  }")
    for edge in trace.edges:
        if edge.source not in known or edge.target not in known:
            continue
        attrs = {
            "next": "",
            "prompted": ' [style=dotted, label="prompted"]',
            "evidence": f' [style=dashed, color="{EVIDENCE_COLOUR}", fontcolor="{EVIDENCE_COLOUR}", '
            'penwidth=1.6, label="evidence", constraint=false]',
        }[edge.kind]
        lines.append(f"  {_dot_quote(edge.source)} -> {_dot_quote(edge.target)}{attrs};")
    lines.append("}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- Mermaid


def _mermaid_id(node_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_]", "_", node_id)
    return safe if safe[:1].isalpha() else "n_" + safe


def _mermaid_text(text: str) -> str:
    # Mermaid entity codes keep quotes and angle brackets from ending the label.
    return text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def to_mermaid(trace: Trace) -> str:
    """Mermaid flowchart text (paste into Markdown that renders ``mermaid`` blocks)."""
    known = {n.id for n in trace.nodes}
    lines = ["flowchart TD"]
    steps: dict[int, list[Node]] = {}
    for node in trace.nodes:
        steps.setdefault(node.step, []).append(node)
    for step in sorted(steps):
        lines.append(f"  subgraph step_{step} [step {step}]")
        for node in steps[step]:
            lines.append(f'    {_mermaid_id(node.id)}["{_mermaid_text(node_label(node, trace))}"]')
        lines.append("  end")
    evidence_links = []  # linkStyle addresses links by their order of appearance
    arrows = {"next": "-->", "prompted": "-.->|prompted|", "evidence": "==>|evidence|"}
    link_count = 0
    for edge in trace.edges:
        if edge.source not in known or edge.target not in known:
            continue
        if edge.kind == "evidence":
            evidence_links.append(link_count)
        lines.append(f"  {_mermaid_id(edge.source)} {arrows[edge.kind]} {_mermaid_id(edge.target)}")
        link_count += 1
    for kind, (_, fill) in _KIND_STYLE.items():
        lines.append(f"  classDef {kind} fill:{fill},stroke:#64748b")
    lines.append("  classDef failed stroke:#dc2626,stroke-width:2px")
    by_kind: dict[str, list[str]] = {}
    for node in trace.nodes:
        by_kind.setdefault("failed" if node.error else node.kind, []).append(_mermaid_id(node.id))
    for kind, ids in by_kind.items():
        lines.append(f"  class {','.join(ids)} {kind}")
    if evidence_links:
        lines.append(f"  linkStyle {','.join(map(str, evidence_links))} stroke:{EVIDENCE_COLOUR},stroke-width:2px")
    return "\n".join(lines) + "\n"


__all__ = ["to_dot", "to_mermaid"]
