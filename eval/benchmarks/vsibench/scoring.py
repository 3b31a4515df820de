"""Reading and scoring VSI-Bench answers, as the official ``lmms_eval/tasks/vsibench/utils.py`` does.

- rule ``first_token``: ``reply.split(' ')[0].rstrip('.').strip()``, the
  official ``fuzzy_matching`` (rule ``none`` when it gives no answer). It
  splits on the space character only, so a reply whose letter is followed by
  a line break (``"B\\nThe stove ..."``) or starts with a space reads as no
  answer; the official scorer gives it 0 and so do we, counting it as an
  extraction failure.
- multiple choice: that token compared with the gold letter, ignoring case
  (the official ``exact_match`` lower-cases both). Any single letter is kept
  as the prediction, even one the options lack, since the official comparison
  does not look at the options.
- numbers: ``float()`` of that token (the official ``to_float``); a token
  that is not a finite number is no answer (``nan`` and ``inf`` parse but
  score 0 in the official code too).
- the ``lenient-number`` variant, lmms-eval HEAD's rule for numbers
  (``eab6655a``): the first number in the reply, as digits
  (``-?\\d+(\\.\\d+)?``, rule ``number``) or a run of English number words
  ("twenty-one", "three hundred and five", rule ``number_word``), whichever
  comes first.

Mean relative accuracy: ``eval.benchmarks.base.mean_relative_accuracy`` is
the official computation (``<=`` against ``1 - numpy.linspace(.5, .95, 10)``,
in floating point, so that a relative error of exactly 0.2 fails the 0.80
threshold: ``1 - 0.8 == 0.19999999999999996``). ``paper_mra`` is Eq. 1 of the
paper: strict ``<``, computed exactly on the numbers as written.

The overall is the official aggregation: the mean per question type, the
three relative-direction sub-types averaged into one task, then the
unweighted mean of the task scores.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from statistics import fmean
from typing import Any, Iterable

from eval.benchmarks.base import Extraction
from eval.benchmarks.vsibench.records import REL_DIRECTION, REL_DIRECTION_TYPES, task_of

_NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100, "thousand": 1000,
}
_DIGITS = re.compile(r"-?\d+(?:\.\d+)?")
_WORD = re.compile(r"[a-z]+")


def first_token(reply: str) -> str:
    """The official ``fuzzy_matching``: the text before the first space, without trailing dots."""
    return reply.split(" ")[0].rstrip(".").strip()


def extract_choice(reply: str) -> Extraction:
    token = first_token(reply)
    if re.fullmatch(r"[A-Za-z]", token):
        return Extraction(token.upper(), "first_token")
    return Extraction(None, "none")


def extract_number(reply: str, *, lenient: bool = False) -> Extraction:
    if lenient:
        return _first_number(reply)
    try:
        value = float(first_token(reply))
    except ValueError:
        return Extraction(None, "none")
    return Extraction(value, "first_token") if math.isfinite(value) else Extraction(None, "none")


def _first_number(reply: str) -> Extraction:
    """lmms-eval HEAD's ``extract_number``: whichever comes first, digits or a run of number words."""
    text = reply.strip().lower()
    digits = _DIGITS.search(text)
    run: list[str] = []
    run_start = None
    for match in _WORD.finditer(text):
        word = match.group(0)
        if run_start is None:
            if word in _NUMBER_WORDS:
                run_start, run = match.start(), [word]
        elif word in _NUMBER_WORDS:
            run.append(word)
        elif word != "and":  # "three hundred and five" is one number
            break
    if digits is not None and (run_start is None or digits.start() < run_start):
        return Extraction(float(digits.group(0)), "number")
    if run_start is None:
        return Extraction(None, "none")
    total = current = 0
    for word in run:
        value = _NUMBER_WORDS[word]
        if value == 100:
            current = max(current, 1) * 100
        elif value == 1000:
            total += max(current, 1) * 1000
            current = 0
        else:
            current += value
    return Extraction(float(total + current), "number_word")


def paper_mra(prediction: float, gold: float) -> float:
    """Paper Eq. 1: the share of θ in {0.50, 0.55, ..., 0.95} with |pred - gold| / gold < 1 - θ, exactly."""
    pred, target = Fraction(repr(prediction)), Fraction(repr(gold))  # the decimals as written, not their binary
    error = abs(pred - target) / abs(target)
    return sum(error < 1 - Fraction(10 + k, 20) for k in range(10)) / 10


def official_overall(items: Iterable[Any]) -> float | None:
    """Mean of the task scores; a task's score is its questions' mean, except relative direction:
    the mean of its easy, medium and hard means. Over the tasks and sub-types present (a subset run)."""
    by_type: dict[str, list[float]] = {}
    for item in items:
        question_type = item.groups.get("question_type")
        if question_type:
            by_type.setdefault(question_type, []).append(item.score)
    means = {t: fmean(scores) for t, scores in by_type.items()}
    tasks: dict[str, float] = {t: m for t, m in means.items() if task_of(t) != REL_DIRECTION}
    directions = [means[t] for t in REL_DIRECTION_TYPES if t in means]
    if directions:
        tasks[REL_DIRECTION] = fmean(directions)
    return fmean(tasks.values()) if tasks else None
