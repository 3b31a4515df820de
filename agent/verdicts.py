"""Option verdicts: what the model has concluded about each option so far, and which options still stand.

The ``judge_options`` tool writes here; the elimination rule reads ``standing``
(the options not refuted) before it accepts an answer, and the final answer
keeps the table. A later verdict on an option replaces the earlier one.
"""

from __future__ import annotations

from agent.trace import OptionVerdict


class VerdictBoard:
    def __init__(self, letters: list[str]):
        self.letters = list(letters)
        self._verdicts: dict[str, OptionVerdict] = {}

    def update(self, verdicts: list[OptionVerdict]) -> None:
        for verdict in verdicts:
            self._verdicts[verdict.option] = verdict

    def table(self) -> list[OptionVerdict]:
        """The standing verdicts, in option order (options never judged are left out)."""
        return [self._verdicts[letter] for letter in self.letters if letter in self._verdicts]

    def standing(self) -> list[str]:
        """Options not refuted (never judged counts as standing)."""
        return [letter for letter in self.letters
                if letter not in self._verdicts or self._verdicts[letter].verdict != "refuted"]

    def summary(self) -> str:
        """One line for the model: each option's verdict and which options still stand."""
        parts = [f"{letter}: {self._verdicts[letter].verdict if letter in self._verdicts else 'not judged'}"
                 for letter in self.letters]
        standing = self.standing()
        return f"verdicts now: {'; '.join(parts)}. Still standing: {', '.join(standing) or 'none'}."
