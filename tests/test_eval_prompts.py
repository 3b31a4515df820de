"""MMR-V's official prompt templates must stay byte-for-byte what the benchmark's script sends."""

from __future__ import annotations

import pytest

from prompts import load_prompt

# SHA-256 of the templates as MMR-V's evaluation/server_evaluation_on_MMR.py defines them
# (triple-quoted strings: a leading newline, a trailing space after "video.", a final newline).
OFFICIAL_SHA256 = {
    "mmrv_direct": "465b53d589042336a9889c38651f6b2f6db88ff1473159517b6ab86fe4ab044c",
    "mmrv_cot": "ec983133dbfa153bd7dd8506d47e6d062d9f192bb900a789eb308fe67530272e",
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_SHA256))
def test_templates_are_verbatim(name):
    prompt = load_prompt(name)
    assert prompt.sha256 == OFFICIAL_SHA256[name]
    text = prompt.text
    assert text.startswith("\n[[INSTRUCTIONS]]\nPlease select the best answer")
    assert "based on the video. \nOnly one option" in text  # the trailing space is part of the protocol
    assert text.endswith("[[END OF OUTPUT FORMAT]]\n")
    assert "\r" not in text
    assert text.count("{question}") == 1 and text.count("{options}") == 1


def test_templates_fill_like_the_official_script():
    options = ["(A) first", "(B) it's second"]
    filled = load_prompt("mmrv_direct").text.format(question="Why? ", options=options)
    assert "[[QUESTION]]\nWhy? \n[[END OF QUESTION]]" in filled
    assert "[[OPTIONS]]\n['(A) first', \"(B) it's second\"]\n[[END OF OPTIONS]]" in filled
    cot = load_prompt("mmrv_cot").text
    assert "Your thinking process.\n" in cot and "[[OPTIONS]]\n\n[[END OF INSTRUCTIONS]]" in cot
