"""What a bad server or a bad setting does to the OpenAI backend: deadlines, size caps, preflight, redaction.

Everything runs against the real HTTP server in ``tests/fake_openai.py``.
"""

from __future__ import annotations

import json
import logging
import socket
import time

import pytest

from agent.backends import create_backend
from agent.backends.base import BackendError, Message
from agent.backends.config import BackendConfig
from agent.backends.openai_backend import MAX_RESPONSE_BYTES
from agent.backends.replay import ReplayBackend
from prompts import load_prompt
from tests.fake_openai import FAKE_MODEL, Fault, Text

QUESTION = [Message(role="user", content="What happens at the end?")]


def _closed_port() -> int:
    """A localhost port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --------------------------------------------------------------------------- a deadline for the whole request


def test_a_trickling_server_is_cut_off_at_the_deadline(fake_openai, openai_backend_factory):
    """Each byte comes well within a read timeout; only a deadline on the whole request ends it."""
    fake_openai.enqueue(Fault.trickle(seconds_per_byte=0.1))  # ~30 s for the whole body
    timeout = 1.5
    started = time.monotonic()
    with pytest.raises(BackendError, match="no complete response within 1.5s") as info:
        openai_backend_factory(timeout_s=timeout, max_retries=0).chat(QUESTION)
    elapsed = time.monotonic() - started
    assert timeout <= elapsed < 3 * timeout
    assert (info.value.kind, info.value.attempts, info.value.config_class) == ("timeout", 1, False)


def test_a_server_that_goes_silent_after_slow_headers_is_cut_off_at_the_deadline(fake_openai, openai_backend_factory):
    """Headers after 1 s, then nothing: the body's reads get only what is left of the 1.5 s, not 1.5 s more."""
    fake_openai.enqueue(Fault.trickle(seconds_per_byte=30, headers_after=1.0))
    started = time.monotonic()
    with pytest.raises(BackendError, match="no complete response within 1.5s"):
        openai_backend_factory(timeout_s=1.5, max_retries=0).chat(QUESTION)
    assert time.monotonic() - started < 2.2


def test_a_trickle_is_retried_like_any_timeout(fake_openai, openai_backend_factory):
    fake_openai.enqueue(Fault.trickle(seconds_per_byte=0.1), Text("fast now"))
    reply = openai_backend_factory(timeout_s=0.5).chat(QUESTION)
    assert reply.text == "fast now" and len(fake_openai.requests) == 2


def test_a_slow_but_complete_reply_within_the_deadline_is_fine(fake_openai, openai_backend_factory):
    fake_openai.enqueue(Fault.trickle(seconds_per_byte=0.001, content="patience"))
    assert openai_backend_factory(timeout_s=5, max_retries=0).chat(QUESTION).text == "patience"


# --------------------------------------------------------------------------- a cap on the reply's size


@pytest.mark.parametrize("declare_length", [True, False], ids=["content-length", "read-until-close"])
def test_a_huge_reply_is_refused_not_retried(fake_openai, openai_backend_factory, declare_length):
    fake_openai.enqueue(Fault.huge(MAX_RESPONSE_BYTES + 2**20, declare_length=declare_length), Text("unused"))
    with pytest.raises(BackendError, match="32 MiB") as info:
        openai_backend_factory(max_retries=3).chat(QUESTION)
    assert (info.value.kind, info.value.attempts) == ("bad_response", 1)
    assert fake_openai.pending == 1  # the second reply was never asked for


def test_a_large_reply_under_the_cap_is_read(fake_openai, openai_backend_factory):
    fake_openai.enqueue(Fault.huge(2**20, declare_length=False))
    assert openai_backend_factory(max_retries=0).chat(QUESTION).text == "big"


# --------------------------------------------------------------------------- preflight


def test_preflight_reports_the_endpoint_and_its_models(fake_openai, openai_backend_factory):
    fake_openai.models = [FAKE_MODEL, "llava-7b"]
    fake_openai.required_key = "sk-test-not-a-secret"  # the factory's key: accepted
    backend = openai_backend_factory()
    facts = backend.preflight()
    assert facts["endpoint"] == fake_openai.base_url and facts["model"] == FAKE_MODEL
    assert facts["models_offered"] == [FAKE_MODEL, "llava-7b"] and facts["latency_s"] >= 0
    assert fake_openai.requests == []  # the server keeps preflight requests apart from a test's script
    (request,) = fake_openai.preflight_requests  # one tiny chat: a short prompt, a few tokens, no tools
    assert request["messages"] == [{"role": "user", "content": load_prompt("preflight").text.strip()}]
    assert request["max_tokens"] == 8 and "tools" not in request


def test_preflight_with_a_wrong_key_says_how_to_set_it(fake_openai, openai_backend_factory):
    fake_openai.required_key = "sk-the-right-key"
    started = time.monotonic()
    with pytest.raises(BackendError, match="refused the API key") as info:
        openai_backend_factory(api_key="sk-a-wrong-key").preflight()
    assert time.monotonic() - started < 1.0
    message = str(info.value)
    assert "HTTP 401" in message and "OPENAI_API_KEY" in message and "--api-key" in message
    assert (info.value.kind, info.value.config_class) == ("auth", True)
    assert fake_openai.requests == []  # stopped at the model list, no chat sent


