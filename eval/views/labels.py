"""Labels that warn a reader what a run or a trace is not: random CLIP weights, a text-only planner, a forced answer.

Every page that shows a run or a trace (trace page, run browser index and
side-by-side pages, report) takes its labels from here, so a result that is
not what it seems is marked the same way wherever it appears.
"""

from __future__ import annotations

from typing import Any

from agent.trace import Trace

TEXT_ONLY_PLANNER = "text-only planner"  # a perception model looked at the frames, the planner read its words
FORCED_ANSWER = "forced answer"  # a budget ran out and the model was made to answer


def trace_labels(trace: Trace) -> list[str]:
    """The trace's own labels (``random-weights``, ``offline-demo``) and what its settings and answer say."""
    labels = list(trace.labels)
    agent = trace.settings.get("agent") if isinstance(trace.settings.get("agent"), dict) else {}
    if agent.get("perception") == "delegated" and TEXT_ONLY_PLANNER not in labels:
        labels.append(TEXT_ONLY_PLANNER)
    if trace.answer is not None and trace.answer.reason == "budget_exhausted":
        labels.append(FORCED_ANSWER)
    return labels


def config_labels(config: dict[str, Any]) -> list[str]:
    """A run's labels from its ``config.json``: the method's (random CLIP weights, ...) and a text-only planner."""
    settings = config.get("method_settings") if isinstance(config.get("method_settings"), dict) else {}
    index = config.get("index") if isinstance(config.get("index"), dict) else {}
    labels: list[str] = []
    for label in [*(settings.get("labels") or []), *(index.get("labels") or [])]:
        if isinstance(label, str) and label not in labels:
            labels.append(label)
    agent = settings.get("agent") if isinstance(settings.get("agent"), dict) else {}
    if (agent.get("perception") == "delegated" or settings.get("perception_model")) and TEXT_ONLY_PLANNER not in labels:
        labels.append(TEXT_ONLY_PLANNER)
    return labels


def run_labels(config: dict[str, Any], traces: list[Trace]) -> list[str]:
    """A run's labels: its config's, every label its traces carry, and how many answers were forced."""
    labels = config_labels(config)
    forced = 0
    for trace in traces:
        for label in trace_labels(trace):
            if label == FORCED_ANSWER:
                forced += 1
            elif label not in labels:
                labels.append(label)
    if forced:
        labels.append(f"{forced} {FORCED_ANSWER}{'s' if forced != 1 else ''}")
    return labels


__all__ = ["FORCED_ANSWER", "TEXT_ONLY_PLANNER", "config_labels", "run_labels", "trace_labels"]
