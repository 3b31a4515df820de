"""Video-MMMU's answer parsing and scoring: the MMMU rules, as its official code applies them.

Ported from the official fork's ``lmms_eval/tasks/videommmu/utils.py``
(EvolvingLMMs-Lab/VideoMMMU @ 88b4ac3), whose helpers come from MMMU's
``eval_utils.py``:

- multiple choice (``parse_multi_choice_response``): strip ``, . ! ? ; : '``
  from both ends (one character class after another), pad with spaces, then
  look for ``X.`` and ``X:``; if none, ``(X)``; if none, ``X `` ; if none and
  the reply has more than 5 tokens, an option's text inside the reply. Several
  hits: the one whose marker occurs last. Correct iff equal to the gold letter.
- open (``parse_open_response``): per line of the lower-cased reply, the
  shortest tail after an indicator (``is ``, ``so ``, ``answer ``, ... and
  ``=`` on the last line), plus every number in those tails; each normalised
  (numbers ``round(float, 2)``, text lower-cased, a single character
  ``[" x", "x "]``). ``eval_open``: right when a number equals the numeric
  gold, or the text gold is a substring of a text candidate.

Differences, none of which changes a verdict:

- each result names the rule that fired (``letter_period``, ``letter_colon``,
  ``letter_paren``, ``letter_space``, ``option_text``, ``none``);
- nothing found is ``None`` (the official ``"No Answere Found"``, scored
  wrong the same way); no random pick (lmms-eval's MMMU task may pick one);
- open candidates are de-duplicated in first-seen order instead of through
  ``set()`` (the verdict is "any candidate matches", whatever the order).

The official empty-reply sentinel (``""`` or ``"API Error"``) is reported by
``is_api_error``: the official aggregation drops those replies from the
denominator.
"""

from __future__ import annotations

import re

# What the official parsers treat as a failed call rather than an answer.
API_ERROR_REPLIES = ("", "API Error")

_STRIPPED = (",", ".", "!", "?", ";", ":", "'")

# parse_open_response's indicators, in the official order ("=" is added for the last line only)
_INDICATORS = (
    "could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result ", "are ", "in total ",
    "total ", "identify ", "recognize ", "calculated as ", "counted as ", "measured as ", "observed as ",
    "concluded as ", "found to be ", "equals ", "determined to be ", "number of ", "value is ", "adds up to ",
    "have ", "has ",
)
_TRIVIAL = (":", ",", ".", "!", "?", ";", ":", "'")

_NUMBER_WITH_COMMAS = re.compile(r"-?\b\d{1,3}(?:,\d{3})+\b")
_NUMBER_SCIENTIFIC = re.compile(r"-?\d+(?:\.\d+)?[eE][+-]?\d+")
_NUMBER_SIMPLE = re.compile(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])")

Candidate = str | float


def is_api_error(response: str) -> bool:
    return response in API_ERROR_REPLIES


# --------------------------------------------------------------------------- multiple choice


def option_letters(count: int) -> list[str]:
    """``get_multi_choice_info``'s letters: A, B, ... one per option (chr arithmetic, as the official code)."""
    return [chr(ord("A") + i) for i in range(count)]


def parse_multi_choice(response: str, options: list[str]) -> tuple[str | None, str]:
    """(letter or None, rule) of a non-empty reply, by ``parse_multi_choice_response``."""
    letters = option_letters(len(options))
    index2ans = dict(zip(letters, options))
    for char in _STRIPPED:  # one after another, as the official loop does
        response = response.strip(char)
    response = " " + response + " "

    # (letter, rule) in the order the official steps add them
    candidates = [(c, "letter_period") for c in letters if f"{c}." in response]
    candidates += [(c, "letter_colon") for c in letters if f"{c}:" in response]
    if not candidates:
        candidates = [(c, "letter_paren") for c in letters if f"({c})" in response]
    if not candidates:
        candidates = [(c, "letter_space") for c in letters if f"{c} " in response]
    if not candidates and len(response.split()) > 5:
        candidates = [(c, "option_text") for c in letters if index2ans[c].lower() in response.lower()]
    if not candidates:
        return None, "none"
    if len(candidates) == 1:
        return candidates[0]

    # several: the last occurrence, measured with the marker of the first format found
    # (period before colon before parentheses: a colon hit is never where a period hit is looked for)
    rules = {rule for _, rule in candidates}
    if "option_text" in rules:
        positions = [response.lower().rfind(index2ans[c].lower()) for c, _ in candidates]
        rule = "option_text"
    else:
        rule = next(r for r in ("letter_period", "letter_colon", "letter_paren", "letter_space") if r in rules)
        marker = {"letter_period": "{}.", "letter_colon": "{}:", "letter_paren": "({})", "letter_space": " {} "}[rule]
        positions = [response.rfind(marker.format(c)) for c, _ in candidates]
    best = positions.index(max(positions))  # numpy.argmax: the first of equal maxima
    return candidates[best][0], rule


# --------------------------------------------------------------------------- open answers


def check_is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
        return True
    except ValueError:
        return False


def normalize_str(text: str) -> list[Candidate]:
    """The official ``normalize_str``: a number rounded to 2 decimals, else lower-cased text
    (a single character becomes ``[" x", "x "]`` so it only matches as a word edge)."""
    text = text.strip()
    if check_is_number(text):
        return [round(float(text.replace(",", "")), 2)]
    text = text.lower()
    if len(text) == 1:
        return [" " + text, text + " "]
    return [text]


def extract_numbers(text: str) -> list[str]:
    return _NUMBER_WITH_COMMAS.findall(text) + _NUMBER_SCIENTIFIC.findall(text) + _NUMBER_SIMPLE.findall(text)


def _key_subresponses(response: str) -> list[str]:
    response = response.strip().strip(".").lower()
    # (?=[A-Z]) never matches the lower-cased text: only line breaks split it (as in MMMU's original)
    sub_responses = re.split(r"\.\s(?=[A-Z])|\n", response)
    key_responses = []
    for index, resp in enumerate(sub_responses):
        indicators = _INDICATORS + ("=",) if index == len(sub_responses) - 1 else _INDICATORS
        shortest: str | None = None
        for indicator in indicators:
            if indicator in resp:
                tail = resp.split(indicator)[-1].strip()
                # "not shortest": an empty tail is replaced by the next one, even a longer one (official quirk)
                if not shortest or len(tail) < len(shortest):
                    shortest = tail
        if shortest and shortest.strip() not in _TRIVIAL:
            key_responses.append(shortest)
    return key_responses or [response]


def parse_open(response: str) -> list[Candidate]:
    """The candidates ``parse_open_response`` finds in a non-empty reply (never empty)."""
    key_responses = _key_subresponses(response)
    texts = list(key_responses)
    for resp in key_responses:
        texts.extend(extract_numbers(resp))
    candidates: list[Candidate] = []
    for text in texts:
        for value in normalize_str(text):
            if value not in candidates:
                candidates.append(value)
    return candidates


def open_matches(candidate: Candidate, gold: str) -> bool:
    """``eval_open`` for one candidate: a number equal to the normalised gold, or text containing it."""
    answers = normalize_str(gold)
    if isinstance(candidate, str):
        return any(isinstance(answer, str) and answer in candidate for answer in answers)
    return candidate in answers


def normalise_candidate(value: str | float) -> list[Candidate]:
    """A single answer (e.g. from the agent's answer tool) as the official parser normalises each candidate."""
    if isinstance(value, str):
        return normalize_str(value)
    return [round(float(value), 2)]
