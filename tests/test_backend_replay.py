"""The on-disk replay cache: hits skip the server, every input that matters changes the key."""

from __future__ import annotations

import numpy as np

from agent.backends import create_backend
from agent.backends.base import GenerationSettings, ImagePart, Message, TextPart, ToolSpec
from agent.backends.config import BackendConfig
from agent.backends.replay import ReplayBackend, cache_key
from tests.fake_openai import Call, Text, ToolCalls

SEARCH = ToolSpec(name="search_frames", description="Find frames.", parameters={"type": "object", "properties": {}})


def _frame(value: int) -> ImagePart:
    return ImagePart.from_array(np.full((16, 16, 3), value, dtype=np.uint8))


def _question(value: int = 0) -> list[Message]:
    return [Message(role="user", content=[TextPart(text="What is shown?"), _frame(value)])]


def test_second_identical_call_is_served_from_disk(fake_openai, openai_backend_factory, tmp_path):
    fake_openai.enqueue(ToolCalls([Call("search_frames", {"query": "dog"}, id="c9")], usage=(100, 10)))
    backend = openai_backend_factory(model="gpt-4o", replay_cache=tmp_path / "cache")
    assert isinstance(backend, ReplayBackend) and backend.supports_native_tools
    first = backend.chat(_question(), tools=[SEARCH])
    second = backend.chat(_question(), tools=[SEARCH])
    assert len(fake_openai.requests) == 1
    assert first.cached is False and second.cached is True
    assert second.tool_calls == first.tool_calls and second.usage == first.usage
    assert second.cost_usd == first.cost_usd and second.cost_usd is not None  # cost of the original call
    assert backend.cache_stats() == {"hits": 1, "misses": 1}
    assert len(list((tmp_path / "cache").glob("*.json"))) == 1
    assert not list((tmp_path / "cache").glob(".*tmp"))  # atomic writes leave no temporaries


def test_cache_works_offline_in_a_new_process(fake_openai, openai_backend_factory, tmp_path):
    fake_openai.enqueue(Text("a cat"))
    openai_backend_factory(replay_cache=tmp_path).chat(_question())
    # Same model, server gone (nothing listens on port 9): the run is replayed from disk.
    offline = create_backend(BackendConfig(model="fake-model", base_url="http://127.0.0.1:9/v1", api_key="",
                                           replay_cache=tmp_path, max_retries=0))
    reply = offline.chat(_question())
    assert reply.text == "a cat" and reply.cached and offline.cache_stats() == {"hits": 1, "misses": 0}


def test_image_bytes_settings_tools_and_model_change_the_key():
    settings = GenerationSettings()
    base = cache_key("openai", "m", _question(1), None, settings)
    assert base == cache_key("openai", "m", _question(1), None, GenerationSettings(timeout_s=5))  # timeout: same answer
    assert base != cache_key("openai", "m", _question(2), None, settings)  # one pixel value differs
    assert base != cache_key("openai", "m", _question(1), [SEARCH], settings)
    assert base != cache_key("openai", "m", _question(1), None, GenerationSettings(temperature=0.7))
    assert base != cache_key("openai", "m", _question(1), None, GenerationSettings(max_tokens=None))
    assert base != cache_key("openai", "other", _question(1), None, settings)
    assert base != cache_key("transformers", "m", _question(1), None, settings)
    assert base != cache_key("openai", "m", _question(1), None, settings, {"tool_mode": "text"})


def test_a_damaged_entry_is_a_miss_and_gets_repaired(fake_openai, openai_backend_factory, tmp_path):
    fake_openai.enqueue(Text("first"), Text("fresh"))
    backend = openai_backend_factory(replay_cache=tmp_path)
    backend.chat(_question())
    (entry,) = tmp_path.glob("*.json")
    entry.write_text("{ truncated")
    assert backend.chat(_question()).text == "fresh"
    assert backend.chat(_question()).text == "fresh" and backend.cache_stats() == {"hits": 1, "misses": 2}


def test_errors_are_not_cached(fake_openai, openai_backend_factory, tmp_path):
    from tests.fake_openai import Fault

    fake_openai.enqueue(Fault.bad_request("bad image"), Text("ok"))
    backend = openai_backend_factory(replay_cache=tmp_path)
    try:
        backend.chat(_question())
    except Exception:
        pass
    assert not list(tmp_path.glob("*.json"))
    assert backend.chat(_question()).text == "ok"
