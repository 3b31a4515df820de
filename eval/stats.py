"""Uncertainty for accuracies and paired comparisons.

- ``wilson_ci``: the Wilson score interval for a proportion. Unlike a
  percentile bootstrap (or the normal approximation) it does not collapse to
  a zero-width interval when every outcome agrees or n is tiny: 1 of 1
  correct gives about 21-100%, not 100-100%. Closed form, so deterministic.
- ``mean_ci``: for scores with partial credit (e.g. mean relative accuracy),
  a t-interval of the mean clipped to [0, 1], widened to the Wilson interval
  of the rounded successes when the scores all agree.
- ``mcnemar``: McNemar's exact test for two methods on the same questions
  (a two-sided binomial test on the discordant pairs, via scipy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Sequence

import numpy as np


def wilson_ci(correct: int, n: int, *, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval for ``correct`` successes out of ``n``; None when n is 0."""
    if n == 0:
        return None
    if not 0 <= correct <= n:
        raise ValueError(f"correct must be between 0 and n (got {correct} of {n})")
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    p = correct / n
    z2n = z * z / n
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z / (1.0 + z2n) * math.sqrt(p * (1.0 - p) / n + z2n / (4.0 * n))
    # at p = 0 or 1 one bound is exactly 0 or 1 in theory; clamp the rounding
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_ci(scores: Sequence[float], *, confidence: float = 0.95) -> tuple[float, float] | None:
    """Interval for the mean of scores in [0, 1]; None when there are none."""
    n = len(scores)
    if n == 0:
        return None
    from scipy.stats import t

    mean = float(np.mean(scores))
    spread = float(np.std(scores, ddof=1)) if n > 1 else 0.0
    if spread == 0.0:  # no spread to estimate from: never claim a zero-width interval
        return wilson_ci(round(mean * n), n, confidence=confidence)
    half = float(t.ppf(0.5 + confidence / 2.0, n - 1)) * spread / math.sqrt(n)
    return max(0.0, mean - half), min(1.0, mean + half)


def paired_difference_ci(only_a: int, only_b: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Interval for the difference of two accuracies on the same n questions (b minus a), from the
    discordant counts: the normal approximation to the paired difference, clipped to [-1, 1]."""
    if n == 0:
        return 0.0, 0.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    delta = (only_b - only_a) / n
    spread = math.sqrt(max(0.0, only_a + only_b - (only_b - only_a) ** 2 / n)) / n
    return max(-1.0, delta - z * spread), min(1.0, delta + z * spread)


@dataclass(frozen=True)
class McNemarResult:
    n: int  # questions both runs answered
    both_correct: int
    only_a: int  # a right, b wrong
    only_b: int  # b right, a wrong
    both_wrong: int
    p_value: float | None  # None when there is no discordant pair to test

    @property
    def delta(self) -> float:
        """Accuracy of b minus accuracy of a, on the shared questions."""
        return (self.only_b - self.only_a) / self.n if self.n else 0.0


def mcnemar(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> McNemarResult:
    """Exact McNemar test on paired outcomes (same questions, same order)."""
    from scipy.stats import binomtest

    if len(a_correct) != len(b_correct):
        raise ValueError("paired outcomes must have the same length")
    a = np.asarray(a_correct, dtype=bool)
    b = np.asarray(b_correct, dtype=bool)
    only_a = int(np.sum(a & ~b))
    only_b = int(np.sum(~a & b))
    discordant = only_a + only_b
    p_value = float(binomtest(only_a, discordant, 0.5).pvalue) if discordant else None
    return McNemarResult(
        n=int(a.size),
        both_correct=int(np.sum(a & b)),
        only_a=only_a,
        only_b=only_b,
        both_wrong=int(np.sum(~a & ~b)),
        p_value=p_value,
    )
