"""A real OpenAI-compatible HTTP server on 127.0.0.1 with scripted replies and injected faults.

Tests drive the real ``openai`` client (through sleuth's backends) against it::

    def test_answer(fake_openai, openai_backend_factory):
        fake_openai.enqueue(Text("The answer is B."))
        backend = openai_backend_factory()
        reply = backend.chat([Message(role="user", content="Which?")])
        assert fake_openai.requests[0]["messages"][0]["content"] == "Which?"

Replies are consumed one per request, in order. When the queue is empty the
``responder`` (if set) is asked with the request body; otherwise the server
answers HTTP 500 "script exhausted" so that a test with a missing reply fails
loudly instead of hanging.

Faults (``Fault.<constructor>``) cover what real servers do wrong: rate
limits, 5xx, 4xx with OpenAI-style bodies (``http_error(401)``), hangs,
dropped connections, empty replies, bodies trickled one byte at a time
(``trickle``) and oversized bodies (``huge``).

Server-wide settings, restored by ``reset()`` (so by every ``fake_openai``):

- ``models``: the ids ``GET /models`` lists;
- ``models_status``: answer ``GET /models`` with this HTTP status instead
  (404: a server without the route; 401: a key the route refuses);
- ``required_key``: when set, every route answers 401 unless the request
  carries ``Authorization: Bearer <required_key>``; refused chat requests
  are not recorded;
- ``unknown_models_status``: when set (404, as OpenAI and vLLM do), a chat
  request for a model ``models`` does not list gets that status;
- ``preflight_reply``: the answer to sleuth's preflight request (the prompt
  in ``prompts/preflight.md``), kept out of ``requests`` and the script so a
  test's scripted replies and request counts are about its questions only;
  the preflight bodies are in ``preflight_requests``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import pytest

__all__ = [
    "Call",
    "Fault",
    "FakeOpenAIServer",
    "Text",
    "ToolCalls",
    "fake_openai",
    "fake_openai_server",
    "openai_backend_factory",
]

FAKE_MODEL = "fake-model"


# --------------------------------------------------------------------------- reply items


@dataclass
class Text:
    """A plain assistant message. ``usage=(prompt_tokens, completion_tokens)``; estimated when omitted."""

    content: str
    usage: tuple[int, int] | None = None
    finish_reason: str = "stop"


@dataclass
class Call:
    """One tool call. ``arguments`` as a str is sent verbatim (use it for malformed JSON)."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str | None = None


@dataclass
class ToolCalls:
    """An assistant message with native tool calls (and optional text alongside)."""

    calls: list[Call]
    content: str | None = None
    usage: tuple[int, int] | None = None


@dataclass
class Fault:
    """A failure on demand. Build with the constructors below."""

    kind: str
    status: int = 500
    retry_after: float | None = None
    seconds: float = 0.0
    message: str = ""
    size: int = 0
    delay: float = 0.0

    @classmethod
    def rate_limit(cls, retry_after: float = 1) -> "Fault":
        """429 Too Many Requests with a ``Retry-After`` header (seconds)."""
        return cls("rate_limit", status=429, retry_after=retry_after, message="Rate limit reached")

    @classmethod
    def server_error(cls, status: int = 500, message: str = "internal server error") -> "Fault":
        return cls("server_error", status=status, message=message)

    @classmethod
    def bad_request(cls, message: str, status: int = 400) -> "Fault":
        """A 4xx error with an OpenAI-style error body (e.g. a server that rejects ``tools``)."""
        return cls("bad_request", status=status, message=message)

    @classmethod
    def http_error(cls, status: int, message: str | None = None) -> "Fault":
        """Any HTTP error (401 bad key, 403, 404 unknown model, ...) with an OpenAI-style body; not retried."""
        return cls("http_error", status=status, message=message or HTTPStatus(status).phrase)

    @classmethod
    def hang(cls, seconds: float) -> "Fault":
        """Sleep ``seconds`` before answering (longer than the client's timeout)."""
        return cls("hang", seconds=seconds)

    @classmethod
    def drop(cls) -> "Fault":
        """Close the connection without sending any response."""
        return cls("drop")

    @classmethod
    def empty(cls) -> "Fault":
        """200 OK with empty content and no tool calls."""
        return cls("empty", status=200)

    @classmethod
    def trickle(cls, seconds_per_byte: float, content: str = "slow but sure", *, headers_after: float = 0.0) -> "Fault":
        """A valid 200 reply with ``Content-Length``, its body written one byte every ``seconds_per_byte``.

        Every single read succeeds, so only a deadline on the whole request ends
        it. ``headers_after`` delays the status line and headers as well.
        """
        return cls("trickle", status=200, seconds=seconds_per_byte, message=content, delay=headers_after)

    @classmethod
    def huge(cls, size_bytes: int, *, declare_length: bool = True) -> "Fault":
        """A valid 200 reply padded with whitespace to ``size_bytes``.

        ``declare_length=False`` leaves out ``Content-Length`` (the body ends when
        the connection closes), so the client only learns the size by reading.
        """
        return cls("huge" if declare_length else "huge_undeclared", status=200, size=size_bytes)


