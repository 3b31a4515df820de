"""Tool calls for models and servers without native function calling.

The tool descriptions and ``prompts/text_protocol.md`` go into the system
prompt; the model answers with one JSON action block such as::

    ```json
    {"tool": "search_frames", "arguments": {"query": "a red car"}}
    ```

``parse_action`` turns that block into the same ``ToolCall`` objects native
tool calls produce. It is lenient, because small models are sloppy: fenced
or bare JSON, the last action wins, text around it is fine, Python-style
quotes are accepted. Text without an action yields no tool calls (the text
is kept by the caller). ``render_messages`` rewrites a conversation that
contains native tool turns into plain text the model can read.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from typing import Any

from agent.backends.base import ContentPart, ImagePart, Message, TextPart, ToolCall, ToolSpec
from prompts import load_prompt

PROMPT_NAME = "text_protocol"
TOOLS_PLACEHOLDER = "{{tools}}"
EXAMPLE_PLACEHOLDER = "{{example}}"

_NAME_KEYS = ("tool", "name", "action", "tool_name", "function")
_ARGUMENT_KEYS = ("arguments", "args", "parameters", "input", "tool_input", "params")
_FENCE = re.compile(r"```[ \t]*[A-Za-z0-9_+-]*[ \t]*\r?\n?(.*?)```", re.DOTALL)
_NAME_IN_BROKEN_JSON = re.compile(r"""["'](?:tool|name|action|tool_name)["']\s*:\s*["']([A-Za-z0-9_.\-]+)["']""")


# --------------------------------------------------------------------------- prompt side


def describe_tools(tools: list[ToolSpec]) -> str:
    """One section per tool: name, description, JSON schema of the arguments."""
    sections = []
    for tool in tools:
        schema = json.dumps(tool.parameters, ensure_ascii=False, separators=(", ", ": "))
        sections.append(f"## {tool.name}\n{tool.description.strip()}\nArguments (JSON schema): {schema}")
    return "\n\n".join(sections)


def example_action(tool: ToolSpec) -> str:
    """A call of ``tool`` with placeholder values for its required arguments (small models copy examples well)."""
    properties = tool.parameters.get("properties") or {}
    required = tool.parameters.get("required") or list(properties)[:1]
    placeholders = {"integer": 1, "number": 1.0, "boolean": True, "array": [], "object": {}}
    arguments: dict[str, Any] = {}
    for name in required:
        schema = properties.get(name)
        kind = schema.get("type", "string") if isinstance(schema, dict) else "string"
        arguments[name] = placeholders.get(kind, "...") if isinstance(kind, str) else "..."
    return json.dumps({"tool": tool.name, "arguments": arguments}, ensure_ascii=False)


def tool_instructions(tools: list[ToolSpec]) -> str:
    """The text appended to the system prompt in text mode."""
    text = load_prompt(PROMPT_NAME).text.replace(TOOLS_PLACEHOLDER, describe_tools(tools))
    return text.replace(EXAMPLE_PLACEHOLDER, example_action(tools[0]) if tools else "").strip()


def format_action(call: ToolCall) -> str:
    """How an earlier tool call appears in the history (the same shape the model is asked to write)."""
    if call.error is not None:
        arguments: Any = call.raw_arguments
    else:
        arguments = call.arguments
    action = json.dumps({"tool": call.name, "arguments": arguments}, ensure_ascii=False)
    return f"```json\n{action}\n```"


def tool_result_header(name: str | None) -> str:
    return f"Tool result ({name}):" if name else "Tool result:"


def render_messages(messages: list[Message], tools: list[ToolSpec] | None) -> list[Message]:
    """The conversation as plain system/user/assistant text (images kept), tools described in the system prompt.

    Consecutive user turns are merged, because many chat templates require
    strictly alternating roles.
    """
    rendered: list[Message] = []
    for message in messages:
        if message.role == "assistant":
            text = message.text()
            blocks = [format_action(call) for call in message.tool_calls]
            content = "\n\n".join(part for part in [text.strip(), *blocks] if part)
            rendered.append(Message(role="assistant", content=content))
        elif message.role == "tool":
            parts = [TextPart(text=tool_result_header(message.name) + "\n"), *_parts(message.content)]
            rendered.append(Message(role="user", content=_compact(parts)))
        else:
            rendered.append(Message(role=message.role, content=message.content))

    if tools:
        instructions = tool_instructions(tools)
        if rendered and rendered[0].role == "system":
            first = rendered[0]
            if isinstance(first.content, str):
                rendered[0] = Message(role="system", content=f"{first.content.rstrip()}\n\n{instructions}")
            else:
                rendered[0] = Message(role="system", content=[*first.content, TextPart(text="\n\n" + instructions)])
        else:
            rendered.insert(0, Message(role="system", content=instructions))
    return _merge_consecutive_users(rendered)


