"""One serialisable description of an evaluation run, from the command line (or a file) to the runner.

``RunSpec`` holds everything that decides a run: the benchmark and its data,
the method (and, for the agent, its strategy, budgets and frame index), the
model backend, and how the run is carried out. ``sleuth eval`` builds one from
its flags or from ``--config run.yaml`` (flags given on the command line win),
records it in the run directory (``spec.json``, without secrets), and
``prepare(spec)`` turns it into the loaded dataset, the method and its models.
A worker process or another machine needs nothing else to rebuild the run
(the API key comes from its environment, never from the file).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agent.backends.config import BackendConfig
from agent.config import AgentConfig
from eval.results import first_error
from sleuth.errors import ConfigError
from tools.options import IndexConfig

SPEC_FILE = "spec.json"


class RunSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # what is evaluated
    benchmark: str = Field("mmr_v", description="registered benchmark name (sleuth eval --help lists them)")
    variant: str | None = Field(None, description="one of the benchmark's protocol variants; None: its official code")
    data: str | None = Field(None, description="questions: a file, a folder or hf://name; None: the benchmark's hub dataset")
    videos: Path = Field(description="folder with the benchmark's video files")
    limit: int | None = Field(None, ge=0, description="only the first N questions")
    # how it is answered
    method: str = Field("uniform", description="registered method name")
    frames: int = Field(32, ge=1, description="uniform: frames per question; agent: most frames shown per question")
    cot: bool = False
    strict_official: bool = False
    temperature_set: bool = Field(False, description="uniform: send the backend's temperature (else the protocol's)")
    max_tokens_set: bool = Field(False, description="uniform: send the backend's max_tokens (else the protocol's)")
    strategy: str = Field("planner", description="agent: registered strategy name")
    agent: AgentConfig = Field(default_factory=AgentConfig)
    index: IndexConfig | None = Field(None, description="agent: the frame index (CLIP model, sampling, cache)")
    backend: BackendConfig
    perception_model: str | None = None
    image_max_side: int | None = Field(
        None, ge=16, description="longest side of every frame sent, for every method; None: the benchmark protocol's"
    )
    # how the run is carried out
    out: Path
    concurrency: int = Field(1, ge=1)
    retry_errors: bool = False
    question_timeout: float | None = Field(900.0, gt=0)
    stop_after: int = Field(3, ge=0)
    allow_missing: bool = False
    keep_frames: bool = Field(
        True, description="keep every frame sent to a model on disk (and, for the agent, every frame its index "
        "samples), so later questions and runs show it without decoding; speed only: the images are bit-identical"
    )
    frames_cache_dir: Path | None = Field(
        None, description="where kept frames live; None: the frame index's cache directory (--cache-dir, "
        "$SLEUTH_CACHE_DIR, else the user cache directory)"
    )

    @field_validator("videos", "out", "frames_cache_dir", mode="before")
    @classmethod
    def _home(cls, value: Any) -> Any:
        return str(Path(value).expanduser()) if isinstance(value, (str, Path)) else value

    @field_validator("data", mode="before")
    @classmethod
    def _home_data(cls, value: Any) -> Any:
        return str(Path(value).expanduser()) if isinstance(value, str) and value.startswith("~") else value

    @model_validator(mode="before")
    @classmethod
    def _one_frame_budget(cls, data: Any) -> Any:
        # ``frames`` is the budget of every method; the agent's own copy follows it
        if isinstance(data, dict):
            agent = data.get("agent")
            agent = agent.model_dump(exclude_unset=True) if isinstance(agent, AgentConfig) else dict(agent or {})
            frames = data.get("frames", 32)
            if agent.setdefault("max_frames", frames) != frames:
                raise ValueError(f"agent.max_frames ({agent['max_frames']}) differs from frames ({frames}); set frames")
            data = {**data, "agent": agent}
        return data

    def public_dict(self) -> dict[str, Any]:
        """The spec as JSON, without secrets (what ``spec.json`` holds)."""
        data = self.model_dump(mode="json", exclude={"backend"})
        data["backend"] = self.backend.public_dict()
        return data


def load_spec_file(path: Path) -> dict[str, Any]:
    """The values of a ``--config`` file (YAML or JSON), as a dict to merge flags into."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the run configuration ({exc.strerror or exc})") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # yaml and json raise their own error types
        raise ConfigError(f"{path}: not valid {path.suffix.lstrip('.') or 'JSON'} ({' '.join(str(exc).split())[:200]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a run configuration is a mapping of settings")
    data.pop("api_key", None)
    if isinstance(data.get("backend"), dict):
        data["backend"] = {k: v for k, v in data["backend"].items() if k != "api_key_set"}
    return data


