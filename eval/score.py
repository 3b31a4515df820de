"""Scoring results files: ours (``results.jsonl``) or MMR-V's official format.

Official format: a JSON list (or JSONL) of benchmark records, each with
``<model>_raw_response`` and usually ``<model>_response: {"final_answer": X}``.
The stored ``final_answer`` is used when present, as the authors' scoring
does. When it is missing, the letter is extracted from the raw response with
the official script's rules by default (``extraction="official"``: the FIRST
``[[X]]``, then ``\\boxed{X}``, then the last standalone letter of the
upper-cased reply). That is the rule the published ``final_answer`` values
were produced with: on the 61 public sample records it reproduces every one
of them, including replies that echo the format instruction (``"[[A]]" or
"[[B]]" ...``) before their real answer, which the authors' files score as
``A``. ``extraction="last"`` uses sleuth's own rule instead (the last
``[[X]]``, letters the question offers), which reads those replies' real answer.

Official files are scored record by record, as they are (a record that
appears twice counts twice). Our ``results.jsonl`` is read with later rows
superseding earlier ones for the same question. Accuracy is over the
questions that ran (``status == "ok"``); an unreadable answer counts as wrong
and as an extraction failure; error rows (e.g. a missing video) are counted
separately and left out of the accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Literal

from pydantic import BaseModel, Field, ValidationError

from eval.categories import ALL_L2
from eval.dataset import RowError, normalise_record, parse_answer_letter
from eval.extract import extract_answer
from eval.results import RESULTS_FILE, ResultRow, read_result_rows
from eval.stats import bootstrap_ci
from sleuth.errors import SleuthError

ExtractionMode = Literal["official", "last"]
GroupKind = Literal["overall", "category", "l2", "video_type"]

RAW_SUFFIX = "_raw_response"
ANSWER_SUFFIX = "_response"


class ScoreError(SleuthError):
    """A results file cannot be scored."""


class ScoredItem(BaseModel):
    """One question's outcome, whatever file it came from."""

    question_id: str
    video: str = ""
    video_type: str = ""
    l2: str = ""
    l3: str = ""
    category: str = "unknown"
    gold: str | None = None
    prediction: str | None = None
    correct: bool = False
    extraction: str | None = None  # stored | brackets | boxed | letter | none | tool | ...
    status: Literal["ok", "error"] = "ok"
    error: str | None = None
    method: str = ""
    model: str = ""
    frames: int | None = None
    tokens: int | None = None
    cost_usd: float | None = None
    latency_s: float | None = None


class GroupScore(BaseModel):
    kind: GroupKind
    name: str
    n: int  # questions scored (status ok)
    correct: int
    accuracy: float | None  # fraction, None when n == 0
    ci_low: float | None = None
    ci_high: float | None = None
    extraction_failures: int = 0
    errors: int = 0  # error rows in this group, not in n


class PerQuestionCosts(BaseModel):
    """Means over the scored questions where the quantity is known (None: never known)."""

    frames: float | None = None
    tokens: float | None = None
    cost_usd: float | None = None
    latency_s: float | None = None
    total_cost_usd: float | None = None


class Scorecard(BaseModel):
    source: str
    format: Literal["sleuth", "official"]
    model: str = ""
    method: str = ""
    rows: int  # distinct questions read
    errors: int
    extraction_rules: dict[str, int] = Field(default_factory=dict)
    groups: list[GroupScore]
    per_question: PerQuestionCosts
    invalid_rows: list[str] = Field(default_factory=list)  # one line per unreadable record

    def group(self, kind: GroupKind, name: str) -> GroupScore:
        for g in self.groups:
            if g.kind == kind and g.name == name:
                return g
        raise KeyError(f"{kind}:{name}")

    @property
    def overall(self) -> GroupScore:
        return self.group("overall", "Overall")


# --------------------------------------------------------------------------- reading


