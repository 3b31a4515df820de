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

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.jsonl"
TRACES_DIR = "traces"


class ResultRow(BaseModel):
    model_config = ConfigDict(extra="allow")  # official MMR-V fields ride along

    question_id: str
    video: str
    video_type: str = ""
    l2: str = ""  # abilityType_L2
    l3: str = ""  # abilityType_L3
    category: Literal["implicit", "explicit", "unknown"] = "unknown"
    question: str = ""
    options: list[str] = Field(default_factory=list)
    gold: str | None = None

    method: str  # "agent" | "uniform"
    model: str = ""
    status: Literal["ok", "error"] = "ok"
    error: str | None = None  # one-line reason when status == "error"
    prediction: str | None = None  # a letter, or None (no answer / extraction failed)
    correct: bool = False
    extraction: str | None = None  # which rule produced the letter: brackets | boxed | letter | tool | none
    raw_response: str = ""

    frames: int = 0  # frames shown to the model
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    latency_s: float = 0.0
    trace: str | None = None  # path relative to the run directory
