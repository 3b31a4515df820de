"""Any OpenAI-compatible chat-completions server: OpenAI, vLLM, SGLang, Ollama, LM Studio, ...

Built on the ``openai`` SDK with its own retry loop (the SDK's is turned off)
so that every failure is classified, retried with exponential backoff and
jitter where that can help, honours ``Retry-After``, and ends in one
``BackendError`` after a bounded number of attempts. Each request has a
deadline for the whole exchange and a cap on the reply's size, so neither a
server that trickles bytes nor one that sends too many can hold a run.
"""

from __future__ import annotations

import email.utils
import importlib
import json
import logging
import random
import threading
import time
from types import ModuleType
from typing import Any, Callable, Iterator

import openai

import agent.backends.text_protocol as text_protocol
from agent.backends.base import (
    BackendError,
    GenerationSettings,
    ImagePart,
    Message,
    Reply,
    TextPart,
    ToolCall,
    ToolSpec,
    Usage,
)
from agent.backends.config import BackendConfig
from agent.backends.pricing import cost_usd
from prompts import load_prompt
from sleuth import deadline
from sleuth.errors import ConfigError
from sleuth.redact import redact

log = logging.getLogger(__name__)

# Servers without an API key (vLLM, Ollama, LM Studio) accept any token; the SDK insists on one.
LOCAL_SERVER_API_KEY = "EMPTY"
OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
MAX_RETRY_AFTER_S = 120.0  # a server asking for longer is treated as a failure, not waited on
MAX_RESPONSE_BYTES = 32 * 1024 * 1024  # far beyond any chat reply; bounds the memory a runaway server can take
PREFLIGHT_TIMEOUT_S = 15.0  # the model list must come quickly; the test chat gets the configured timeout
PREFLIGHT_MAX_TOKENS = 8
PREFLIGHT_MODELS_SHOWN = 20

# Phrases servers use when they refuse ``tools`` (vLLM without a tool parser, Ollama models without tool support, ...).
_TOOL_REFUSAL_HINTS = ("tool", "function call", "function_call", "functions")
_HISTORY_PROBLEM_HINTS = ("tool_call_id", "role 'tool'", 'role "tool"', "tool message")


# --------------------------------------------------------------------------- request side


def _content_parts(content: str | list, *, image_detail_default: str | None = None) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            if part.label:
                parts.append({"type": "text", "text": part.label})
            image_url: dict[str, Any] = {"url": part.data_url()}
            detail = part.detail or image_detail_default
            if detail is not None:
                image_url["detail"] = detail
            parts.append({"type": "image_url", "image_url": image_url})
    return parts


def _native_tool_call(call: ToolCall) -> dict[str, Any]:
    arguments = call.raw_arguments if call.error is not None or not call.arguments else json.dumps(call.arguments)
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": arguments or "{}"}}