def read_results_rows(path: Path) -> list[ResultRow]:
    """Rows of a results.jsonl; the last row for each question id wins, in first-seen order.

    A malformed line raises ``ScoreError`` naming it.
    """
    try:
        rows, problems = read_result_rows(path)
    except SleuthError as exc:
        raise ScoreError(str(exc)) from None
    if problems:
        raise ScoreError(problems[0])
    return list(rows.values())


def _items_from_rows(rows: Iterable[ResultRow]) -> list[ScoredItem]:
    items = []
    for row in rows:
        ok = row.status == "ok"
        items.append(
            ScoredItem(
                question_id=row.question_id,
                video=row.video,
                video_type=row.video_type,
                l2=row.l2,
                l3=row.l3,
                category=row.category,
                gold=row.gold,
                prediction=row.prediction,
                correct=bool(ok and row.prediction is not None and row.prediction == row.gold),
                extraction=row.extraction,
                status=row.status,
                error=row.error,
                method=row.method,
                model=row.model,
                frames=row.frames if ok else None,
                tokens=(row.prompt_tokens + row.completion_tokens) if ok else None,
                cost_usd=row.cost_usd if ok else None,
                latency_s=row.latency_s if ok else None,
            )
        )
    return items


def detect_models(records: list[dict[str, Any]]) -> list[str]:
    """Model names that have ``<model>_raw_response`` fields in official records."""
    names: set[str] = set()
    for record in records:
        if isinstance(record, dict):
            names.update(k[: -len(RAW_SUFFIX)] for k in record if k.endswith(RAW_SUFFIX) and len(k) > len(RAW_SUFFIX))
    return sorted(names)


def _items_from_official(
    records: list[Any], model: str, extraction: ExtractionMode, source: str
) -> tuple[list[ScoredItem], list[str]]:
    items: list[ScoredItem] = []
    invalid: list[str] = []
    raw_key, answer_key = f"{model}{RAW_SUFFIX}", f"{model}{ANSWER_SUFFIX}"
    for index, record in enumerate(records):
        try:
            question = normalise_record(record, index, source=source)
        except RowError as exc:
            invalid.append(str(exc))
            continue
        stored = record.get(answer_key)
        raw = record.get(raw_key)
        prediction: str | None = None
        if isinstance(stored, dict) and stored.get("final_answer") is not None:
            prediction, rule = parse_answer_letter(str(stored["final_answer"])), "stored"
            if prediction is None:
                rule = "none"
        elif isinstance(raw, str):
            found = extract_answer(raw, question.letters, strict_official=(extraction == "official"))
            prediction, rule = found.letter, found.rule
        else:
            prediction, rule = None, "none"
        items.append(
            ScoredItem(
                question_id=question.question_id,
                video=question.video,
                video_type=question.video_type,
                l2=question.l2,
                l3=question.l3,
                category=question.category,
                gold=question.answer,
                prediction=prediction,
                correct=prediction == question.answer,
                extraction=rule,
                model=model,
            )
        )
    return items, invalid


