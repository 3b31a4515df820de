"""The OpenAI-compatible backend, through the real ``openai`` client, against the fake HTTP server."""

from __future__ import annotations

import json
import socket
import time

import numpy as np
import pytest

from agent.backends import create_backend
from agent.backends.base import (
    BackendError,
    GenerationSettings,
    ImagePart,
    Message,
    TextPart,
    ToolCall,
    ToolSpec,
)
from agent.backends.config import BackendConfig
from agent.backends.openai_backend import OpenAIBackend
from sleuth.errors import ConfigError
from tests.fake_openai import Call, Fault, Text, ToolCalls

SEARCH = ToolSpec(
    name="search_frames",
    description="Find the frames that best match a text description.",
    parameters={
        "type": "object",
        "properties": {"query": {"type": "string"}, "k": {"type": "integer"}},
        "required": ["query"],
    },
)
QUESTION = [Message(role="user", content="What happens at the end?")]


def _frame(value: int, **kwargs) -> ImagePart:
    return ImagePart.from_array(np.full((24, 32, 3), value, dtype=np.uint8), **kwargs)


# --------------------------------------------------------------------------- plain replies


def test_text_reply_usage_and_cost(fake_openai, openai_backend_factory):
    fake_openai.enqueue(Text("The cat jumps.", usage=(1_000_000, 100_000)))
    backend = openai_backend_factory(model="gpt-4o-mini")
    reply = backend.chat(QUESTION)
    assert reply.text == "The cat jumps." and reply.tool_calls == []
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (1_000_000, 100_000)
    assert reply.cost_usd == pytest.approx(0.15 + 0.06)
    assert reply.finish_reason == "stop" and reply.model == "gpt-4o-mini"
    assert reply.latency_s > 0 and reply.raw["choices"][0]["message"]["content"] == "The cat jumps."
    request = fake_openai.requests[0]
    assert request["model"] == "gpt-4o-mini" and request["temperature"] == 0.0 and request["max_tokens"] == 1024


def test_unknown_model_costs_unknown_not_zero(fake_openai, openai_backend_factory):
    fake_openai.enqueue(Text("ok", usage=(10, 2)))
    assert openai_backend_factory(model="my-local-llava").chat(QUESTION).cost_usd is None


def test_images_and_parts_keep_their_order(fake_openai, openai_backend_factory):
    """MMR-V's protocol: one user message, one text part then N images, no system message, server defaults."""
    fake_openai.enqueue(Text("(B)"))
    frames = [_frame(10), _frame(20), _frame(30, detail="low", label="t=3.00s")]
    backend = openai_backend_factory()
    backend.chat(
        [Message(role="user", content=[TextPart(text="Question?"), *frames])],
        settings=GenerationSettings(temperature=None, max_tokens=None),
    )
    request = fake_openai.requests[0]
    assert "temperature" not in request and "max_tokens" not in request and "tools" not in request
    (message,) = request["messages"]
    assert message["role"] == "user"
    kinds = [part["type"] for part in message["content"]]
    assert kinds == ["text", "image_url", "image_url", "text", "image_url"]
    assert message["content"][0]["text"] == "Question?" and message["content"][3]["text"] == "t=3.00s"
    first = message["content"][1]["image_url"]
    assert "detail" not in first and first["url"] == frames[0].data_url()
    assert message["content"][4]["image_url"]["detail"] == "low"


def test_headers_and_api_key_are_sent_but_never_recorded(fake_openai, openai_backend_factory):
    fake_openai.enqueue(Text("ok"))
    backend = openai_backend_factory(api_key="sk-very-secret", headers={"X-Team": "video", "X-Api-Key": "hidden"})
    backend.chat(QUESTION)
    headers = fake_openai.request_headers[0]
    assert headers["authorization"] == "Bearer sk-very-secret" and headers["x-team"] == "video"
    public = json.dumps(backend.config.public_dict())
    assert "sk-very-secret" not in public and "hidden" not in public and "sk-very-secret" not in repr(backend.config)
    assert backend.config.public_dict()["api_key_set"] is True


