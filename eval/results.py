"""One evaluation row per question, and the layout of a run directory.

A run directory holds:

- ``config.json``   the full configuration (models, budgets, prompt hashes, versions; never API keys)
- ``results.jsonl`` one ``ResultRow`` per finished question, appended and flushed as each finishes
- ``traces/``       one reasoning-graph JSON per question (agent method), named ``<question_id>.json``

Rows also carry MMR-V's official fields (``<model>_raw_response`` and
``<model>_response: {"final_answer": X}``) as extra keys, so MMR-V's own
scoring scripts can read them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sleuth.errors import SleuthError

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.jsonl"
TRACES_DIR = "traces"


class ResultRow(BaseModel):
    # The benchmark's own fields ride along as extras: its grouping values (MMR-V: video_type, l2,
    # l3, category) and the fields its official scripts read (MMR-V: <model>_raw_response, ...).
    model_config = ConfigDict(extra="allow")

    question_id: str
    video: str
    question: str = ""
    options: list[str] = Field(default_factory=list)
    gold: str | None = None
    answer_kind: Literal["choice", "number", "text"] = "choice"
    benchmark: str = "mmr_v"  # rows written before benchmarks were named are MMR-V's
    flags: list[str] = Field(default_factory=list)  # e.g. "gold_not_in_options": kept and scored as the official script does

    method: str  # "agent" | "uniform"
    model: str = ""
    status: Literal["ok", "error"] = "ok"
    error: str | None = None  # one-line reason when status == "error"
    error_kind: str | None = None  # what failed: connection, auth, not_found, timeout, deadline, video, ...
    prediction: str | float | None = None  # a letter, a number or a text; None: no answer / extraction failed
    correct: bool = False  # the score is 1
    score: float | None = None  # in [0, 1] (choice: 0 or 1; numbers: e.g. mean relative accuracy); None: error
    extraction: str | None = None  # which rule produced the letter: brackets | boxed | letter | tool | none
    raw_response: str = ""

    frames: int = 0  # frames shown to the model
    pixels: int = 0  # width x height summed over every image sent to a model (a contact sheet counts once)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    latency_s: float = 0.0
    trace: str | None = None  # path relative to the run directory
    unseen_evidence: int = 0  # cited moments no model was shown (an agent's answer resting on frames it never saw)
    answer_reason: str | None = None  # agents: "answered", or "budget_exhausted" when a budget forced the answer


def first_error(exc: ValidationError, whole: str = "row") -> str:
    """The first validation problem on one line: ``field: message`` (``whole`` when no field is named)."""
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err.get("loc", ())) or whole
    return f"{where}: {err.get('msg', 'invalid')}"


def read_result_rows(path: Path) -> tuple[dict[str, ResultRow], list[str]]:
    """Question id -> its latest row (a later row supersedes an earlier one; order follows
    the newest rows), plus one line per line that is not a result row.

    Callers decide what a bad line means: scoring and the run browser skip
    it, say so and use the rest; resuming a run sets it aside (``eval.runner``).
    """
    rows: dict[str, ResultRow] = {}
    problems: list[str] = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SleuthError(f"{path}: cannot read results ({exc})") from None
    # only "\n" ends a row: splitlines() would also split at U+2028 or U+0085, which JSON leaves raw in strings
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = ResultRow.model_validate(json.loads(line))
        except json.JSONDecodeError as exc:
            # every row is written with its newline, so a non-empty text after the last one is a write cut short
            torn = number == len(lines)
            hint = "; cut short, the run was probably stopped while writing it" if torn else ""
            problems.append(f"{path}: line {number}: not valid JSON ({exc.msg}){hint}")
            continue
        except ValidationError as exc:
            problems.append(f"{path}: line {number}: not a result row ({first_error(exc)})")
            continue
        rows.pop(row.question_id, None)
        rows[row.question_id] = row
    return rows, problems


class ScoredItem(BaseModel):
    """One question's outcome, whatever file it came from."""

    question_id: str
    video: str = ""
    benchmark: str = "mmr_v"
    groups: dict[str, str] = Field(default_factory=dict)  # grouping key -> value, e.g. {"l2": "Causal Reasoning"}
    gold: str | None = None
    prediction: str | float | None = None
    correct: bool = False
    score: float = 0.0  # in [0, 1]
    extraction: str | None = None  # stored | brackets | boxed | letter | none | tool | ...
    flags: list[str] = Field(default_factory=list)  # data problems kept on purpose, e.g. "gold_not_in_options"
    status: Literal["ok", "error"] = "ok"
    error: str | None = None
    method: str = ""
    model: str = ""
    frames: int | None = None
    tokens: int | None = None
    cost_usd: float | None = None
    latency_s: float | None = None
    unseen_evidence: int = 0  # cited moments no model was shown
    forced: bool = False  # a budget ran out and the answer was forced