def _parts(content: str | list[ContentPart]) -> list[ContentPart]:
    return [TextPart(text=content)] if isinstance(content, str) else list(content)


def _compact(parts: list[ContentPart]) -> str | list[ContentPart]:
    """Text-only content as one string (what text chat templates expect); mixed content as parts."""
    if all(isinstance(p, TextPart) for p in parts):
        return "".join(p.text for p in parts)  # type: ignore[union-attr]
    return parts


def _merge_consecutive_users(messages: list[Message]) -> list[Message]:
    merged: list[Message] = []
    for message in messages:
        if merged and message.role == "user" and merged[-1].role == "user":
            previous = merged[-1]
            parts = [*_parts(previous.content), TextPart(text="\n\n"), *_parts(message.content)]
            merged[-1] = Message(role="user", content=_compact(parts))
        else:
            merged.append(message)
    return merged


def has_images(messages: list[Message]) -> bool:
    return any(isinstance(p, ImagePart) for m in messages if not isinstance(m.content, str) for p in m.content)


# --------------------------------------------------------------------------- reply side


def _call_id(name: str, raw: str) -> str:
    # Deterministic, so a replayed run produces the same trace.
    return "call_" + hashlib.sha256(f"{name}\0{raw}".encode()).hexdigest()[:12]


def _load_object(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, ValueError):
        pass
    try:
        # Small models often write Python dicts ('single quotes', True/None).
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return None


def _action_from_object(obj: Any, raw: str) -> ToolCall | None:
    if not isinstance(obj, dict):
        return None
    name = None
    for key in _NAME_KEYS:
        value = obj.get(key)
        if isinstance(value, str) and value.strip():
            name = value.strip()
            break
        if key == "function" and isinstance(value, dict) and isinstance(value.get("name"), str):
            obj = {**value}  # OpenAI-shaped {"function": {"name": ..., "arguments": ...}}
            name = value["name"].strip()
            break
    if not name:
        return None

    arguments: Any = {}
    for key in _ARGUMENT_KEYS:
        if key in obj:
            arguments = obj[key]
            break
    if isinstance(arguments, str):  # OpenAI style: arguments as a JSON string
        parsed = _load_object(arguments) if arguments.strip() else {}
        if not isinstance(parsed, dict):
            return ToolCall(
                id=_call_id(name, raw), name=name, raw_arguments=arguments,
                error=f"arguments for {name} are not a JSON object: {arguments[:80]!r}",
            )
        arguments = parsed
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        text = json.dumps(arguments, ensure_ascii=False, default=str)
        return ToolCall(
            id=_call_id(name, raw), name=name, raw_arguments=text,
            error=f"arguments for {name} must be a JSON object, got {type(arguments).__name__}",
        )
    raw_arguments = json.dumps(arguments, ensure_ascii=False, default=str)
    return ToolCall(id=_call_id(name, raw), name=name, arguments=arguments, raw_arguments=raw_arguments)


def _bare_objects(text: str) -> list[tuple[Any, str]]:
    """Every top-level JSON object in free text, in order."""
    decoder = json.JSONDecoder()
    found: list[tuple[Any, str]] = []
    index = text.find("{")
    while index != -1:
        try:
            obj, end = decoder.raw_decode(text, index)
        except json.JSONDecodeError:
            index = text.find("{", index + 1)
            continue
        found.append((obj, text[index:end]))
        index = text.find("{", end)
    return found


def parse_action(text: str, *, only: set[str] | None = None) -> list[ToolCall]:
    """The model's action as a list of at most one ``ToolCall``; ``[]`` when it wrote none.

    ``only``: accept only these tool names (used when sniffing actions out of
    a native-mode reply, where a stray JSON example must not become a call).
    """
    if not text or "{" not in text:
        return []
    candidates: list[ToolCall] = []
    for match in _FENCE.finditer(text):
        block = match.group(1).strip()
        call = _action_from_object(_load_object(block), block)
        if call is None:
            # An action that is not valid JSON: report it like a malformed native call.
            name = _NAME_IN_BROKEN_JSON.search(block)
            if name and _load_object(block) is None:
                call = ToolCall(
                    id=_call_id(name.group(1), block), name=name.group(1), raw_arguments=block,
                    error=f"the action block for {name.group(1)} is not valid JSON",
                )
        if call is not None:
            candidates.append(call)
    if not candidates:
        for obj, raw in _bare_objects(text):
            call = _action_from_object(obj, raw)
            if call is not None:
                candidates.append(call)
    if only is not None:
        candidates = [c for c in candidates if c.name in only]
    return candidates[-1:]