def _load_json_any(path: Path) -> list[Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".jsonl":
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ScoreError(f"{path}: line {number}: not valid JSON ({exc.msg})") from None
        return records
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScoreError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise ScoreError(f"{path}: expected a list of records")
    return data


def _is_sleuth_row(record: Any) -> bool:
    return isinstance(record, dict) and "question_id" in record and "method" in record


def load_items(
    path: str | Path, *, model: str | None = None, extraction: ExtractionMode = "official"
) -> tuple[list[ScoredItem], dict[str, Any]]:
    """Scored items from a results file or run directory, plus facts about the file."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        raise ScoreError(f"{path}: no such results file")
    try:
        records = _load_json_any(path)
    except UnicodeDecodeError:
        raise ScoreError(f"{path}: not UTF-8 text") from None
    if not records:
        raise ScoreError(f"{path}: no records")
    if _is_sleuth_row(records[0]):
        rows = read_results_rows(path) if path.suffix.lower() == ".jsonl" else [ResultRow.model_validate(r) for r in records]
        if model:
            rows = [r for r in rows if r.model == model]
            if not rows:
                raise ScoreError(f"{path}: no rows for model {model!r}")
        items = _items_from_rows(rows)
        models = sorted({r.model for r in rows if r.model})
        methods = sorted({r.method for r in rows})
        return items, {"format": "sleuth", "model": ", ".join(models), "method": ", ".join(methods), "invalid": []}

    available = detect_models(records)
    if model is None:
        if len(available) != 1:
            found = ", ".join(available) if available else "none"
            raise ScoreError(f"{path}: pass --model to say whose responses to score (models found: {found})")
        model = available[0]
    elif model not in available:
        found = ", ".join(available) if available else "none"
        raise ScoreError(f"{path}: no '{model}{RAW_SUFFIX}' field in any record (models found: {found})")
    items, invalid = _items_from_official(records, model, extraction, str(path))
    return items, {"format": "official", "model": model, "method": "", "invalid": invalid}


# --------------------------------------------------------------------------- scoring


def _group_score(kind: GroupKind, name: str, items: list[ScoredItem]) -> GroupScore:
    scored = [i for i in items if i.status == "ok"]
    outcomes = [i.correct for i in scored]
    ci = bootstrap_ci(outcomes)
    return GroupScore(
        kind=kind,
        name=name,
        n=len(scored),
        correct=sum(outcomes),
        accuracy=(sum(outcomes) / len(scored)) if scored else None,
        ci_low=ci[0] if ci else None,
        ci_high=ci[1] if ci else None,
        extraction_failures=sum(1 for i in scored if i.prediction is None),
        errors=sum(1 for i in items if i.status == "error"),
    )


def _mean(values: list[float | int | None]) -> float | None:
    known = [float(v) for v in values if v is not None]
    return sum(known) / len(known) if known else None


def score_items(items: list[ScoredItem], *, source: str = "", facts: dict[str, Any] | None = None) -> Scorecard:
    facts = facts or {}
    groups = [_group_score("overall", "Overall", items)]
    for category, label in (("implicit", "Implicit"), ("explicit", "Explicit")):
        groups.append(_group_score("category", label, [i for i in items if i.category == category]))
    l2_names = [n for n in ALL_L2 if any(i.l2 == n for i in items)]
    l2_names += sorted({i.l2 for i in items if i.l2 and i.l2 not in ALL_L2})
    for name in l2_names:
        groups.append(_group_score("l2", name, [i for i in items if i.l2 == name]))
    for name in sorted({i.video_type for i in items if i.video_type}):
        groups.append(_group_score("video_type", name, [i for i in items if i.video_type == name]))

    ok = [i for i in items if i.status == "ok"]
    rules: dict[str, int] = {}
    for item in ok:
        rules[item.extraction or "none"] = rules.get(item.extraction or "none", 0) + 1
    costs = [i.cost_usd for i in ok]
    per_question = PerQuestionCosts(
        frames=_mean([i.frames for i in ok]),
        tokens=_mean([i.tokens for i in ok]),
        cost_usd=_mean(costs),
        latency_s=_mean([i.latency_s for i in ok]),
        # a total is only honest when every question's price is known
        total_cost_usd=sum(c for c in costs if c is not None) if ok and all(c is not None for c in costs) else None,
    )
    return Scorecard(
        source=source,
        format=facts.get("format", "sleuth"),
        model=facts.get("model", ""),
        method=facts.get("method", ""),
        rows=len(items),
        errors=sum(1 for i in items if i.status == "error"),
        extraction_rules=dict(sorted(rules.items())),
        groups=groups,
        per_question=per_question,
        invalid_rows=list(facts.get("invalid", [])),
    )


def score_file(path: str | Path, *, model: str | None = None, extraction: ExtractionMode = "official") -> Scorecard:
    """Score one results file (ours or official) or run directory."""
    items, facts = load_items(path, model=model, extraction=extraction)
    return score_items(items, source=str(path), facts=facts)
