"""The reasoning graph: a versioned, JSON-serialisable record of one agent run.

Nodes are the steps (question, overview, thought, tool call, observation,
answer); edges say what followed what (``next``), which observation prompted
which call (``prompted``) and which observations the answer cites as
``evidence``. One ``Trace`` is written per question; viewers (``sleuth trace``)
and the evaluation runner read it back with ``Trace.load``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# JSON has no NaN or infinity: a trace holding one could be saved but never loaded again.
_FINITE = ConfigDict(allow_inf_nan=False)

TRACE_VERSION = 1

FrameSource = Literal["overview", "search", "view", "resample", "caption"]
# "captions": a caption memory (the captions strategy); "judgement": a model call that rates what it has
# (the confidence strategy's answer with its confidence)
NodeKind = Literal["question", "overview", "captions", "thought", "tool_call", "observation", "judgement", "answer"]
Verdict = Literal["supported", "refuted", "unknown"]
EdgeKind = Literal["next", "evidence", "prompted"]


class FrameRef(BaseModel):
    """A frame the agent saw (or was offered, for search hits)."""

    model_config = _FINITE

    t: float  # seconds from the start of the video
    source: FrameSource
    score: float | None = None  # CLIP similarity, for search hits
    shown: bool = True  # False: a search hit listed as text, not shown as an image
    thumb: str | None = None  # small JPEG data URL, for viewers


class OptionVerdict(BaseModel):
    """What the model concluded about one option, and the moments that conclusion rests on."""

    model_config = _FINITE

    option: str  # the option's letter
    verdict: Verdict
    times: list[float] = Field(default_factory=list)  # seconds: the frames behind the verdict
    note: str = ""


class Caption(BaseModel):
    """One segment of a caption memory: what a model said the video shows between start and end."""

    model_config = _FINITE

    start: float
    end: float
    text: str
    frames: int = 0  # frames the captioning model was shown for it (counted against the budget, cached or not)
    times: list[float] = Field(default_factory=list)  # where those frames were taken (seconds)
    pixels: int = 0  # width x height summed over those frames as the model got them
    cached: bool = False  # read from the caption cache rather than made in this run


class TokenUsage(BaseModel):
    prompt: int = 0
    completion: int = 0

    @property
    def total(self) -> int:
        return self.prompt + self.completion


class Node(BaseModel):
    model_config = _FINITE

    id: str  # "n0", "n1", ...
    kind: NodeKind
    step: int  # planning step that produced it (0 = before the first model call)
    text: str = ""
    tool: str | None = None  # tool_call / observation nodes
    arguments: dict[str, Any] | None = None  # tool_call nodes: what the model asked for
    frames: list[FrameRef] = Field(default_factory=list)
    tokens: TokenUsage | None = None  # model-call nodes
    latency_s: float | None = None
    cost_usd: float | None = None
    error: str | None = None  # what went wrong at this step, as the model was told
    verdicts: list[OptionVerdict] = Field(default_factory=list)  # option verdicts recorded at this step
    confidence: int | None = None  # judgement nodes: the model's confidence, 1 (guess) to 3 (sure)
    captions: list[Caption] = Field(default_factory=list)  # captions nodes: the caption memory


class Edge(BaseModel):
    source: str
    target: str
    kind: EdgeKind


class FinalAnswer(BaseModel):
    model_config = _FINITE

    option: str | None  # choice questions: a letter of the options, or None: no answer (counts as wrong)
    kind: Literal["choice", "number", "text"] = "choice"
    value: float | str | None = None  # number and text questions: the answer given
    rationale: str = ""
    evidence: list[float] = Field(default_factory=list)  # timestamps cited
    reason: str = "answered"  # answered | budget_exhausted | no_answer | invalid_letter | error
    error_kind: str | None = None  # reason "error": what failed (connection, auth, deadline, tool_unavailable, ...)
    gold: str | None = None
    correct: bool | None = None  # None when the gold answer is unknown
    unseen_evidence: list[float] = Field(default_factory=list)  # cited times with no frame a model was shown
    verdicts: list[OptionVerdict] = Field(default_factory=list)  # the option verdicts standing at the end
    confidence: int | None = None  # the last confidence the model gave (confidence strategy)

    def given(self) -> str | float | None:
        """The answer given, whatever its kind."""
        return self.option if self.kind == "choice" else self.value


class Totals(BaseModel):
    model_config = _FINITE

    steps: int = 0
    model_calls: int = 0
    frames_shown: int = 0
    pixels_shown: int = 0  # width x height summed over every image sent to a model (a contact sheet once)
    tokens: TokenUsage = Field(default_factory=TokenUsage)
    cost_usd: float | None = None  # None when any call's price is unknown
    latency_s: float = 0.0


class Trace(BaseModel):
    version: int = TRACE_VERSION
    question_id: str
    video: str  # path as given
    duration_s: float | None = None
    question: str
    options: list[str]  # "(A) text", ...
    settings: dict[str, Any] = Field(default_factory=dict)  # budgets, perception mode, index settings
    models: dict[str, str] = Field(default_factory=dict)  # role -> model name ("planner", "perception", "clip")
    prompts: dict[str, str] = Field(default_factory=dict)  # prompt name -> sha256
    nodes: list[Node] = Field(default_factory=list)
    edges: list[Edge] = Field(default_factory=list)
    answer: FinalAnswer | None = None
    totals: Totals = Field(default_factory=Totals)
    created_at: str = Field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat())
    labels: list[str] = Field(default_factory=list)  # e.g. ["random-weights", "offline-demo"]

    # ------------------------------------------------------------------ helpers
    def node(self, node_id: str) -> Node:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def frames(self) -> list[FrameRef]:
        """Every frame the run touched, in step order."""
        return [f for n in self.nodes for f in n.frames]

    def save(self, path: str | Path) -> Path:
        """Write atomically (temp file + rename): a crash never leaves half a trace. Credentials that
        reached a message (a URL with a password in an error) are masked."""
        from sleuth.redact import redact_value

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(redact_value(self.model_dump(mode="json")), indent=1, ensure_ascii=False)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".trace-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Trace":
        from sleuth.errors import SleuthError

        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SleuthError(f"{path}: trace file not found") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise SleuthError(f"{path}: not a readable JSON trace ({exc})") from None
        version = data.get("version")
        if version != TRACE_VERSION:
            raise SleuthError(f"{path}: trace version {version!r}, this sleuth reads version {TRACE_VERSION}")
        return cls.model_validate(data)

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        return cls.model_json_schema()
