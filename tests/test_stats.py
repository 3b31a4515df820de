"""Statistics: Wilson score intervals for accuracies, McNemar's exact test for paired runs."""

from __future__ import annotations

import pytest

from eval.stats import mcnemar, wilson_ci


@pytest.mark.parametrize("correct, n, low, high", [
    # Newcombe (1998), "Two-sided confidence intervals for the single proportion", table I, method 3
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
])
def test_wilson_matches_published_values(correct, n, low, high):
    got = wilson_ci(correct, n)
    assert got == pytest.approx((low, high), abs=5e-5)


def test_wilson_does_not_collapse_on_tiny_or_unanimous_samples():
    low, high = wilson_ci(1, 1)
    assert low == pytest.approx(0.2065, abs=1e-4) and high == 1.0
    low, high = wilson_ci(20, 20)  # all correct: the lower bound still admits a miss rate
    assert low == pytest.approx(0.8389, abs=1e-4) and high == 1.0
    low, high = wilson_ci(0, 1)
    assert low == 0.0 and high == pytest.approx(0.7935, abs=1e-4)


def test_wilson_brackets_the_estimate_and_agrees_with_scipy():
    from scipy.stats import binomtest

    for correct, n in [(31, 61), (5, 7), (600, 1257)]:
        low, high = wilson_ci(correct, n)
        assert low < correct / n < high
        reference = binomtest(correct, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert (low, high) == pytest.approx((reference.low, reference.high), abs=1e-12)
    narrow, wide = wilson_ci(31, 61, confidence=0.9), wilson_ci(31, 61, confidence=0.99)
    assert wide[0] < narrow[0] and narrow[1] < wide[1]


def test_wilson_edge_cases():
    assert wilson_ci(0, 0) is None
    with pytest.raises(ValueError, match="between 0 and n"):
        wilson_ci(3, 2)


def test_mcnemar_exact():
    a = [True] * 10 + [False] * 6
    b = [True] * 10 + [True] * 6
    result = mcnemar(a, b)
    assert (result.only_a, result.only_b, result.both_correct, result.both_wrong) == (0, 6, 10, 0)
    assert result.p_value == pytest.approx(2 * 0.5**6)
    assert result.delta == pytest.approx(6 / 16)
    assert mcnemar([True, False], [True, False]).p_value is None
    with pytest.raises(ValueError):
        mcnemar([True], [True, False])