def test_empty_api_key_is_fine_for_a_local_server(fake_openai, openai_backend_factory):
    fake_openai.enqueue(Text("ok"))
    assert openai_backend_factory(api_key="").chat(QUESTION).text == "ok"


def test_no_api_key_for_openai_itself_is_a_config_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        create_backend(BackendConfig(model="gpt-4o"))


def test_environment_supplies_url_and_key(fake_openai, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    fake_openai.enqueue(Text("ok"))
    config = BackendConfig(model="fake-model", retry_base_delay_s=0.01)
    assert config.base_url == fake_openai.base_url
    create_backend(config).chat(QUESTION)
    assert fake_openai.request_headers[0]["authorization"] == "Bearer sk-from-env"


# --------------------------------------------------------------------------- native tool calls


def test_native_tool_calls_are_parsed(fake_openai, openai_backend_factory):
    fake_openai.enqueue(ToolCalls([Call("search_frames", {"query": "red car", "k": 4}, id="call_a")], content="Looking."))
    reply = openai_backend_factory().chat(QUESTION, tools=[SEARCH])
    assert fake_openai.requests[0]["tools"] == [SEARCH.openai_schema()]
    (call,) = reply.tool_calls
    assert (call.id, call.name, call.arguments, call.error) == ("call_a", "search_frames", {"query": "red car", "k": 4}, None)
    assert reply.text == "Looking." and reply.finish_reason == "tool_calls"


def test_malformed_tool_call_json_is_reported_not_raised(fake_openai, openai_backend_factory):
    fake_openai.enqueue(ToolCalls([Call("search_frames", '{"query": "red car"', id="bad")]))
    (call,) = openai_backend_factory().chat(QUESTION, tools=[SEARCH]).tool_calls
    assert call.name == "search_frames" and call.arguments == {}
    assert call.raw_arguments == '{"query": "red car"' and "not valid JSON" in call.error


def test_unknown_tool_name_is_passed_through_for_the_caller_to_reject(fake_openai, openai_backend_factory):
    fake_openai.enqueue(ToolCalls([Call("delete_video", {"path": "/"})]))
    (call,) = openai_backend_factory().chat(QUESTION, tools=[SEARCH]).tool_calls
    assert call.name == "delete_video" and call.arguments == {"path": "/"} and call.error is None


def test_tool_call_with_non_object_arguments_is_an_error(fake_openai, openai_backend_factory):
    fake_openai.enqueue(ToolCalls([Call("search_frames", '["red car", 4]')]))
    (call,) = openai_backend_factory().chat(QUESTION, tools=[SEARCH]).tool_calls
    assert call.error and "JSON object" in call.error and call.raw_arguments == '["red car", 4]'


def test_tool_history_round_trips_natively(fake_openai, openai_backend_factory):
    fake_openai.enqueue(Text("Done."))
    history = [
        Message(role="system", content="You watch videos."),
        Message(role="user", content="Find the car."),
        Message(role="assistant", content="", tool_calls=[ToolCall(id="c1", name="search_frames", arguments={"query": "car"})]),
        Message(role="tool", tool_call_id="c1", name="search_frames",
                content=[TextPart(text="2 hits"), _frame(50, label="t=1.00s")]),
    ]
    openai_backend_factory().chat(history, tools=[SEARCH])
    sent = fake_openai.requests[0]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool", "user"]
    assert sent[2]["content"] is None
    assert sent[2]["tool_calls"][0]["function"] == {"name": "search_frames", "arguments": '{"query": "car"}'}
    assert sent[3] == {"role": "tool", "tool_call_id": "c1", "content": "2 hits"}
    assert [p["type"] for p in sent[4]["content"]] == ["text", "text", "image_url"]  # header, label, frame


# --------------------------------------------------------------------------- text protocol and detection


def test_text_mode_describes_tools_and_parses_the_action(fake_openai, openai_backend_factory):
    fake_openai.enqueue(Text('I should search.\n```json\n{"tool": "search_frames", "arguments": {"query": "car"}}\n```'))
    backend = openai_backend_factory(tool_mode="text")
    assert backend.supports_native_tools is False
    history = [
        Message(role="user", content="Find the car."),
        Message(role="assistant", content="First look.", tool_calls=[ToolCall(id="c0", name="search_frames", arguments={"query": "vehicle"})]),
        Message(role="tool", tool_call_id="c0", name="search_frames", content="no hits"),
    ]
    reply = backend.chat(history, tools=[SEARCH])
    assert [(c.name, c.arguments) for c in reply.tool_calls] == [("search_frames", {"query": "car"})]
    assert reply.text.startswith("I should search.")
    request = fake_openai.requests[0]
    assert "tools" not in request
    roles = [m["role"] for m in request["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    system = request["messages"][0]["content"]
    assert "search_frames" in system and '"tool"' in system and "Find the frames" in system
    assert '{"tool": "search_frames", "arguments": {"query": "vehicle"}}' in request["messages"][2]["content"]
    assert request["messages"][3]["content"].startswith("Tool result (search_frames):")


def test_text_mode_garbage_keeps_text_and_yields_no_calls(fake_openai, openai_backend_factory):
    fake_openai.enqueue(Text("I think {tool: search, args: ??? the answer is (C)"))
    reply = openai_backend_factory(tool_mode="text").chat(QUESTION, tools=[SEARCH])
    assert reply.tool_calls == [] and reply.text == "I think {tool: search, args: ??? the answer is (C)"


def test_auto_mode_falls_back_to_text_when_the_server_refuses_tools(fake_openai, openai_backend_factory):
    fake_openai.enqueue(
        Fault.bad_request('"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'),
        Text('```json\n{"tool": "search_frames", "arguments": {"query": "dog"}}\n```'),
        Text("Second call."),
    )
    backend = openai_backend_factory(tool_mode="auto")
    assert backend.supports_native_tools is True
    reply = backend.chat(QUESTION, tools=[SEARCH])
    assert reply.tool_calls[0].arguments == {"query": "dog"}
    assert backend.supports_native_tools is False  # learned and remembered
    backend.chat(QUESTION, tools=[SEARCH])
    assert ["tools" in r for r in fake_openai.requests] == [True, False, False]
    assert "search_frames" in fake_openai.requests[2]["messages"][0]["content"]


def test_native_mode_does_not_fall_back(fake_openai, openai_backend_factory):
    fake_openai.enqueue(Fault.bad_request("this model does not support tools"))
    with pytest.raises(BackendError, match="does not support tools") as info:
        openai_backend_factory(tool_mode="native").chat(QUESTION, tools=[SEARCH])
    assert info.value.kind == "bad_request" and len(fake_openai.requests) == 1


def test_auto_mode_reads_an_action_written_as_text(fake_openai, openai_backend_factory):
    """Servers that accept ``tools`` but whose model writes the call in its text (common with small models)."""
    fake_openai.enqueue(Text('{"tool": "search_frames", "arguments": {"query": "dog"}}'))
    (call,) = openai_backend_factory().chat(QUESTION, tools=[SEARCH]).tool_calls
    assert call.name == "search_frames" and call.arguments == {"query": "dog"}


def test_reasoning_models_get_max_completion_tokens(fake_openai, openai_backend_factory):
    fake_openai.enqueue(
        Fault.bad_request("Unsupported parameter: 'max_tokens' is not supported with this model. "
                          "Use 'max_completion_tokens' instead."),
        Text("ok"),
        Text("ok again"),
    )
    backend = openai_backend_factory(model="o4-mini")
    assert backend.chat(QUESTION).text == "ok"
    backend.chat(QUESTION)
    assert [("max_tokens" in r, r.get("max_completion_tokens")) for r in fake_openai.requests] == [
        (True, None), (False, 1024), (False, 1024)
    ]


# --------------------------------------------------------------------------- faults and retries


def test_rate_limit_honours_retry_after(fake_openai, openai_backend_factory):
    fake_openai.enqueue(Fault.rate_limit(retry_after=1), Text("after the wait"))
    started = time.monotonic()
    reply = openai_backend_factory().chat(QUESTION)
    assert reply.text == "after the wait"
    assert time.monotonic() - started >= 0.95  # waited what the server asked, not the 10 ms base delay
    assert len(fake_openai.requests) == 2


def test_rate_limit_persisting_ends_in_a_typed_error(fake_openai, openai_backend_factory):
    fake_openai.enqueue(*[Fault.rate_limit(retry_after=0.01)] * 3)
    with pytest.raises(BackendError, match="rate limited") as info:
        openai_backend_factory(max_retries=2).chat(QUESTION)
    assert (info.value.kind, info.value.attempts, len(fake_openai.requests)) == ("rate_limit", 3, 3)


def test_retry_after_beyond_the_limit_fails_at_once(fake_openai, openai_backend_factory):
    fake_openai.enqueue(Fault.rate_limit(retry_after=3600))
    with pytest.raises(BackendError, match="asks to wait 3600s") as info:
        openai_backend_factory().chat(QUESTION)
    assert info.value.kind == "rate_limit" and len(fake_openai.requests) == 1


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_retried(fake_openai, openai_backend_factory, status):
    fake_openai.enqueue(Fault.server_error(status), Fault.server_error(status), Text("recovered"))
    assert openai_backend_factory().chat(QUESTION).text == "recovered"
    assert len(fake_openai.requests) == 3


def test_server_errors_give_up_after_bounded_attempts(fake_openai, openai_backend_factory):
    fake_openai.enqueue(*[Fault.server_error(500, "engine crashed")] * 5)
    with pytest.raises(BackendError, match="engine crashed.*gave up after 4 attempts") as info:
        openai_backend_factory(max_retries=3).chat(QUESTION)
    assert (info.value.kind, info.value.attempts) == ("server", 4)
    assert fake_openai.pending == 1  # exactly 4 requests went out


def test_backoff_is_exponential_with_jitter_and_capped(fake_openai):
    fake_openai.enqueue(*[Fault.server_error()] * 5, Text("ok"))
    delays: list[float] = []
    config = BackendConfig(model="fake-model", base_url=fake_openai.base_url, api_key="k", max_retries=5,
                           retry_base_delay_s=1.0, retry_max_delay_s=5.0)
    backend = OpenAIBackend(config, sleep=delays.append, jitter=lambda: 1.0)
    assert backend.chat(QUESTION).text == "ok"
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]
    fake_openai.enqueue(Fault.server_error(), Text("ok"))
    delays.clear()
    OpenAIBackend(config, sleep=delays.append, jitter=lambda: 0.0).chat(QUESTION)
    assert delays == [0.5]  # jitter never brings the wait to zero


def test_hang_times_out_and_is_retried(fake_openai, openai_backend_factory):
    fake_openai.enqueue(Fault.hang(3), Text("fast now"))
    started = time.monotonic()
    reply = openai_backend_factory(timeout_s=0.3).chat(QUESTION)
    assert reply.text == "fast now" and time.monotonic() - started < 2.5


def test_hang_every_time_is_bounded_and_typed(fake_openai, openai_backend_factory):
    fake_openai.enqueue(*[Fault.hang(3)] * 2)
    started = time.monotonic()
    with pytest.raises(BackendError, match="no complete response within 0.3s") as info:
        openai_backend_factory(timeout_s=0.3, max_retries=1).chat(QUESTION)
    assert (info.value.kind, info.value.attempts) == ("timeout", 2)
    assert time.monotonic() - started < 2.5


def test_dropped_connection_is_retried(fake_openai, openai_backend_factory):
    fake_openai.enqueue(Fault.drop(), Text("reconnected"))
    assert openai_backend_factory().chat(QUESTION).text == "reconnected"
    assert len(fake_openai.requests) == 2


def test_dropped_connections_end_in_a_connection_error(fake_openai, openai_backend_factory):
    fake_openai.enqueue(*[Fault.drop()] * 3)
    with pytest.raises(BackendError, match="connection failed") as info:
        openai_backend_factory(max_retries=2).chat(QUESTION)
    assert (info.value.kind, info.value.attempts) == ("connection", 3)


def test_unreachable_server_is_a_connection_error():
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = create_backend(BackendConfig(model="m", base_url=f"http://127.0.0.1:{port}/v1", api_key="",
                                           max_retries=1, retry_base_delay_s=0.01))
    with pytest.raises(BackendError, match=f"127.0.0.1:{port}.*connection failed") as info:
        backend.chat(QUESTION)
    assert info.value.kind == "connection" and info.value.attempts == 2 and info.value.config_class


def test_empty_reply_is_retried(fake_openai, openai_backend_factory):
    fake_openai.enqueue(Fault.empty(), Text("something"))
    assert openai_backend_factory().chat(QUESTION).text == "something"


def test_empty_replies_end_in_an_empty_error(fake_openai, openai_backend_factory):
    fake_openai.enqueue(*[Fault.empty()] * 2)
    with pytest.raises(BackendError, match="empty reply") as info:
        openai_backend_factory(max_retries=1).chat(QUESTION)
    assert (info.value.kind, info.value.attempts) == ("empty", 2)


def test_empty_reply_cut_by_the_token_limit_says_so(fake_openai, openai_backend_factory):
    fake_openai.enqueue(Text("", finish_reason="length"))
    with pytest.raises(BackendError, match="raise --max-tokens") as info:
        openai_backend_factory().chat(QUESTION)
    assert info.value.kind == "empty" and len(fake_openai.requests) == 1


@pytest.mark.parametrize(
    ("status", "kind", "hint"),
    [(400, "bad_request", "context length exceeded"), (401, "auth", "--api-key"), (403, "auth", "--api-key"),
     (404, "not_found", "--model")],
)
def test_client_errors_fail_at_once(fake_openai, openai_backend_factory, status, kind, hint):
    fake_openai.enqueue(Fault.http_error(status, "context length exceeded"))
    with pytest.raises(BackendError, match=f"HTTP {status}") as info:
        openai_backend_factory().chat(QUESTION)
    assert info.value.kind == kind and hint in str(info.value) and len(fake_openai.requests) == 1
    assert info.value.config_class is (kind != "bad_request")  # a wrong key or model fails every question


def test_exhausted_script_fails_loudly(fake_openai, openai_backend_factory):
    with pytest.raises(BackendError, match="script exhausted"):
        openai_backend_factory(max_retries=0).chat(QUESTION)


def test_responder_scripts_replies_from_the_request(fake_openai, openai_backend_factory):
    fake_openai.responder = lambda request: Text(f"you said {request['messages'][-1]['content']}")
    backend = openai_backend_factory()
    assert backend.chat([Message(role="user", content="one")]).text == "you said one"
    assert backend.chat([Message(role="user", content="two")]).text == "you said two"


def test_models_endpoint(fake_openai):
    import openai

    client = openai.OpenAI(base_url=fake_openai.base_url, api_key="k", max_retries=0)
    assert [m.id for m in client.models.list()] == ["fake-model"]


def test_reasoning_models_keep_their_default_temperature(fake_openai, openai_backend_factory):
    fake_openai.enqueue(
        Fault.bad_request("Unsupported value: 'temperature' does not support 0.0 with this model. "
                          "Only the default (1) value is supported."),
        Text("ok"),
    )
    assert openai_backend_factory(model="o3").chat(QUESTION).text == "ok"
    assert [r.get("temperature") for r in fake_openai.requests] == [0.0, None]


def test_a_broken_tool_history_is_not_mistaken_for_a_server_without_tools(fake_openai, openai_backend_factory):
    fake_openai.enqueue(Fault.bad_request("Invalid parameter: messages with role 'tool' must be a response "
                                          "to a preceeding message with 'tool_calls'."))
    backend = openai_backend_factory()
    with pytest.raises(BackendError, match="role 'tool'"):
        backend.chat(QUESTION, tools=[SEARCH])
    assert backend.supports_native_tools is True and len(fake_openai.requests) == 1