def make_spec(values: dict[str, Any]) -> RunSpec:
    """A validated ``RunSpec``; a bad value fails with one line naming the setting."""
    try:
        return RunSpec.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(f"invalid setting {first_error(exc, 'run')}") from None


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` laid over ``base``, nested dicts merged key by key."""
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = value
    return result


@dataclass
class PreparedRun:
    """A spec resolved: the benchmark, its questions, the method and the models behind it."""

    spec: RunSpec
    benchmark: Any
    dataset: Any
    method: Any
    backend: Any
    perception_backend: Any = None
    searcher: Any = None
    config_extra: dict[str, Any] = field(default_factory=dict)
    identity_extra: dict[str, Any] = field(default_factory=dict)

    @property
    def selected(self) -> list[Any]:
        questions = self.dataset.questions
        return questions[: self.spec.limit] if self.spec.limit is not None else questions


def load_dataset(spec: RunSpec) -> tuple[Any, Any]:
    """(benchmark, dataset): the questions, before any model loads."""
    from eval.benchmarks import get_benchmark
    from eval.dataset import DatasetError

    benchmark = get_benchmark(spec.benchmark, spec.variant)
    dataset = benchmark.load(spec.data, spec.videos)
    if not dataset.questions:
        raise DatasetError(f"{dataset.source}: no valid questions")
    return benchmark, dataset


def prepare(spec: RunSpec, benchmark: Any, dataset: Any) -> PreparedRun:
    """Build the method and its models from ``spec`` (loads the model backend)."""
    from agent.backends import create_backend
    from agent.strategies import get_strategy
    from eval.methods import MethodParts, create_method
    from tools.frame_shelf import FrameShelf
    from tools.frame_store import FrameStore
    from tools.options import IndexConfig

    backend = create_backend(spec.backend)
    # every method shows frames at the same size: the protocol's, unless the user chose one
    image_max_side = spec.image_max_side or benchmark.image_max_side
    cache_dir = spec.frames_cache_dir or (spec.index or IndexConfig()).resolved_cache_dir()
    shelf = FrameShelf.in_cache(cache_dir) if spec.keep_frames else None
    agent_config = spec.agent.model_copy(update={"image_max_side": image_max_side})
    settings = spec.backend.generation_settings()
    if spec.method == "uniform":
        # the official protocol decides temperature and max_tokens unless the user set them
        official = benchmark.generation_settings(settings)
        settings = official.model_copy(update={
            **({"temperature": settings.temperature} if spec.temperature_set else {}),
            **({"max_tokens": settings.max_tokens} if spec.max_tokens_set else {}),
        })
    searcher = perception = None
    config_extra: dict[str, Any] = {}
    identity_extra: dict[str, Any] = {}
    labels: list[str] = []
    if spec.method != "uniform":
        from tools.search import FrameSearcher

        if spec.index is None:
            raise ConfigError(f"the {spec.method} method needs frame index settings")
        searcher = FrameSearcher(spec.index, keep_frames=get_strategy(spec.strategy).kept_frames(agent_config, cache_dir)
                                 if shelf else None)
        labels = list(searcher.labels)
        config_extra["index"] = {"settings": spec.index.model_dump(mode="json"), "clip_model_id": searcher.model_id,
                                 "labels": labels}
        # what decides which frames a search finds; resuming with other values would mix two retrievers
        config_extra["retrieval"] = identity_extra["retrieval"] = {
            "clip": searcher.model_id, "fps": spec.index.fps, "max_frames": spec.index.max_frames,
            "frame_fit": spec.index.frame_fit,
        }
        if spec.perception_model:
            perception_config = spec.backend.model_copy(update={"model": spec.perception_model})
            perception = create_backend(perception_config)
            config_extra["perception_backend"] = perception_config.public_dict()
    method = create_method(spec.method, MethodParts(
        benchmark=benchmark, backend=backend, frames=spec.frames, settings=settings, cot=spec.cot,
        strict_official=spec.strict_official, searcher=searcher, agent_config=agent_config, strategy=spec.strategy,
        image_max_side=spec.image_max_side,
        perception_backend=perception, labels=labels, frame_store=FrameStore(shelf=shelf),
    ))
    config_extra["data"] = {"benchmark": benchmark.name, "source": dataset.source, "videos": str(spec.videos),
                            "questions": len(dataset.questions)}
    config_extra["models"] = {
        "model": spec.backend.model,
        **({"perception": spec.perception_model} if spec.perception_model else {}),
        **({"clip": searcher.model_id} if searcher is not None else {}),
    }
    return PreparedRun(spec=spec, benchmark=benchmark, dataset=dataset, method=method, backend=backend,
                       perception_backend=perception, searcher=searcher, config_extra=config_extra,
                       identity_extra=identity_extra)


def write_spec(spec: RunSpec, run_dir: Path) -> Path:
    path = Path(run_dir) / SPEC_FILE
    path.write_text(json.dumps(spec.public_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
    return path
