"""Turning a model's free-text reply into an option letter.

The order follows MMR-V's official evaluation script: a ``[[X]]`` marker,
then ``\\boxed{X}``, then the last standalone capital letter. Two modes:

- default: the LAST ``[[X]]`` (and last ``\\boxed{X}``), and only letters the
  question offers count. Real replies sometimes echo the format instruction
  ("[[A]] or [[B]] or ...") before giving their answer, and the first-match
  rule then reads that echo as the answer. The standalone-letter fallback is
  case-sensitive, so the words "a" and "I" in lower case are not answers.
- ``strict_official=True``: byte-for-byte the official script (first
  ``[[X]]``, first ``\\boxed{X}``, last ``\\b[A-L]\\b`` of the upper-cased
  reply; any letter A-L, whether the question offers it or not). This is what
  the benchmark's published ``<model>_response`` fields were produced with;
  use it for like-for-like reproduction.

Every result says which rule fired (``brackets``, ``boxed``, ``letter`` or
``none``), so a report can count how answers were obtained.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

OFFICIAL_LETTERS = "ABCDEFGHIJKL"  # what MMR-V's official script accepts (its questions have up to 12 options)

ExtractionRule = Literal["brackets", "boxed", "letter", "none"]

# any capital letter: the question's own letters decide which count
_BRACKETS = re.compile(r"\[\[([A-Z])\]\]")
_BOXED = re.compile(r"\\boxed\{([A-Z])\}")
_STANDALONE = re.compile(r"\b([A-Z])\b")
# byte for byte the official script's patterns
_OFFICIAL_BRACKETS = re.compile(r"\[\[([A-L])\]\]")
_OFFICIAL_BOXED = re.compile(r"\\boxed\{([A-L])\}")
_OFFICIAL_STANDALONE = re.compile(r"\b([A-L])\b")


@dataclass(frozen=True)
class Extraction:
    letter: str | None
    rule: ExtractionRule


def extract_answer(text: str | None, letters: str | list[str] | None = None, *, strict_official: bool = False) -> Extraction:
    """The option letter a reply gives, and the rule that found it.

    ``letters``: the letters the question offers (default: A-L, MMR-V's). Ignored in
    ``strict_official`` mode, which, like the official script, accepts A-L.
    """
    if not text:
        return Extraction(None, "none")
    if strict_official:
        return _extract_official(text)

    allowed = set(letters) if letters else set(OFFICIAL_LETTERS)

    def last_allowed(matches: list[str]) -> str | None:
        for letter in reversed(matches):
            if letter in allowed:
                return letter
        return None

    for rule, pattern in (("brackets", _BRACKETS), ("boxed", _BOXED), ("letter", _STANDALONE)):
        letter = last_allowed(pattern.findall(text))
        if letter:
            return Extraction(letter, rule)  # type: ignore[arg-type]
    return Extraction(None, "none")


def _extract_official(text: str) -> Extraction:
    match = _OFFICIAL_BRACKETS.search(text)
    if match:
        return Extraction(match.group(1), "brackets")
    match = _OFFICIAL_BOXED.search(text)
    if match:
        return Extraction(match.group(1), "boxed")
    matches = _OFFICIAL_STANDALONE.findall(text.upper())
    if matches:
        return Extraction(matches[-1], "letter")
    return Extraction(None, "none")
