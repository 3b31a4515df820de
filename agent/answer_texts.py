"""How prompts speak of the answer a question expects, from ``prompts/answer_<kind>.md``."""

from __future__ import annotations

from prompts import load_prompt


class AnswerTexts:
    """How prompts speak of the expected answer, from ``prompts/answer_<kind>.md``: a short ``hint``
    ("one of the letters A, B"), a ``rule`` for the system prompt and the ``format`` block shown
    with the question (the options, for a multiple-choice question)."""

    def __init__(self, kind: str, letters: list[str], options: list[str]):
        text = load_prompt(f"answer_{kind}").text.strip()
        values = {"letters": ", ".join(letters), "options": "\n".join(options)}
        hint, rule, answer_format = (part.strip() for part in text.split("\n\n", 2))  # hint, rule, format
        self.hint = hint.format(**values)
        self.rule = rule.format(**values)
        self.format = answer_format.format(**values)

