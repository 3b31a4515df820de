"""The in-process transformers backend: a tiny random VLM built from a config, and the real SmolLM2-135M (GGUF)."""

from __future__ import annotations

import numpy as np
import pytest

from agent.backends import create_backend
from agent.backends.base import GenerationSettings, ImagePart, Message, TextPart, ToolCall, ToolSpec
from agent.backends.config import BackendConfig
from agent.backends.transformers_backend import TransformersBackend, resolve_model_source
from sleuth.errors import ModelUnavailableError

SEARCH = ToolSpec(
    name="search_frames",
    description="Find the frames that best match a text description.",
    parameters={"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
)


def _frame(seed: int) -> ImagePart:
    rng = np.random.default_rng(seed)
    return ImagePart.from_array(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8), label=f"t={seed}.0s")


def test_tiny_vlm_sees_images_and_survives_garbage(tiny_vlm_dir):
    backend = create_backend(BackendConfig(backend="transformers", model=str(tiny_vlm_dir), device="cpu"))
    assert isinstance(backend, TransformersBackend) and backend.vision
    assert backend.supports_native_tools is False
    messages = [
        Message(role="system", content="Answer questions about the video."),
        Message(role="user", content=[TextPart(text="Which frame shows the dog?"), _frame(1), _frame(2)]),
    ]
    reply = backend.chat(messages, tools=[SEARCH], settings=GenerationSettings(max_tokens=12))
    # Random weights write random tokens: the reply is kept as text, and nothing in it is a valid action.
    assert reply.text.strip()
    assert reply.tool_calls == []
    assert reply.usage.completion_tokens == 12 and reply.finish_reason == "length"
    assert reply.cost_usd is None
    prompt = reply.raw["prompt"]
    assert prompt.count("<|image_pad|>") == 2 and "t=1.0s" in prompt and "t=2.0s" in prompt
    assert "search_frames" in prompt and '"tool"' in prompt  # tools described by the text protocol
    # The images reached the vision tower: more prompt tokens than text alone.
    text_only = backend.chat([messages[0], Message(role="user", content="Which frame shows the dog?")],
                             settings=GenerationSettings(max_tokens=2))
    assert reply.usage.prompt_tokens > text_only.usage.prompt_tokens + 2


def test_tiny_vlm_renders_tool_history_as_text(tiny_vlm_dir):
    backend = create_backend(BackendConfig(backend="transformers", model=str(tiny_vlm_dir), device="cpu"))
    call = ToolCall(id="c1", name="search_frames", arguments={"query": "dog"})
    history = [
        Message(role="user", content="Find the dog."),
        Message(role="assistant", content="Searching.", tool_calls=[call]),
        Message(role="tool", tool_call_id="c1", name="search_frames", content=[TextPart(text="2 hits"), _frame(3)]),
    ]
    reply = backend.chat(history, tools=[SEARCH], settings=GenerationSettings(max_tokens=3))
    prompt = reply.raw["prompt"]
    assert '{"tool": "search_frames", "arguments": {"query": "dog"}}' in prompt
    assert "Tool result (search_frames):" in prompt and "<|image_pad|>" in prompt
    assert "<|im_start|>tool" not in prompt


def test_missing_local_models_fail_clearly(tmp_path):
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        resolve_model_source(str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelUnavailableError, match="no config.json"):
        resolve_model_source(str(tmp_path))
    with pytest.raises(ModelUnavailableError, match="no model folder"):
        resolve_model_source("./no/such/model")


def test_hub_model_offline_says_what_to_do():
    with pytest.raises(ModelUnavailableError, match="hf download sleuth-tests/not-a-model"):
        create_backend(BackendConfig(backend="transformers", model="sleuth-tests/not-a-model", device="cpu"))


def test_corrupt_gguf_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00not really")
    with pytest.raises(ModelUnavailableError, match="broken.gguf"):
        create_backend(BackendConfig(backend="transformers", model=str(bad), device="cpu"))


@pytest.fixture(scope="module")
def smollm2():
    return create_backend(BackendConfig(backend="transformers", model="smollm2", device="auto"))


@pytest.mark.slow
def test_smollm2_answers_in_plain_text(smollm2):
    reply = smollm2.chat(
        [Message(role="user", content="What is the capital of France? Answer in one word.")],
        settings=GenerationSettings(max_tokens=16),
    )
    assert "paris" in reply.text.lower()
    assert reply.tool_calls == [] and reply.finish_reason == "stop"
    assert reply.usage.prompt_tokens > 10 and 0 < reply.usage.completion_tokens < 16


@pytest.mark.slow
def test_smollm2_text_protocol_round_trip(smollm2):
    """Whatever the small model writes, the backend returns text plus at most one well-formed call."""
    messages = [
        Message(role="system", content="You find moments in videos."),
        Message(role="user", content="Find the frames where a dog appears. Call the search_frames tool."),
    ]
    reply = smollm2.chat(messages, tools=[SEARCH], settings=GenerationSettings(max_tokens=32))
    assert reply.text.strip()
    assert len(reply.tool_calls) <= 1
    for call in reply.tool_calls:
        assert call.name and (call.error is None) == isinstance(call.arguments, dict)
    assert "search_frames" in reply.raw["prompt"] and "Tool result" in reply.raw["prompt"]


@pytest.mark.slow
def test_smollm2_notes_images_it_cannot_see(smollm2):
    reply = smollm2.chat(
        [Message(role="user", content=[TextPart(text="Describe this frame."), _frame(4)])],
        settings=GenerationSettings(max_tokens=4),
    )
    assert "[image t=4.0s not shown: this model reads text only]" in reply.raw["prompt"]


def test_sampling_with_a_seed_is_reproducible(tiny_vlm_dir):
    backend = create_backend(BackendConfig(backend="transformers", model=str(tiny_vlm_dir), device="cpu"))
    question = [Message(role="user", content="Which frame shows the dog?")]
    sampled = GenerationSettings(temperature=1.0, seed=7, max_tokens=8)
    assert backend.chat(question, settings=sampled).text == backend.chat(question, settings=sampled).text


def test_device_and_dtype_choice(monkeypatch):
    import torch

    from agent.backends.transformers_backend import resolve_device, resolve_dtype
    from sleuth.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_device("auto") == "cuda" and resolve_dtype("auto", "cuda") == torch.bfloat16
    assert resolve_dtype("auto", "cpu") == torch.float32 and resolve_dtype("float16", "cpu") == torch.float16
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda:0")
    with pytest.raises(ConfigError, match="not a torch dtype"):
        resolve_dtype("float12", "cpu")