ReplyItem = Text | ToolCalls | Fault | str


# --------------------------------------------------------------------------- server


class FakeOpenAIServer:
    """OpenAI chat-completions protocol (non-streaming) on an ephemeral localhost port."""

    def __init__(self, models: list[str] | None = None) -> None:
        self._default_models = list(models or [FAKE_MODEL])
        self.models = list(self._default_models)
        self.models_status: int | None = None
        self.required_key: str | None = None
        self.unknown_models_status: int | None = None
        self.preflight_reply: ReplyItem = Text("ready")
        self.preflight_requests: list[dict] = []
        self.requests: list[dict] = []
        self.request_headers: list[dict[str, str]] = []
        self.responder: Callable[[dict], ReplyItem | None] | None = None
        self._queue: deque[ReplyItem] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        # stop() waits for serve_forever to notice; polling every 0.05 s instead of the default 0.5 s makes
        # that wait short (test_eval_shards starts and stops two servers per test)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-openai", daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "FakeOpenAIServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes hanging handlers
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "FakeOpenAIServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def enqueue(self, *items: ReplyItem) -> None:
        with self._lock:
            self._queue.extend(items)

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.request_headers.clear()
            self.responder = None
            self.models = list(self._default_models)
            self.models_status = None
            self.required_key = None
            self.unknown_models_status = None
            self.preflight_reply = Text("ready")
            self.preflight_requests.clear()

    @property
    def pending(self) -> int:
        """Scripted replies not consumed yet."""
        with self._lock:
            return len(self._queue)

    # -- called from handler threads

    def _record_and_pick(self, body: dict, headers: dict[str, str]) -> ReplyItem | None:
        status = self.unknown_models_status
        if status is not None and body.get("model") not in self.models:
            return Fault.http_error(status, f"The model `{body.get('model')}` does not exist")
        if _is_preflight(body):
            with self._lock:
                self.preflight_requests.append(body)
                return self.preflight_reply
        with self._lock:
            self.requests.append(body)
            self.request_headers.append(headers)
            if self._queue:
                return self._queue.popleft()
            responder = self.responder
        return responder(body) if responder is not None else None


def _is_preflight(body: dict) -> bool:
    from prompts import load_prompt

    messages = body.get("messages") or []
    return (len(messages) == 1 and not body.get("tools")
            and messages[0].get("content") == load_prompt("preflight").text.strip())


def _estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _completion(body: dict, message: dict, finish_reason: str, usage: tuple[int, int] | None) -> dict:
    if usage is None:
        prompt = _estimate_tokens(json.dumps(body.get("messages", [])))
        completion = _estimate_tokens(json.dumps(message))
    else:
        prompt, completion = usage
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", FAKE_MODEL),
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    }