def to_openai_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Messages in chat-completions form, order and parts preserved exactly.

    The one rewrite: images in a tool turn travel in a user turn right after
    it, since the API accepts only text in tool messages.
    """
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "assistant":
            entry: dict[str, Any] = {"role": "assistant", "content": _content_parts(message.content) or None}
            if message.tool_calls:
                entry["tool_calls"] = [_native_tool_call(c) for c in message.tool_calls]
            out.append(entry)
        elif message.role == "tool":
            images = message.images()
            text = message.text() if images else message.content
            out.append({"role": "tool", "tool_call_id": message.tool_call_id or "", "content": _content_parts(text)})
            if images:
                image_parts = [p for p in message.content if isinstance(p, ImagePart)]  # type: ignore[union-attr]
                header = TextPart(text=f"Images returned by {message.name or 'the tool'}:")
                out.append({"role": "user", "content": _content_parts([header, *image_parts])})
        else:
            out.append({"role": message.role, "content": _content_parts(message.content)})
    return out


# --------------------------------------------------------------------------- reply side


def _parse_native_tool_calls(raw_calls: list[Any] | None) -> list[ToolCall]:
    calls: list[ToolCall] = []
    for index, raw in enumerate(raw_calls or []):
        function = getattr(raw, "function", None)
        name = (getattr(function, "name", None) or "").strip()
        raw_arguments = getattr(function, "arguments", None) or ""
        call_id = getattr(raw, "id", None) or f"call_{index}"
        try:
            arguments = json.loads(raw_arguments) if raw_arguments.strip() else {}
        except json.JSONDecodeError as exc:
            calls.append(ToolCall(id=call_id, name=name, raw_arguments=raw_arguments,
                                  error=f"arguments for {name or 'a tool call'} are not valid JSON ({exc.msg})"))
            continue
        if not isinstance(arguments, dict):
            calls.append(ToolCall(id=call_id, name=name, raw_arguments=raw_arguments,
                                  error=f"arguments for {name or 'a tool call'} must be a JSON object"))
            continue
        calls.append(ToolCall(id=call_id, name=name, arguments=arguments, raw_arguments=raw_arguments))
    return calls


def _retry_after_seconds(response: Any) -> float | None:
    """``Retry-After`` (seconds or HTTP date) or ``retry-after-ms``, if the server sent one."""
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        if parsed is None:
            return None
        return max(0.0, parsed.timestamp() - time.time())


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
        if body.get("message"):
            return str(body["message"])
    return exc.message


def _refuses_tools(exc: openai.APIStatusError) -> bool:
    if exc.status_code not in (400, 404, 422, 500, 501):
        return False
    text = f"{_error_message(exc)} {exc.message}".lower()
    if any(hint in text for hint in _HISTORY_PROBLEM_HINTS):
        return False  # a malformed tool turn in the history, not a server without tools
    return any(hint in text for hint in _TOOL_REFUSAL_HINTS)


def _rejects_temperature(exc: openai.APIStatusError) -> bool:
    # Reasoning models accept only their default temperature.
    text = _error_message(exc).lower()
    return exc.status_code == 400 and "temperature" in text and ("unsupported" in text or "not support" in text)


def _wants_max_completion_tokens(exc: openai.APIStatusError) -> bool:
    # Reasoning models on OpenAI reject ``max_tokens`` and ask for ``max_completion_tokens``.
    return exc.status_code == 400 and "max_completion_tokens" in _error_message(exc)


class _Retryable(Exception):
    def __init__(self, kind: str, detail: str, retry_after: float | None = None):
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.retry_after = retry_after


# --------------------------------------------------------------------------- HTTP: deadline and size cap


def _http_library() -> ModuleType:
    """``httpx``, or ``httpx2``, its fork with the same API that newer ``openai`` releases are built on."""
    client_class = openai.DefaultHttpxClient.__mro__[1]  # DefaultHttpxClient subclasses <library>.Client
    return importlib.import_module(client_class.__module__.partition(".")[0])


_http = _http_library()
_DEADLINE = "sleuth_deadline"  # request extension: (monotonic time the response must be complete by, budget)


class ResponseTooLarge(Exception):
    """A reply over ``MAX_RESPONSE_BYTES``. Not an HTTP error, so the SDK passes it through unwrapped."""


def _deadline_timeout(request: Any, budget: float) -> Exception:
    # The SDK turns httpx timeouts into APITimeoutError, which the retry loop already handles.
    return _http.ReadTimeout(f"no complete response within {budget:g}s", request=request)


def _start_clock(request: Any) -> None:
    """Request hook: the request's read timeout (the SDK sets every phase to ``timeout_s``) is its total budget."""
    budget = request.extensions.get("timeout", {}).get("read")
    if budget is not None:
        request.extensions[_DEADLINE] = (time.monotonic() + budget, budget)


def _bound_response(response: Any) -> None:
    """Response hook (headers are in, the body is not): refuse oversized replies, hold the body to the deadline."""
    request = response.request
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
        raise ResponseTooLarge(f"the server announced a {int(declared) / 2**20:.0f} MiB reply; "
                               f"sleuth reads at most {MAX_RESPONSE_BYTES // 2**20} MiB")
    deadline = request.extensions.get(_DEADLINE)
    if deadline is not None:
        remaining = deadline[0] - time.monotonic()
        if remaining <= 0:
            raise _deadline_timeout(request, deadline[1])
        # httpcore takes the read timeout for the whole body from the request when the body starts:
        # giving it what is left of the budget stops a server that goes silent at the deadline.
        request.extensions["timeout"] = {**request.extensions["timeout"], "read": remaining}
    response.stream = _BoundedStream(response.stream, request, deadline)


class _BoundedStream(_http.SyncByteStream):
    """A response body that fails once it outgrows ``MAX_RESPONSE_BYTES`` or its request's deadline.

    Per-read timeouts cannot catch a server that sends a byte now and then;
    checking the clock after every chunk does.
    """

    def __init__(self, inner: Any, request: Any, deadline: tuple[float, float] | None) -> None:
        self._inner = inner
        self._request = request
        self._deadline = deadline

    def __iter__(self) -> Iterator[bytes]:
        received = 0
        for chunk in self._inner:
            received += len(chunk)
            if received > MAX_RESPONSE_BYTES:
                raise ResponseTooLarge(f"the reply exceeds {MAX_RESPONSE_BYTES // 2**20} MiB")
            if self._deadline is not None and time.monotonic() > self._deadline[0]:
                raise _deadline_timeout(self._request, self._deadline[1])
            yield chunk

    def close(self) -> None:
        self._inner.close()


