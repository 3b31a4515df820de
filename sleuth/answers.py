"""What an answer is, and the one grammar for option letters.

Benchmarks ask for three kinds of answer: a multiple-choice ``choice`` (an
option letter, from any number of options: MMR-V has up to 12, Video-MMMU a
14-option question), a ``number`` (VSI-Bench scores numbers by mean relative
accuracy) and free ``text``. Every part of sleuth that reads, writes or shows
an answer uses the kinds and the letter functions here, so a letter means the
same thing in a dataset row, an agent's answer tool, a trace and a score.

Letters: options are lettered A, B, C, ... in order (up to Z). An option may
carry its own marker, ``"(B) text"``, ``"B. text"``, ``"[B] text"`` or
``"B) text"``; a bare ``"B"`` or ``"(b)"`` is a letter too.
"""

from __future__ import annotations

import math
import re
import string
from typing import Literal

AnswerKind = Literal["choice", "number", "text"]
ANSWER_KINDS: tuple[str, ...] = ("choice", "number", "text")

LETTERS = string.ascii_uppercase

# "(B) text", "B. text", "[b] text", "B) text", "B: text"
_MARKER = re.compile(r"^\s*[\(\[]?\s*([A-Za-z])\s*[\)\]\.:]")
# a letter alone, with optional brackets: "B", "(b)", "[B]", "B."
_BARE = re.compile(r"^\s*[\(\[]?\s*([A-Za-z])\s*[\)\]\.:]?\s*$")
_LEADING_MARKER = re.compile(r"^\s*\(\s*[A-Za-z]\s*\)\s*")


def letters_for(n: int) -> list[str]:
    """The letters of ``n`` options: A, B, ... (at most 26)."""
    if not 0 < n <= len(LETTERS):
        raise ValueError(f"a question has 1 to {len(LETTERS)} options, not {n}")
    return list(LETTERS[:n])


def option_letter(option: str) -> str | None:
    """The letter an option marks itself with (``"(C) text"`` -> ``"C"``), or None when unmarked."""
    match = _MARKER.match(option)
    return match.group(1).upper() if match else None


def parse_letter(value: object) -> str | None:
    """A letter written on its own or as an option's marker: ``"(B) "``, ``"b"``, ``"(B) text"`` -> ``"B"``."""
    if not isinstance(value, str):
        return None
    match = _BARE.match(value)
    if match:
        return match.group(1).upper()
    return option_letter(value)


def option_body(option: str) -> str:
    """The option's text without its ``(X)`` marker."""
    return _LEADING_MARKER.sub("", option).strip()


def label_options(options: list[str]) -> tuple[list[str], list[str]]:
    """(letters, options as ``"(X) text"``). Options that all carry ``(X)`` markers keep them;
    otherwise they are lettered by position."""
    if not options:
        raise ValueError("a question needs at least one option")
    if len(options) > len(LETTERS):
        raise ValueError(f"at most {len(LETTERS)} options (A-Z), got {len(options)}")
    marked = [re.match(r"^\s*\(\s*([A-Za-z])\s*\)", o) for o in options]
    if all(marked):
        letters = [m.group(1).upper() for m in marked]  # type: ignore[union-attr]
        if len(set(letters)) != len(letters):
            raise ValueError(f"option letters repeat: {', '.join(letters)}")
        return letters, [o.strip() for o in options]
    letters = letters_for(len(options))
    return letters, [f"({letter}) {option_body(o)}" for letter, o in zip(letters, options)]


def resolve_letter(answer: str, letters: list[str], options: list[str] | None = None) -> str | None:
    """The option letter a model meant, or None when it named none of them.

    Accepts "B", "b", "(B)", "B)", "(B) full option text" and the exact text of an
    option; anything else is invalid (never guessed).
    """
    text = answer.strip()
    match = re.fullmatch(r"\(?\s*([A-Za-z])\s*\)?[.:]?(?:\s+.*)?", text, flags=re.S)
    if match and (len(text) <= 4 or text.startswith("(") or re.match(r"[A-Z][.):]\s", text)):
        letter = match.group(1).upper()
        return letter if letter in letters else None
    for letter, full in zip(letters, options or []):
        if text.casefold() in (full.strip().casefold(), option_body(full).casefold()):
            return letter
    return None


def parse_number(value: object) -> float | None:
    """A finite number from a number or a string such as ``"3.5"``, ``"3.5 m"`` or ``"1,200"``; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        match = re.search(r"[-+]?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+", value)
        if not match:
            return None
        try:
            number = float(match.group(0).replace(",", ""))
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None
