"""A grid of runs from one file: methods, strategies and budgets over the same questions and model.

A grid file (YAML or JSON)::

    out: runs/grid                 # each run in out/<name>, the report in out/report
    base:                          # settings every run shares, as in ``sleuth eval --config``
      benchmark: mmr_v
      data: questions.json
      videos: videos/
      backend: {model: gpt-4o-mini, base_url: http://localhost:8000/v1}
    grid:                          # each entry is one or more runs; a list value means one run per value
      - {method: uniform, frames: [8, 16, 32]}
      - {method: agent, strategy: [planner, captions, confidence], frames: 16}
      - {method: agent, strategy: planner, frames: 16, agent.answer_rule: elimination}

Dotted keys set nested settings (``agent.answer_rule``). Every run is an
ordinary ``sleuth eval`` run with its own directory: it resumes, and its
specification is written to ``out/specs/<name>.yaml`` before it starts.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from eval.results import first_error
from eval.spec import load_spec_file, merge
from sleuth.errors import ConfigError

SPECS_DIR = "specs"
REPORT_DIR = "report"


class GridFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    out: Path = Field(description="each run goes in out/<name>; the report in out/report")
    base: dict[str, Any] = Field(default_factory=dict, description="settings shared by every run")
    grid: list[dict[str, Any]] = Field(min_length=1, description="entries; a list value means one run per value")


@dataclass
class GridRun:
    name: str
    values: dict[str, Any]  # a complete ``--config`` mapping for this run

    @property
    def out(self) -> Path:
        return Path(self.values["out"])


def load_grid(path: Path) -> GridFile:
    data = load_spec_file(path)
    try:
        return GridFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: invalid grid setting {first_error(exc, 'grid')}") from None


def _nested(key: str, value: Any) -> dict[str, Any]:
    """``agent.answer_rule: x`` as ``{"agent": {"answer_rule": x}}``."""
    head, _, rest = key.partition(".")
    return {head: _nested(rest, value) if rest else value}


def _name(settings: dict[str, Any]) -> str:
    """A readable, unique-per-setting directory name: method, strategy, frames, then every other setting
    the entry gives (so that two entries naming the same settings name the same run)."""
    parts = [str(settings.get("method", "uniform"))]
    if settings.get("method", "uniform") != "uniform":
        parts.append(str(settings.get("strategy", "planner")))
    if "frames" in settings:
        parts.append(f"f{settings['frames']}")
    parts += [f"{key.rsplit('.', 1)[-1]}-{value}" for key, value in settings.items()
              if key not in ("method", "strategy", "frames")]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(parts))


def expand(grid: GridFile) -> list[GridRun]:
    """Every run the grid names, in file order; two entries naming the same run are one run."""
    runs: dict[str, GridRun] = {}
    for entry in grid.grid:
        keys = list(entry)
        choices = [value if isinstance(value, list) else [value] for value in entry.values()]
        for combo in itertools.product(*choices):
            settings = dict(zip(keys, combo))
            values = dict(grid.base)
            for key, value in settings.items():
                values = merge(values, _nested(key, value))
            name = _name(settings)
            values["out"] = str(Path(grid.out) / name)
            runs.setdefault(name, GridRun(name, values))
    return list(runs.values())


def write_run_spec(grid: GridFile, run: GridRun) -> Path:
    """The run's ``--config`` file, in out/specs/<name>.yaml."""
    import yaml

    path = Path(grid.out) / SPECS_DIR / f"{run.name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(run.values, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path