class _HttpClient(openai.DefaultHttpxClient):
    """The SDK's default client (its pool limits, proxies from the environment) with the deadline and size cap."""

    def __init__(self) -> None:
        super().__init__(event_hooks={"request": [_start_clock], "response": [_bound_response]})

    def __del__(self) -> None:
        # Like the client the SDK builds for itself: pooled connections close with the backend.
        if not self.is_closed:
            try:
                self.close()
            except Exception:  # noqa: BLE001 - during interpreter shutdown anything may be gone
                pass


# --------------------------------------------------------------------------- backend


class OpenAIBackend:
    """A ``Backend`` for one model on one OpenAI-compatible endpoint. Thread-safe."""

    name = "openai"

    def __init__(
        self,
        config: BackendConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.model = config.model
        self._sleep = sleep
        self._jitter = jitter
        self._lock = threading.Lock()
        # Learned from the server in auto mode; native until a request with tools is refused.
        self.supports_native_tools: bool = config.tool_mode != "text"
        self._max_tokens_field = "max_tokens"  # or max_completion_tokens, learned from the server
        self._send_temperature = True  # False once the server says the model takes only its default

        api_key = config.api_key_value()
        if not api_key:
            if config.base_url is None or config.base_url.rstrip("/") == OPENAI_DEFAULT_BASE_URL:
                raise ConfigError(
                    "no API key for api.openai.com: set OPENAI_API_KEY or pass --api-key "
                    "(or point --base-url at a local server)"
                )
            api_key = LOCAL_SERVER_API_KEY
        self.client = openai.OpenAI(
            api_key=api_key,
            base_url=config.base_url or OPENAI_DEFAULT_BASE_URL,
            default_headers=dict(config.headers) or None,
            timeout=config.timeout_s,
            max_retries=0,  # retries are ours: classified, bounded, logged
            http_client=_HttpClient(),
        )

    @property
    def endpoint(self) -> str:
        """The base URL as it may be shown: credentials in it are masked."""
        return redact(str(self.client.base_url).rstrip("/"))

    def cache_identity(self) -> dict[str, Any]:
        """What besides model and inputs shapes a reply (part of the replay-cache key)."""
        return {"tool_mode": self.config.tool_mode}

    # -- before a run

    def preflight(self) -> dict[str, Any]:
        """Check once, before any real work, that this endpoint and model can answer.

        First the model list (fast, no retries): a dead URL or a refused key
        fails here. Then one tiny chat request through ``chat``, the ground
        truth for whether the model is served (some servers answer for models
        they do not list; transient failures get the usual retries). Returns
        facts for the run's log; raises ``BackendError`` saying what to fix.
        """
        offered = self._models_offered()
        if offered is not None and self.model not in offered:
            log.warning("%s does not list %s; trying it anyway", self.endpoint, self.model)
        settings = self.config.generation_settings().model_copy(update={"max_tokens": PREFLIGHT_MAX_TOKENS})
        started = time.monotonic()
        try:
            self.chat([Message(role="user", content=load_prompt("preflight").text.strip())], settings=settings)
        except BackendError as exc:
            if offered is not None and self.model not in offered and exc.kind in ("not_found", "bad_request"):
                shown = ", ".join(offered[:PREFLIGHT_MODELS_SHOWN])
                if len(offered) > PREFLIGHT_MODELS_SHOWN:
                    shown += f" and {len(offered) - PREFLIGHT_MODELS_SHOWN} more"
                raise BackendError(
                    f"{self.endpoint} does not serve model {self.model!r}; it offers {shown}: "
                    "pass one of them to --model",
                    kind="not_found", attempts=exc.attempts,
                ) from None
            if exc.kind != "empty":  # an empty reply (all tokens spent on reasoning) still proves the model runs
                raise
        return {
            "endpoint": self.endpoint,
            "model": self.model,
            "models_offered": offered,
            "latency_s": round(time.monotonic() - started, 3),
        }

    def _models_offered(self) -> list[str] | None:
        """The model ids ``GET /models`` lists; None when the server has no usable list."""
        budget = min(self.config.timeout_s, PREFLIGHT_TIMEOUT_S)
        try:
            page = self.client.models.list(timeout=budget)
        except openai.APITimeoutError as exc:
            if isinstance(exc.__cause__, _http.ConnectTimeout):
                raise BackendError(f"cannot reach {self.endpoint} (no connection within {budget:g}s): "
                                   "is the server running? check --base-url", kind="connection") from None
            raise BackendError(f"{self.endpoint} accepted the connection but sent no model list within "
                               f"{budget:g}s: is the server overloaded?", kind="timeout") from None
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            raise BackendError(f"cannot reach {self.endpoint} ({type(cause).__name__}: {cause}): "
                               "is the server running? check --base-url", kind="connection") from None
        except openai.APIStatusError as exc:
            if exc.status_code in (401, 403):
                raise BackendError(f"{self.endpoint} refused the API key (HTTP {exc.status_code}): "
                                   "set OPENAI_API_KEY or pass --api-key", kind="auth") from None
            # No models route (404) or a broken one: the test chat decides.
            log.debug("%s: GET /models answered HTTP %d; skipping the model check", self.endpoint, exc.status_code)
            return None
        except (openai.APIResponseValidationError, ResponseTooLarge) as exc:
            log.debug("%s: unusable model list (%s); skipping the model check", self.endpoint, exc)
            return None
        return [model.id for model in page.data if getattr(model, "id", None)] or None

    # -- the one call

    def chat(
        self,
        messages: list[Message],
        tools: list[ToolSpec] | None = None,
        settings: GenerationSettings | None = None,
    ) -> Reply:
        settings = settings or self.config.generation_settings()
        tools = list(tools or [])
        attempts = 0
        started = time.monotonic()
        while True:
            attempts += 1
            native = self.supports_native_tools
            try:
                deadline.check()  # the question's own deadline (``sleuth.deadline``): no attempt past it
                # each attempt gets what is left of the question's time, at most its own timeout
                attempt_settings = settings.model_copy(update={"timeout_s": deadline.clamp_timeout(settings.timeout_s)})
                response = self._send(self._request(messages, tools, attempt_settings, native=native), attempt_settings)
                reply = self._reply(response, tools, native=native)
                reply.latency_s = time.monotonic() - started
                return reply
            except BackendError as exc:  # a reply that retrying cannot fix
                exc.attempts = attempts
                raise
            except openai.APIStatusError as exc:
                if native and tools and self.config.tool_mode == "auto" and _refuses_tools(exc):
                    log.warning("%s refused native tools (%s); using the text protocol from now on",
                                self.endpoint, _error_message(exc))
                    with self._lock:
                        self.supports_native_tools = False
                    attempts -= 1  # a protocol switch is not a failed attempt
                    continue
                if self._max_tokens_field == "max_tokens" and _wants_max_completion_tokens(exc):
                    with self._lock:
                        self._max_tokens_field = "max_completion_tokens"
                    attempts -= 1
                    continue
                if self._send_temperature and settings.temperature is not None and _rejects_temperature(exc):
                    log.warning("%s accepts only its default temperature; --temperature %g is not sent",
                                self.model, settings.temperature)
                    with self._lock:
                        self._send_temperature = False
                    attempts -= 1
                    continue
                raise self._final_error(exc, attempts) from None
            except _Retryable as failure:
                deadline.check()  # a request cut short by the question's deadline is the deadline's failure
                if attempts > self.config.max_retries:
                    raise BackendError(
                        f"{self.model} at {self.endpoint}: {failure.detail} (gave up after {attempts} attempts)",
                        kind=failure.kind, attempts=attempts,
                    ) from None
                delay = self._backoff(attempts, failure.retry_after)
                if delay is None:
                    raise BackendError(
                        f"{self.model} at {self.endpoint}: {failure.detail}; the server asks to wait "
                        f"{failure.retry_after:.0f}s, longer than sleuth waits ({MAX_RETRY_AFTER_S:.0f}s)",
                        kind=failure.kind, attempts=attempts,
                    )
                log.info("%s: %s; retry %d/%d in %.2fs", self.model, failure.detail, attempts,
                         self.config.max_retries, delay)
                left = deadline.remaining()
                if left is not None and delay >= left:  # the wait would outlast the question
                    raise BackendError(
                        f"{self.model} at {self.endpoint}: {failure.detail}; no time left to retry "
                        "within the question's deadline", kind=failure.kind, attempts=attempts,
                    ) from None
                self._sleep(delay)

    # -- pieces

    def _request(
        self, messages: list[Message], tools: list[ToolSpec], settings: GenerationSettings, *, native: bool
    ) -> dict[str, Any]:
        if not native:
            messages = text_protocol.render_messages(messages, tools)
        request: dict[str, Any] = {
            "model": self.model,
            "messages": to_openai_messages(messages),
        }
        if tools and native:
            request["tools"] = [spec.openai_schema() for spec in tools]
        if settings.temperature is not None and self._send_temperature:
            request["temperature"] = settings.temperature
        if settings.max_tokens is not None:
            request[self._max_tokens_field] = settings.max_tokens
        if settings.seed is not None:
            request["seed"] = settings.seed
        if settings.stop:
            request["stop"] = settings.stop
        return request

    def _send(self, request: dict[str, Any], settings: GenerationSettings) -> Any:
        try:
            # The SDK walks every part of ``messages`` (and ``tools``) in Python to apply typed-dict aliases,
            # none of which these have: 40 ms of CPU for a request with 32 full-resolution frames (profiled
            # under tools.bench_eval), and an agent resends its images with every request. Both are already
            # in the wire format, so they go as extra_body, which the SDK merges into the body as it is.
            wire = {key: request[key] for key in ("messages", "tools") if key in request}
            fields = {key: value for key, value in request.items() if key not in wire}
            return self.client.chat.completions.create(**fields, messages=[], extra_body=wire,
                                                       timeout=settings.timeout_s)
        except openai.APITimeoutError:
            raise _Retryable("timeout", f"no complete response within {settings.timeout_s:g}s") from None
        except ResponseTooLarge as exc:
            raise BackendError(f"{self.model} at {self.endpoint}: {exc}", kind="bad_response") from None
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            raise _Retryable("connection", f"connection failed ({type(cause).__name__}: {cause})") from None
        except openai.RateLimitError as exc:
            raise _Retryable("rate_limit", f"rate limited (HTTP 429: {_error_message(exc)})",
                             _retry_after_seconds(exc.response)) from None
        except openai.APIStatusError as exc:
            if exc.status_code >= 500 or exc.status_code == 408:
                raise _Retryable("server", f"server error (HTTP {exc.status_code}: {_error_message(exc)})",
                                 _retry_after_seconds(exc.response)) from None
            raise
        except openai.APIResponseValidationError as exc:
            raise _Retryable("bad_response", f"malformed response ({exc.message})") from None

    def _reply(self, response: Any, tools: list[ToolSpec], *, native: bool) -> Reply:
        choices = getattr(response, "choices", None) or []
        if not choices or getattr(choices[0], "message", None) is None:
            raise _Retryable("bad_response", "the response has no choices")
        choice = choices[0]
        message = choice.message
        text = message.content or ""
        if not native:
            calls = text_protocol.parse_action(text) if tools else []
        else:
            calls = _parse_native_tool_calls(message.tool_calls)
            if not calls and tools and self.config.tool_mode == "auto":
                # Servers that accept ``tools`` but whose model writes the action as text.
                calls = text_protocol.parse_action(text, only={t.name for t in tools})
        finish_reason = choice.finish_reason
        if not text.strip() and not calls:
            if finish_reason == "length":
                raise BackendError(
                    f"{self.model} at {self.endpoint}: the reply hit the token limit before any text "
                    "(raise --max-tokens)", kind="empty", attempts=1,
                )
            raise _Retryable("empty", "empty reply (no text and no tool calls)")
        usage = Usage(
            prompt_tokens=getattr(response.usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(response.usage, "completion_tokens", 0) or 0,
        ) if response.usage is not None else Usage()
        model = getattr(response, "model", None) or self.model
        return Reply(
            text=text,
            tool_calls=calls,
            usage=usage,
            cost_usd=cost_usd(self.model, usage, self.config.prices_file) if response.usage is not None else None,
            model=model,
            finish_reason=finish_reason,
            raw=response.model_dump(mode="json"),
        )

    def _backoff(self, attempt: int, retry_after: float | None) -> float | None:
        if retry_after is not None:
            if retry_after > MAX_RETRY_AFTER_S:
                return None
            return retry_after
        base = self.config.retry_base_delay_s * (2 ** (attempt - 1))
        capped = min(self.config.retry_max_delay_s, base)
        return capped * (0.5 + 0.5 * self._jitter())  # "equal jitter": never zero, never above the cap

    def _final_error(self, exc: openai.APIStatusError, attempts: int) -> BackendError:
        status = exc.status_code
        kind = {401: "auth", 403: "auth", 404: "not_found"}.get(status, "bad_request")
        hint = {
            401: " (check --api-key / OPENAI_API_KEY)",
            403: " (check --api-key / OPENAI_API_KEY)",
            404: " (check --model and --base-url)",
        }.get(status, "")
        return BackendError(
            f"{self.model} at {self.endpoint}: HTTP {status}: {_error_message(exc)}{hint}", kind=kind, attempts=attempts
        )