def _error_body(message: str, status: int) -> dict:
    kind = "rate_limit_error" if status == 429 else "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _make_handler(server: FakeOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like real servers; every reply has Content-Length

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

        def _send_json(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode("utf-8")
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (e.g. after a timeout)

        def _authorized(self) -> bool:
            """False (after answering 401) when a key is required and the request lacks it."""
            key = server.required_key
            if key is None or self.headers.get("Authorization") == f"Bearer {key}":
                return True
            self._send_json(401, _error_body("Incorrect API key provided", 401))
            return False

        def do_GET(self) -> None:
            if not self._authorized():
                return
            if self.path.rstrip("/").endswith("/models"):
                if server.models_status is not None:
                    status = server.models_status
                    self._send_json(status, _error_body(f"GET {self.path}: {HTTPStatus(status).phrase}", status))
                    return
                data = [{"id": m, "object": "model", "created": 0, "owned_by": "sleuth-tests"} for m in server.models]
                self._send_json(200, {"object": "list", "data": data})
            else:
                self._send_json(404, _error_body(f"no route GET {self.path}", 404))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if not self._authorized():
                return
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._send_json(404, _error_body(f"no route POST {self.path}", 404))
                return
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError as exc:
                self._send_json(400, _error_body(f"request body is not JSON: {exc}", 400))
                return
            if body.get("stream"):
                self._send_json(400, _error_body("streaming is not supported by the test server", 400))
                return
            item = server._record_and_pick(body, {k.lower(): v for k, v in self.headers.items()})
            self._answer(body, item)

        def _answer(self, body: dict, item: ReplyItem | None) -> None:
            if item is None:
                self._send_json(500, _error_body("script exhausted: no scripted reply left and no responder", 500))
            elif isinstance(item, str):
                self._answer(body, Text(item))
            elif isinstance(item, Text):
                message = {"role": "assistant", "content": item.content}
                self._send_json(200, _completion(body, message, item.finish_reason, item.usage))
            elif isinstance(item, ToolCalls):
                calls = [
                    {
                        "id": c.id or f"call_{uuid.uuid4().hex[:8]}",
                        "type": "function",
                        "function": {
                            "name": c.name,
                            "arguments": c.arguments if isinstance(c.arguments, str) else json.dumps(c.arguments),
                        },
                    }
                    for c in item.calls
                ]
                message = {"role": "assistant", "content": item.content, "tool_calls": calls}
                self._send_json(200, _completion(body, message, "tool_calls", item.usage))
            elif isinstance(item, Fault):
                self._fault(body, item)
            else:
                self._send_json(500, _error_body(f"test server cannot send {type(item).__name__}", 500))

        def _fault(self, body: dict, fault: Fault) -> None:
            if fault.kind == "rate_limit":
                headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
                self._send_json(429, _error_body(fault.message, 429), headers)
            elif fault.kind in ("server_error", "bad_request", "http_error"):
                self._send_json(fault.status, _error_body(fault.message, fault.status))
            elif fault.kind == "hang":
                if server._stopping.wait(fault.seconds):
                    return
                self.close_connection = True
                self._send_json(200, _completion(body, {"role": "assistant", "content": "too late"}, "stop", None))
            elif fault.kind == "drop":
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            elif fault.kind == "empty":
                self._send_json(200, _completion(body, {"role": "assistant", "content": ""}, "stop", (1, 0)))
            elif fault.kind == "trickle":
                self._trickle(body, fault)
            elif fault.kind in ("huge", "huge_undeclared"):
                self._huge(body, fault)
            else:
                self._send_json(500, _error_body(f"unknown fault {fault.kind!r}", 500))

        def _trickle(self, body: dict, fault: Fault) -> None:
            message = {"role": "assistant", "content": fault.message}
            data = json.dumps(_completion(body, message, "stop", None)).encode("utf-8")
            self.close_connection = True
            if server._stopping.wait(fault.delay):
                return
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                for index in range(len(data)):
                    if server._stopping.wait(fault.seconds):
                        return
                    self.wfile.write(data[index:index + 1])
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up, as it should

        def _huge(self, body: dict, fault: Fault) -> None:
            tail = json.dumps(_completion(body, {"role": "assistant", "content": "big"}, "stop", None)).encode("utf-8")
            padding = max(0, fault.size - len(tail))  # leading whitespace keeps the body valid JSON
            self.close_connection = True
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                if fault.kind == "huge":
                    self.send_header("Content-Length", str(padding + len(tail)))
                self.send_header("Connection", "close")
                self.end_headers()
                block = b" " * (1 << 20)
                while padding > 0 and not server._stopping.is_set():
                    self.wfile.write(block[:padding])
                    padding -= len(block)
                self.wfile.write(tail)
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def fake_openai_server():
    """One server for the whole session (cheap: a thread and a port)."""
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def fake_openai(fake_openai_server: FakeOpenAIServer):
    """The shared fake server, with an empty script and no recorded requests."""
    fake_openai_server.reset()
    yield fake_openai_server
    fake_openai_server.reset()


@pytest.fixture
def openai_backend_factory(fake_openai: FakeOpenAIServer):
    """``make(**overrides) -> Backend``: an OpenAI backend pointed at ``fake_openai``.

    Retries wait milliseconds instead of seconds and the timeout is short, so
    fault tests stay fast; pass overrides (``max_retries=0``, ``tool_mode="text"``,
    ``timeout_s=0.3`` ...) as keyword arguments of ``BackendConfig``.
    """
    from agent.backends import create_backend
    from agent.backends.config import BackendConfig

    def make(**overrides: Any):
        values: dict[str, Any] = {
            "backend": "openai",
            "model": FAKE_MODEL,
            "base_url": fake_openai.base_url,
            "api_key": "sk-test-not-a-secret",
            "timeout_s": 5.0,
            "max_retries": 3,
            "retry_base_delay_s": 0.01,
            "retry_max_delay_s": 0.05,
        }
        values.update(overrides)
        return create_backend(BackendConfig(**values))

    return make