def test_preflight_with_a_wrong_model_lists_the_models_offered(fake_openai, openai_backend_factory):
    fake_openai.models = [f"model-{i:02d}" for i in range(25)]
    fake_openai.unknown_models_status = 404  # as OpenAI and vLLM answer
    with pytest.raises(BackendError) as info:
        openai_backend_factory(model="nope").preflight()
    message = str(info.value)
    assert "'nope'" in message and "--model" in message
    assert "model-00, model-01" in message and "model-19" in message and "model-20" not in message
    assert "and 5 more" in message
    assert (info.value.kind, info.value.config_class) == ("not_found", True)


def test_preflight_accepts_an_unlisted_model_that_answers(fake_openai, openai_backend_factory, caplog):
    """llama.cpp's server, for one, lists a single name and answers to any."""
    with caplog.at_level(logging.WARNING, logger="agent.backends.openai_backend"):
        facts = openai_backend_factory(model="my-alias").preflight()
    assert facts["models_offered"] == [FAKE_MODEL] and "does not list my-alias" in caplog.text


def test_preflight_on_a_dead_url_fails_fast(fake_openai):
    port = _closed_port()
    backend = create_backend(BackendConfig(model=FAKE_MODEL, base_url=f"http://127.0.0.1:{port}/v1", api_key="",
                                           max_retries=4, retry_base_delay_s=1.0))
    started = time.monotonic()
    with pytest.raises(BackendError, match=f"cannot reach http://127.0.0.1:{port}/v1") as info:
        backend.preflight()
    assert time.monotonic() - started < 1.0  # no retries, no backoff
    assert "is the server running? check --base-url" in str(info.value)
    assert (info.value.kind, info.value.config_class) == ("connection", True)


def test_preflight_without_a_models_route_relies_on_the_chat(fake_openai, openai_backend_factory):
    fake_openai.models_status = 404
    facts = openai_backend_factory().preflight()
    assert facts["models_offered"] is None and len(fake_openai.preflight_requests) == 1


def test_preflight_reports_a_server_that_cannot_answer(fake_openai, openai_backend_factory):
    fake_openai.preflight_reply = Fault.server_error(503, "model still loading")
    with pytest.raises(BackendError, match="model still loading") as info:
        openai_backend_factory(max_retries=1).preflight()
    assert (info.value.kind, info.value.attempts, info.value.config_class) == ("server", 2, False)


def test_preflight_counts_a_reply_cut_by_its_tiny_token_limit_as_an_answer(fake_openai, openai_backend_factory):
    """Reasoning models may spend all 8 tokens thinking: the model ran, which is all preflight asks."""
    fake_openai.preflight_reply = Text("", finish_reason="length")
    assert openai_backend_factory(model="o4-mini").preflight()["model"] == "o4-mini"


def test_replay_preflight_delegates_to_the_wrapped_backend(fake_openai, openai_backend_factory, tmp_path):
    facts = ReplayBackend(openai_backend_factory(), tmp_path / "replies").preflight()
    assert facts["models_offered"] == [FAKE_MODEL] and facts["replay_cache"] == str(tmp_path / "replies")


def test_replay_preflight_tolerates_a_dead_server_only_with_cached_replies(tmp_path):
    config = BackendConfig(model=FAKE_MODEL, base_url=f"http://127.0.0.1:{_closed_port()}/v1", api_key="")
    replay = ReplayBackend(create_backend(config), tmp_path / "replies")
    with pytest.raises(BackendError, match="cannot reach"):
        replay.preflight()
    (tmp_path / "replies" / f"{'0' * 64}.json").write_text("{}")
    assert "cannot reach" in replay.preflight()["unavailable"]  # an offline re-run from the cache may go on


def test_transformers_preflight_reports_the_loaded_model(tiny_vlm_dir):
    backend = create_backend(BackendConfig(backend="transformers", model=str(tiny_vlm_dir), device="cpu"))
    facts = backend.preflight()
    assert facts == {"model": str(tiny_vlm_dir.resolve()), "device": "cpu", "vision": True}


# --------------------------------------------------------------------------- credentials in the URL


def test_credentials_in_the_base_url_are_used_but_never_shown(fake_openai, openai_backend_factory):
    url = fake_openai.base_url.replace("http://", "http://alice:s3cret@")
    backend = openai_backend_factory(base_url=url)
    fake_openai.enqueue(Text("ok"), Fault.http_error(404, "no such model"))
    facts = backend.preflight()
    assert backend.chat(QUESTION).text == "ok"
    assert fake_openai.request_headers[-1]["authorization"].startswith("Basic ")  # httpx sends them
    with pytest.raises(BackendError) as info:
        backend.chat(QUESTION)
    masked = fake_openai.base_url.replace("http://", "http://***@")
    assert backend.endpoint == masked and masked in str(info.value)
    public = json.dumps(backend.config.public_dict())
    for shown in (str(info.value), public, json.dumps(facts)):
        assert "s3cret" not in shown and "alice" not in shown


def test_credentials_stay_hidden_when_the_server_is_unreachable():
    config = BackendConfig(model=FAKE_MODEL, base_url=f"http://alice:s3cret@127.0.0.1:{_closed_port()}/v1",
                           api_key="", max_retries=0)
    backend = create_backend(config)
    for call in (backend.preflight, lambda: backend.chat(QUESTION)):
        with pytest.raises(BackendError) as info:
            call()
        assert "s3cret" not in str(info.value) and "http://***@127.0.0.1" in str(info.value)
