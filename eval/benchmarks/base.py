"""What a benchmark is to sleuth: one typed class per benchmark, one folder each, found by name.

A benchmark says how to load its questions (a hub dataset or local files,
and how its videos are packaged), its official end-to-end protocol (frames,
prompt templates, request layout), how an answer is read from a reply and
scored, how results are grouped, which fields its official scripts expect
in a result row, and its published reference numbers (labelled as
reported). Everything else in sleuth (methods, the runner, scoring, reports)
asks the benchmark instead of knowing one.

Adding one: a folder under ``eval/benchmarks/`` (or any module of yours)
with a ``Benchmark`` subclass decorated with ``@register_benchmark``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from sleuth.answers import AnswerKind, parse_letter, parse_number

if TYPE_CHECKING:
    from agent.backends.base import GenerationSettings, ImagePart, Message
    from eval.dataset import LoadedDataset, Question
    from eval.results import ResultRow
    from tools.rendering import Renderer


@dataclass(frozen=True)
class Grouping:
    """One way to group results, e.g. MMR-V's Implicit/Explicit: ``key`` in a question's ``groups``."""

    key: str  # the groups-dict key and the score table's group kind
    title: str  # as a report heading says it
    order: tuple[str, ...] = ()  # values in this order first, then any others sorted
    labels: dict[str, str] = field(default_factory=dict)  # value -> how tables name it
    closed: bool = False  # only the values in ``order``, each listed even when empty
    headline: bool = False  # its groups are columns of the summary table
    browse: bool = True  # a column and a filter of the run browser's question table


@dataclass(frozen=True)
class Reference:
    """A published result, reported by others and never run here: accuracy in percent per group."""

    name: str
    overall: float
    groups: dict[str, float] = field(default_factory=dict)  # e.g. {"Implicit": 54.6}
    note: str = ""


@dataclass
class DownloadOutcome:
    """What ``sleuth data download`` got: where the questions and videos are, and what is missing."""

    root: Path
    videos_dir: Path
    video_files: int
    questions_file: Path | None = None
    referenced: int = 0  # distinct videos the questions name
    missing: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # benchmark-specific facts (parts, archives, ...)


@dataclass(frozen=True)
class Extraction:
    """An answer read from a reply and the rule that found it (``brackets``, ``number``, ``none``, ...)."""

    value: str | float | None
    rule: str


class Benchmark:
    """Base class: defaults suit a multiple-choice benchmark; override what differs."""

    name: ClassVar[str]  # registry name, e.g. "mmr_v"
    title: ClassVar[str]  # e.g. "MMR-V"
    hub_dataset: ClassVar[str | None] = None  # e.g. "JokerJan/MMR-VBench"
    answer_kind: ClassVar[AnswerKind] = "choice"
    groupings: ClassVar[tuple[Grouping, ...]] = ()
    references: ClassVar[tuple[Reference, ...]] = ()
    reference_source: ClassVar[str] = ""
    default_frames: ClassVar[int] = 32  # the official protocol's frames per question
    # the longest side of the frames the official protocol sends (None: full resolution); every method
    # shows frames at this size unless --image-max-side says otherwise, so methods compare at equal pixels
    image_max_side: ClassVar[int | None] = None
    # Protocol variants a run may choose (``--variant NAME``): name -> what it changes. Where the
    # official code and the paper disagree, the default (no variant) follows the code.
    variants: ClassVar[dict[str, str]] = {}

    def __init__(self, variant: str | None = None):
        from sleuth.errors import ConfigError

        if variant is not None and variant not in self.variants:
            known = ", ".join(self.variants) or "none"
            raise ConfigError(f"{self.title} has no variant {variant!r}; its variants: {known}")
        self.variant = variant

    def download(self, directory: Path, *, fetch: bool = True, extract: bool = True, revision: str | None = None,
                 progress: bool = True, console: Any = None) -> DownloadOutcome:
        """Fetch the questions and videos into ``directory`` (``sleuth data download``)."""
        from sleuth.errors import ConfigError

        raise ConfigError(f"{self.title} has no downloader: fetch it by hand and pass --data and --videos")

    # ------------------------------------------------------------------ data
    def load(self, source: str | Path | None, videos_dir: str | Path | None) -> "LoadedDataset":
        """Questions from ``source`` (a file, a folder, ``hf://name``; None: the hub dataset)."""
        from eval.dataset import load_records

        if source is None or str(source) == "hub":
            source = self._hub_source()
        return load_records(source, videos_dir, self.normalise)

    def _hub_source(self) -> str:
        from sleuth.errors import ConfigError

        if not self.hub_dataset:
            raise ConfigError(f"{self.title} has no hub dataset: pass --data")
        return f"hf://{self.hub_dataset}"

    def normalise(self, record: Any, index: int, *, videos_dir: Path | None, source: str) -> "Question":
        """One raw record -> a ``Question``; raises ``RowError`` naming the row."""
        raise NotImplementedError

    def row_fields(self, question: "Question") -> dict[str, Any]:
        """Extra fields a result row carries for this benchmark's own scripts and readers."""
        return dict(question.groups)

    def groups_of_row(self, row: "ResultRow") -> dict[str, str]:
        """A result row's groups (what ``row_fields`` put there)."""
        extra = row.model_extra or {}
        return {g.key: str(extra[g.key]) for g in self.groupings if extra.get(g.key)}

    # ------------------------------------------------------------------ the official protocol
    def prompt_names(self, *, cot: bool = False) -> list[str]:
        """The prompt files (under ``prompts/``) the end-to-end protocol sends."""
        raise NotImplementedError

    def build_messages(self, question: "Question", images: list[Any], *, cot: bool = False) -> list["Message"]:
        """The end-to-end request: the question and ``images`` in time order (rendered frames, or HxWx3 uint8
        arrays: see ``frame_renderer``)."""
        raise NotImplementedError

    def frame_renderer(self) -> "Renderer | None":
        """How ``build_messages`` turns each frame into the image it sends (a ``tools.rendering.Renderer``).
        A benchmark that names one gets its frames rendered once per run by the uniform method and kept on
        disk for later runs, and ``build_messages`` receives ``RenderedImage``s (``image_parts`` takes
        either); None: ``build_messages`` receives the decoded HxWx3 uint8 arrays and encodes them itself."""
        return None

    def image_parts(self, images: list[Any]) -> list["ImagePart"]:
        """``images`` as message parts: rendered ones as they are, decoded arrays rendered with ``frame_renderer``."""
        from agent.backends.base import ImagePart
        from tools.rendering import RenderedImage

        renderer = self.frame_renderer()
        if renderer is None:
            raise NotImplementedError(f"{type(self).__name__} renders its frames in build_messages")
        return [ImagePart.from_rendered(image if isinstance(image, RenderedImage) else renderer(image))
                for image in images]

    def generation_settings(self, base: "GenerationSettings") -> "GenerationSettings":
        """What the official protocol sends of temperature and max tokens (default: as given)."""
        return base

    def sample_indices(self, n_frames: int, count: int) -> list[int]:
        """Frame indices of the official uniform sampling (default: ``linspace``, as most protocols)."""
        return np.linspace(0, n_frames - 1, count, dtype=int).tolist()

    # ------------------------------------------------------------------ answers
    def extract(self, text: str, question: "Question", *, strict_official: bool = False) -> Extraction:
        """The answer a free-text reply gives."""
        if self.answer_kind == "number":
            value = parse_number(text)
            return Extraction(value, "number" if value is not None else "none")
        if self.answer_kind == "text":
            return Extraction(text.strip() or None, "text" if text.strip() else "none")
        letter = parse_letter(text)
        return Extraction(letter if letter in question.letters else None, "letter" if letter else "none")

    def score(self, prediction: str | float | None, question_gold: str, kind: AnswerKind | None = None) -> float:
        """This prediction's score against the gold answer, in [0, 1] (choice: 1 if equal)."""
        kind = kind or self.answer_kind
        if prediction is None:
            return 0.0
        if kind == "number":
            gold = parse_number(question_gold)
            value = parse_number(prediction)
            return mean_relative_accuracy(value, gold) if value is not None and gold is not None else 0.0
        if kind == "text":
            return float(str(prediction).strip().casefold() == question_gold.strip().casefold())
        return float(str(prediction) == question_gold)

    def official_fields(self, model: str, raw_response: str, prediction: Any) -> dict[str, Any]:
        """Fields the benchmark's own scoring scripts read from a result row (default: none)."""
        return {}

    # ------------------------------------------------------------------ official result files
    def official_models(self, records: list[Any]) -> list[str]:
        """The models whose answers an official result file of this benchmark holds (none: not one)."""
        return []

    def official_items(self, records: list[Any], model: str, *, extraction: str, source: str) -> tuple[list[Any], list[str]]:
        """(``eval.score.ScoredItem`` per record, invalid-record lines) of an official result file."""
        raise NotImplementedError

    # ------------------------------------------------------------------ results
    def overall_accuracy(self, items: list[Any]) -> float | None:
        """The overall as the paper computes it, from the scored items (status ok); None: the mean score."""
        return None

    def derived_metrics(self, runs: dict[str, tuple[Any, dict[str, Any]]]) -> list[str]:
        """Sentences about several runs together (e.g. a gain between two runs), for reports:
        ``runs`` maps a run's name to its ``Scorecard`` and its ``config.json``."""
        return []
    def group_values(self, grouping: Grouping, present: set[str]) -> list[str]:
        """The values of ``grouping`` a score table lists, in order."""
        if grouping.closed:
            return list(grouping.order)
        known = [v for v in grouping.order if v in present]
        return known + sorted(v for v in present - set(known) if v)

    def headline_groups(self) -> list[tuple[str, str]]:
        """(grouping key, group name) of the summary table's columns, e.g. MMR-V's Implicit and Explicit."""
        return [(g.key, g.labels.get(v, v)) for g in self.groupings if g.headline for v in g.order]


def mean_relative_accuracy(prediction: float, gold: float) -> float:
    """VSI-Bench's MRA, as its official ``utils.py`` computes it: the share of the thresholds
    0.50, 0.55, ..., 0.95 for which ``|pred - gold| / |gold| <= 1 - threshold`` (the paper writes ``<``)."""
    if gold == 0:
        return float(prediction == 0)
    error = abs(prediction - gold) / abs(gold)
    return float(np.mean(error <= 1 - np.linspace(0.5, 0.95, 10)))


REGISTRY: dict[str, type[Benchmark]] = {}


def register_benchmark(cls: type[Benchmark]) -> type[Benchmark]:
    """Class decorator: make ``cls`` available by ``cls.name`` (``--benchmark NAME``)."""
    REGISTRY[cls.name] = cls
    return cls


