"""The JSON action protocol for models without native tool calls: parsing and history rendering."""

from __future__ import annotations

import numpy as np
import pytest

from agent.backends.base import ImagePart, Message, TextPart, ToolCall, ToolSpec
from agent.backends.text_protocol import format_action, parse_action, render_messages, tool_instructions
from prompts import load_prompt

SEARCH = ToolSpec(
    name="search_frames",
    description="Find the frames that best match a text description.",
    parameters={"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
)


def _one(text: str, **kwargs) -> ToolCall:
    calls = parse_action(text, **kwargs)
    assert len(calls) == 1, calls
    return calls[0]


@pytest.mark.parametrize(
    "text",
    [
        '```json\n{"tool": "search_frames", "arguments": {"query": "dog"}}\n```',
        'Let me look.\n```json\n{"tool": "search_frames", "arguments": {"query": "dog"}}\n```\nThen I will answer.',
        '```\n{"tool": "search_frames", "arguments": {"query": "dog"}}```',
        'Action: {"tool": "search_frames", "arguments": {"query": "dog"}} and that is all',
        '```json\n{"tool": "search_frames", "arguments": {"query": "dog"}}',  # closing fence cut off
        "```json\n{'tool': 'search_frames', 'arguments': {'query': 'dog'}}\n```",  # Python-style quotes
        '{"name": "search_frames", "args": {"query": "dog"}}',
        '{"tool": "search_frames", "arguments": "{\\"query\\": \\"dog\\"}"}',  # arguments as a JSON string
        '{"function": {"name": "search_frames", "arguments": {"query": "dog"}}}',
    ],
)
def test_lenient_action_formats(text):
    call = _one(text)
    assert (call.name, call.arguments, call.error) == ("search_frames", {"query": "dog"}, None)
    assert call.id.startswith("call_")


def test_last_action_wins():
    text = (
        '```json\n{"tool": "search_frames", "arguments": {"query": "first"}}\n```\n'
        'On second thought:\n```json\n{"tool": "search_frames", "arguments": {"query": "second"}}\n```'
    )
    assert _one(text).arguments == {"query": "second"}


def test_fenced_action_preferred_over_json_in_prose():
    text = 'The schema is {"tool": "x"}.\n```json\n{"tool": "search_frames", "arguments": {"query": "cat"}}\n```'
    assert _one(text).name == "search_frames"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "The answer is (B).",
        "{not json at all",
        '```json\n{"query": "dog"}\n```',  # JSON, but no tool named
        '{"tool": ""}',
        "\x00\ufffd{{{}}}]]",
    ],
)
def test_no_action_means_no_calls(text):
    assert parse_action(text) == []


def test_broken_json_action_is_a_call_with_an_error():
    call = _one('```json\n{"tool": "search_frames", "arguments": {"query": "dog",}\n```')
    assert call.name == "search_frames" and call.error and "not valid JSON" in call.error
    assert call.raw_arguments.startswith('{"tool"')


def test_non_object_arguments_are_an_error():
    call = _one('{"tool": "search_frames", "arguments": ["dog"]}')
    assert call.error and "JSON object" in call.error and call.raw_arguments == '["dog"]'


def test_missing_arguments_mean_none():
    assert _one('{"tool": "finish"}').arguments == {}


def test_only_filters_unknown_names():
    text = '{"tool": "delete_everything", "arguments": {}}'
    assert _one(text).name == "delete_everything"
    assert parse_action(text, only={"search_frames"}) == []


def test_ids_are_deterministic():
    text = '{"tool": "search_frames", "arguments": {"query": "dog"}}'
    assert _one(text).id == _one(text).id != _one(text.replace("dog", "cat")).id


def test_format_action_parses_back():
    call = ToolCall(id="c", name="search_frames", arguments={"query": "dog"})
    again = _one(format_action(call))
    assert (again.name, again.arguments) == (call.name, call.arguments)


def test_instructions_come_from_the_prompt_file():
    text = tool_instructions([SEARCH])
    assert "{{tools}}" not in text and "## search_frames" in text and "Find the frames" in text
    assert '"required": ["query"]' in text
    assert '{"tool": "search_frames", "arguments": {"query": "..."}}' in text and "{{example}}" not in text
    counted = ToolSpec(name="pick", description="d", parameters={
        "type": "object", "properties": {"n": {"type": "integer"}, "why": {"type": "string"}}, "required": ["n"]})
    assert _one(tool_instructions([counted]).split("For example:")[1]).arguments == {"n": 1}
    assert text.splitlines()[0] == load_prompt("text_protocol").text.splitlines()[0]


def test_render_appends_tools_to_the_system_prompt():
    out = render_messages([Message(role="system", content="Be brief."), Message(role="user", content="Hi")], [SEARCH])
    assert [m.role for m in out] == ["system", "user"]
    assert out[0].content.startswith("Be brief.\n\n# Tools") and "search_frames" in out[0].content


def test_render_adds_a_system_prompt_when_missing_and_leaves_plain_chats_alone():
    out = render_messages([Message(role="user", content="Hi")], [SEARCH])
    assert [m.role for m in out] == ["system", "user"]
    plain = [Message(role="user", content=[TextPart(text="q")])]
    assert render_messages(plain, None) == plain


def test_render_turns_tool_turns_into_text_and_merges_users():
    frame = ImagePart.from_array(np.zeros((8, 8, 3), dtype=np.uint8), label="t=1s")
    history = [
        Message(role="user", content="Find the dog."),
        Message(role="assistant", content="Searching.",
                tool_calls=[ToolCall(id="c1", name="search_frames", arguments={"query": "dog"})]),
        Message(role="tool", tool_call_id="c1", name="search_frames", content=[TextPart(text="1 hit"), frame]),
        Message(role="user", content="Now answer."),
    ]
    out = render_messages(history, None)
    assert [m.role for m in out] == ["user", "assistant", "user"]
    assert out[1].content == 'Searching.\n\n```json\n{"tool": "search_frames", "arguments": {"query": "dog"}}\n```'
    merged = out[2].content
    assert isinstance(merged, list) and merged[0].text == "Tool result (search_frames):\n"
    assert merged[2] is frame or merged[2] == frame
    assert merged[-1].text == "Now answer."


def test_render_keeps_malformed_calls_as_written():
    bad = ToolCall(id="c1", name="search_frames", raw_arguments='{"query": ', error="not valid JSON")
    out = render_messages([Message(role="assistant", content="", tool_calls=[bad])], None)
    assert '"arguments": "{\\"query\\": "' in out[0].content
