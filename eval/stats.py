"""Uncertainty for accuracies and paired comparisons.

- ``bootstrap_ci``: percentile bootstrap of the mean of 0/1 outcomes, with a
  fixed seed so a report is reproducible to the digit.
- ``mcnemar``: McNemar's exact test for two methods on the same questions
  (a two-sided binomial test on the discordant pairs, via scipy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

DEFAULT_SEED = 20250601
DEFAULT_RESAMPLES = 2000


def bootstrap_ci(
    outcomes: Sequence[bool] | np.ndarray,
    *,
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval for the accuracy of 0/1 outcomes; None when there are none."""
    values = np.asarray(outcomes, dtype=float)
    if values.size == 0:
        return None
    rng = np.random.default_rng(seed)
    # resampling counts from a binomial is the same distribution as resampling rows, and cheaper
    means = rng.binomial(values.size, values.mean(), size=resamples) / values.size
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


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
