"""Matched budgets: each agent run set beside the uniform run that showed about as many frames.

A uniform run shows exactly N frames per question (its ``frames`` setting); an
agent run shows a varying number, at most its budget. Each agent run is paired
with the uniform run whose N is nearest the agent's mean frames shown, and the
pair is called matched only when N is within ``max(2, 25%)`` of that mean;
otherwise the report says no uniform run is near, rather than compare
different budgets as if they were equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NEAR_FRACTION = 0.25
NEAR_FRAMES = 2.0


@dataclass
class BudgetPoint:
    """One run on the accuracy-against-frames plane."""

    name: str
    uniform: bool
    frames: float | None  # uniform: N; others: mean frames shown over answered questions


@dataclass
class BudgetPair:
    agent: str
    agent_frames: float
    uniform: str | None  # the nearest uniform run, or None when there is none at all
    uniform_frames: float | None
    matched: bool  # the nearest uniform run is near enough to compare at equal budgets
    note: str


def budget_point(name: str, config: dict[str, Any], frames_shown: list[int]) -> BudgetPoint:
    uniform = (config.get("method") or "") == "uniform"
    if uniform and config.get("frames") is not None:
        return BudgetPoint(name, True, float(config["frames"]))
    mean = sum(frames_shown) / len(frames_shown) if frames_shown else None
    return BudgetPoint(name, uniform, mean)


def is_near(a: float, b: float) -> bool:
    return abs(a - b) <= max(NEAR_FRAMES, NEAR_FRACTION * max(a, b))


def budget_pairs(points: list[BudgetPoint]) -> list[BudgetPair]:
    """Every non-uniform run with frames, paired with the uniform run at the nearest frame count."""
    uniforms = [p for p in points if p.uniform and p.frames is not None]
    pairs = []
    for point in points:
        if point.uniform or point.frames is None:
            continue
        if not uniforms:
            pairs.append(BudgetPair(point.name, point.frames, None, None, False,
                                    "no uniform run to compare with: add one at about this many frames"))
            continue
        nearest = min(uniforms, key=lambda u: (abs(u.frames - point.frames), u.frames))
        matched = is_near(nearest.frames, point.frames)
        note = (f"matched: {point.frames:.1f} frames shown on average against {nearest.frames:.0f}" if matched else
                f"no uniform run near {point.frames:.1f} frames (nearest: {nearest.name} at {nearest.frames:.0f}); "
                f"add one at about {round(point.frames)} frames before comparing")
        pairs.append(BudgetPair(point.name, point.frames, nearest.name, nearest.frames, matched, note))
    return pairs
