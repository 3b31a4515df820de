"""Answer extraction: the official order, last vs first [[X]], restriction to the question's letters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.benchmarks.mmr_v.extract import extract_answer
from sleuth.answers import option_letter

SAMPLE = Path(__file__).parent / "data" / "mmrv_sample_questions.json"
ECHO = 'Give the final answer in the format: "[[A]]" or "[[B]]" or "[[C]]" ...\n[[G]]'


def test_last_brackets_by_default_first_in_strict_mode():
    assert extract_answer(ECHO, "ABCDEFGH").letter == "G"
    strict = extract_answer(ECHO, "ABCDEFGH", strict_official=True)
    assert (strict.letter, strict.rule) == ("A", "brackets")


def test_rule_order_brackets_then_boxed_then_letter():
    assert extract_answer("so \\boxed{C} but [[B]]", "ABC").rule == "brackets"
    found = extract_answer("the answer is \\boxed{C}", "ABC")
    assert (found.letter, found.rule) == ("C", "boxed")
    found = extract_answer("I pick option B because it fits.", "ABC")
    assert (found.letter, found.rule) == ("B", "letter")
    assert extract_answer("no idea at all", "ABC") == extract_answer("", "ABC")
    assert extract_answer("no idea at all", "ABC").rule == "none"
    assert extract_answer(None).letter is None


def test_only_the_questions_letters_count():
    # [[K]] is not an option of a three-option question: fall through to the next rule
    found = extract_answer("[[K]] hmm, the answer is \\boxed{B}", "ABC")
    assert (found.letter, found.rule) == ("B", "boxed")
    # a later out-of-range marker does not hide an earlier valid one
    assert extract_answer("[[B]] ... [[K]]", "ABC").letter == "B"
    # strict mode reads exactly like the official script: any letter A-L
    assert extract_answer("[[K]]", "ABC", strict_official=True).letter == "K"


def test_letter_fallback_is_case_sensitive_but_strict_mode_upper_cases():
    text = "It is a tricky one, i think"
    assert extract_answer(text, "ABCDEFGHI").letter is None
    # the official script upper-cases first, so the article "a" and the pronoun "i" count
    assert extract_answer(text, strict_official=True).letter == "I"


def test_option_letter():
    assert option_letter("(C) text") == "C"
    assert option_letter("[d] text") == "D"
    assert option_letter("E. text") == "E"
    assert option_letter("plain text") is None


def test_strict_mode_reproduces_the_published_answers_on_the_sample():
    records = json.loads(SAMPLE.read_text(encoding="utf-8"))
    stored = [r for r in records if "gpt-4o_response" in r]
    assert len(stored) == 60
    for record in stored:
        letters = [o[1] for o in record["options"]]
        found = extract_answer(record["gpt-4o_raw_response"], letters, strict_official=True)
        assert found.letter == record["gpt-4o_response"]["final_answer"], record["question"]


def test_default_mode_reads_past_echoed_instructions_on_the_sample():
    records = json.loads(SAMPLE.read_text(encoding="utf-8"))
    differing = []
    for index, record in enumerate(records):
        if "gpt-4o_response" not in record:
            continue
        letters = [o[1] for o in record["options"]]
        default = extract_answer(record["gpt-4o_raw_response"], letters)
        if default.letter != record["gpt-4o_response"]["final_answer"]:
            differing.append(index)
            # every disagreement is a reply that echoed the format line before its answer
            assert '"[[A]]" or "[[B]]"' in record["gpt-4o_raw_response"]
            assert record["gpt-4o_response"]["final_answer"] == "A"
    assert differing == [6, 33, 35, 40, 41, 47, 52, 56]


@pytest.mark.parametrize("text", ["[[ B ]]", "[[b]]"])
def test_malformed_markers_are_not_brackets(text):
    assert extract_answer(text, "ABC").rule != "brackets"
