"""The answer letter of a reply, read exactly as Video-Holmes's official ``evaluate.py`` reads it.

The official rule, in order:

1. the text to read: the content of the LAST ``<answer>...</answer>``
   (``re.findall(r'<answer>\\s*(.*?)\\s*</answer>', reply, re.DOTALL)[-1].strip()``),
   or the whole reply, untouched, when it has no such tag;
2. first pass, A to F: the first letter X with ``"X "``, ``"X:"`` or ``"[X"`` in that text;
3. second pass, A to F: the first capital letter X anywhere in it;
4. else ``WRONG``: no letter (here ``None``, rule ``none``), scored wrong.

The rule that fired is named ``<tag|reply>_<marked|letter>`` (``tag_letter``
for a clean ``<answer>B</answer>``), or ``none``. The cascade is the
official one on purpose, misreadings included, so that scores compare with
the paper's: the passes go A to F, so any capital A wins (``"Answer: C"``
without tags reads ``A``, from "Answer"; ``<answer>The A4 paper ...</answer>``
reads ``A``). Unlike lmms-eval's port (which guesses a random letter when
nothing parses), an unreadable answer is never guessed.
"""

from __future__ import annotations

import re

from eval.benchmarks.base import Extraction
from eval.benchmarks.video_holmes.records import OPTION_LETTERS

ANSWER_TAG = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.DOTALL)  # the official pattern


def extract_answer(text: str | None) -> Extraction:
    """The letter the official scorer reads from ``text``, and the rule that found it."""
    tagged = ANSWER_TAG.findall(text or "")
    where, choice = ("tag", tagged[-1].strip()) if tagged else ("reply", text or "")
    for letter in OPTION_LETTERS:
        if f"{letter} " in choice or f"{letter}:" in choice or f"[{letter}" in choice:
            return Extraction(letter, f"{where}_marked")
    for letter in OPTION_LETTERS:
        if letter in choice:
            return Extraction(letter, f"{where}_letter")
    return Extraction(None, "none")
