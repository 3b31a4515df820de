"""Scoring results files: ours (``results.jsonl``, any benchmark) or MMR-V's official format.

Each row is scored and grouped by its benchmark (``eval.benchmarks``): the
score of a prediction (1 or 0 for a letter; a benchmark may give partial
credit, e.g. mean relative accuracy for numbers) and the groupings its
tables list (MMR-V: Implicit/Explicit, ability type, video type).

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
separately and left out of the accuracy. A question whose gold answer is not
among its options (flag ``gold_not_in_options``) stays in the accuracy, as the
official script keeps it. Intervals are Wilson score 95% intervals.

Nothing is dropped silently: unreadable lines of the results file are
skipped and listed (``Scorecard.corrupt_lines``, e.g. a torn last line of a
killed run), as are the dataset records a run skipped when loading its
questions (``Scorecard.invalid_rows``, from the run's ``config.json``);
``Scorecard.data_notes()`` words them for people.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Literal, NamedTuple

from pydantic import BaseModel, Field, ValidationError

from eval.benchmarks import Benchmark, get_benchmark
from eval.dataset import GOLD_NOT_IN_OPTIONS
from eval.results import CONFIG_FILE, RESULTS_FILE, ResultRow, ScoredItem, first_error, read_result_rows
from eval.stats import mean_ci, wilson_ci
from sleuth.errors import SleuthError

ExtractionMode = Literal["official", "last"]
GroupKind = str  # "overall", or a key of the benchmark's groupings (MMR-V: category, l2, video_type)


class ScoreError(SleuthError):
    """A results file cannot be scored."""


class GroupScore(BaseModel):
    kind: GroupKind
    name: str
    n: int  # questions scored (status ok)
    correct: int  # questions with score 1
    accuracy: float | None  # mean score (for letters: the fraction correct), None when n == 0
    ci_low: float | None = None  # 95% interval: Wilson score for 0/1 scores, else normal approximation
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


class DataNote(NamedTuple):
    """Something about the data a reader of the scores must know, and the lines it is about."""

    text: str
    lines: list[str]


class Scorecard(BaseModel):
    source: str
    format: Literal["sleuth", "official"]
    benchmark: str = "mmr_v"
    model: str = ""
    method: str = ""
    rows: int  # distinct questions read
    errors: int
    extraction_rules: dict[str, int] = Field(default_factory=dict)
    groups: list[GroupScore]
    per_question: PerQuestionCosts
    # dataset records skipped as invalid: the official file's own, or those our run's config.json lists
    invalid_rows: list[str] = Field(default_factory=list)
    corrupt_lines: list[str] = Field(default_factory=list)  # results-file lines that could not be read, skipped
    flags: dict[str, int] = Field(default_factory=dict)  # flag -> scored questions carrying it (all kept in n)
    unseen_evidence: int = 0  # answers citing a moment no model was shown
    forced_answers: int = 0  # answers forced when a budget ran out (agents)

    def data_notes(self) -> list[DataNote]:
        """One sentence per data problem behind these scores, with the lines it concerns."""
        notes = []
        if self.corrupt_lines:
            n = len(self.corrupt_lines)
            notes.append(DataNote(
                f"{_count(n, 'unreadable line')} in the results file {_were(n)} skipped and {_are(n)} not scored",
                self.corrupt_lines,
            ))
        if self.invalid_rows:
            n = len(self.invalid_rows)
            notes.append(DataNote(
                f"{_count(n, 'dataset record')} {_were(n)} skipped as invalid and {_are(n)} not scored",
                self.invalid_rows,
            ))
        if self.unseen_evidence:
            n = self.unseen_evidence
            notes.append(DataNote(
                f"{_count(n, 'answer')} cite{'s' if n == 1 else ''} moments no model was shown (see their traces)", []))
        if self.forced_answers:
            n = self.forced_answers
            notes.append(DataNote(f"{_count(n, 'answer')} {_were(n)} forced when a budget ran out (scored as given)", []))
        for flag, n in self.flags.items():
            if flag == GOLD_NOT_IN_OPTIONS:
                whose = "1 question's gold answer is not among its options" if n == 1 else (
                    f"{n} questions' gold answers are not among their options")
                notes.append(DataNote(f"{whose}; kept, as the official script does", []))
            else:
                notes.append(DataNote(f"{_count(n, 'question')} flagged {flag!r}; kept in the accuracy", []))
        return notes

    def group(self, kind: GroupKind, name: str) -> GroupScore:
        for g in self.groups:
            if g.kind == kind and g.name == name:
                return g
        raise KeyError(f"{kind}:{name}")

    @property
    def overall(self) -> GroupScore:
        return self.group("overall", "Overall")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _were(n: int) -> str:
    return "was" if n == 1 else "were"


def _are(n: int) -> str:
    return "is" if n == 1 else "are"


# --------------------------------------------------------------------------- reading


def read_results_rows(path: Path) -> list[ResultRow]:
    """Rows of a results.jsonl; the last row for each question id wins, in the order of those last rows.

    Strict: a malformed line raises ``ScoreError`` naming it. Scoring
    (``load_items``) skips such lines and lists them instead.
    """
    try:
        rows, problems = read_result_rows(path)
    except SleuthError as exc:
        raise ScoreError(str(exc)) from None
    if problems:
        raise ScoreError(problems[0])
    return list(rows.values())


def _items_from_rows(rows: Iterable[ResultRow], variant: str | None = None) -> list[ScoredItem]:
    """Scored items, each row judged by its benchmark (in the run's protocol ``variant``)."""
    items = []
    benchmarks: dict[str, Benchmark] = {}
    for row in rows:
        benchmark = benchmarks.get(row.benchmark) or benchmarks.setdefault(
            row.benchmark, get_benchmark(row.benchmark, variant))
        ok = row.status == "ok"
        score = _row_score(row, benchmark) if ok else 0.0
        items.append(
            ScoredItem(
                question_id=row.question_id,
                video=row.video,
                benchmark=row.benchmark,
                groups=benchmark.groups_of_row(row),
                gold=row.gold,
                prediction=row.prediction,
                correct=score == 1.0,
                score=score,
                extraction=row.extraction,
                flags=list(row.flags),
                status=row.status,
                error=row.error,
                method=row.method,
                model=row.model,
                frames=row.frames if ok else None,
                tokens=(row.prompt_tokens + row.completion_tokens) if ok else None,
                cost_usd=row.cost_usd if ok else None,
                latency_s=row.latency_s if ok else None,
                unseen_evidence=row.unseen_evidence if ok else 0,
                forced=ok and row.answer_reason == "budget_exhausted",
            )
        )
    return items


def _row_score(row: ResultRow, benchmark: Benchmark) -> float:
    """Scored again from prediction and gold, so that a results file is judged by today's rules."""
    if row.gold is None:
        return float(row.score or 0.0)
    return benchmark.score(row.prediction, row.gold, row.answer_kind)


def _load_json_any(path: Path) -> tuple[list[Any], list[str]]:
    """The records of a JSON list or JSONL file, plus one line per JSONL line that is not JSON (skipped)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".jsonl":
        records, corrupt = [], []
        # only "\n" ends a record: splitlines() would also split at U+2028, which JSON leaves raw in strings
        for number, line in enumerate(text.split("\n"), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    corrupt.append(f"{path}: line {number}: not valid JSON ({exc.msg})")
        return records, corrupt
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScoreError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise ScoreError(f"{path}: expected a list of records")
    return data, []


def _is_sleuth_row(record: Any) -> bool:
    return isinstance(record, dict) and "question_id" in record and "method" in record


def _read_run_config(run_dir: Path) -> dict[str, Any]:
    """A run directory's config.json ({} when there is none)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ScoreError(f"{path}: unreadable run configuration ({exc})") from None
    if not isinstance(config, dict):
        raise ScoreError(f"{path}: unreadable run configuration (not a JSON object)")
    return config


def _sleuth_rows(path: Path, records: list[Any]) -> tuple[list[ResultRow], list[str]]:
    """Our rows (the latest per question, for JSONL) and one line per record that is not a result row."""
    if path.suffix.lower() == ".jsonl":
        latest, problems = read_result_rows(path)
        return list(latest.values()), problems
    rows, problems = [], []
    for index, record in enumerate(records):
        try:
            rows.append(ResultRow.model_validate(record))
        except ValidationError as exc:
            problems.append(f"{path}: record {index}: not a result row ({first_error(exc)})")
    return rows, problems


def load_items(
    path: str | Path, *, model: str | None = None, extraction: ExtractionMode = "official",
    benchmark: str = "mmr_v",
) -> tuple[list[ScoredItem], dict[str, Any]]:
    """Scored items from a results file or run directory, plus facts about the file.

    ``benchmark`` says whose official format a file that is not ours is in.
    Facts: ``format``, ``benchmark``, ``model``, ``method``, ``invalid`` (dataset records
    skipped), ``corrupt`` (lines of the file skipped as unreadable) and, for
    our files, ``config`` (the run's config.json, {} when absent).
    """
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        raise ScoreError(f"{path}: no such results file")
    try:
        records, corrupt = _load_json_any(path)
    except UnicodeDecodeError:
        raise ScoreError(f"{path}: not UTF-8 text") from None
    if not records:
        detail = f" ({_count(len(corrupt), 'unreadable line')}; the first: {corrupt[0]})" if corrupt else ""
        raise ScoreError(f"{path}: no records{detail}")
    # any row, not the first: the first line may be the corrupt one
    if any(_is_sleuth_row(r) for r in records):
        # read again as result rows, which also names the lines that are JSON but not rows
        rows, corrupt = _sleuth_rows(path, records)
        if not rows:
            raise ScoreError(f"{path}: no readable result rows ({_count(len(corrupt), 'unreadable line')}; "
                             f"the first: {corrupt[0]})")
        if model:
            rows = [r for r in rows if r.model == model]
            if not rows:
                raise ScoreError(f"{path}: no rows for model {model!r}")
        # a run directory's results.jsonl sits next to its config.json
        config = _read_run_config(path.parent)
        variant = config.get("variant") if isinstance(config.get("variant"), str) else None
        items = _items_from_rows(rows, variant)
        models = sorted({r.model for r in rows if r.model})
        methods = sorted({r.method for r in rows})
        invalid = config.get("invalid_rows")
        return items, {
            "format": "sleuth",
            "benchmark": rows[0].benchmark,
            "variant": variant,
            "model": ", ".join(models),
            "method": ", ".join(methods),
            "invalid": [str(line) for line in invalid] if isinstance(invalid, list) else [],
            "corrupt": corrupt,
            "config": config,
        }

    bench = get_benchmark(benchmark)
    available = bench.official_models(records)
    if model is None:
        if len(available) != 1:
            found = ", ".join(available) if available else "none"
            raise ScoreError(f"{path}: pass --model to say whose responses to score (models found: {found})")
        model = available[0]
    elif model not in available:
        found = ", ".join(available) if available else "none"
        raise ScoreError(f"{path}: no answers of model {model!r} in this file (models found: {found})")
    try:
        items, invalid = bench.official_items(records, model, extraction=extraction, source=str(path))
    except NotImplementedError:
        raise ScoreError(f"{path}: sleuth does not read {bench.title}'s official result files") from None
    return items, {"format": "official", "benchmark": benchmark, "model": model, "method": "", "invalid": invalid,
                   "corrupt": corrupt}


# --------------------------------------------------------------------------- scoring


def _group_score(kind: GroupKind, name: str, items: list[ScoredItem]) -> GroupScore:
    scored = [i for i in items if i.status == "ok"]
    scores = [i.score for i in scored]
    correct = sum(1 for v in scores if v == 1.0)
    binary = all(v in (0.0, 1.0) for v in scores)
    ci = wilson_ci(correct, len(scored)) if binary else mean_ci(scores)
    return GroupScore(
        kind=kind,
        name=name,
        n=len(scored),
        correct=correct,
        accuracy=(sum(scores) / len(scored)) if scored else None,
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
    benchmark = get_benchmark(facts.get("benchmark") or (items[0].benchmark if items else "mmr_v"), facts.get("variant"))
    groups = [_group_score("overall", "Overall", items)]
    paper_overall = benchmark.overall_accuracy([i for i in items if i.status == "ok"])
    if paper_overall is not None:  # e.g. a mean of task means: no interval of a proportion applies
        groups[0] = groups[0].model_copy(update={"accuracy": paper_overall, "ci_low": None, "ci_high": None})
    for grouping in benchmark.groupings:
        present = {i.groups.get(grouping.key, "") for i in items}
        for value in benchmark.group_values(grouping, present):
            members = [i for i in items if i.groups.get(grouping.key) == value]
            groups.append(_group_score(grouping.key, grouping.labels.get(value, value), members))

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
        benchmark=benchmark.name,
        model=facts.get("model", ""),
        method=facts.get("method", ""),
        rows=len(items),
        errors=sum(1 for i in items if i.status == "error"),
        extraction_rules=dict(sorted(rules.items())),
        groups=groups,
        per_question=per_question,
        invalid_rows=list(facts.get("invalid", [])),
        corrupt_lines=list(facts.get("corrupt", [])),
        flags=dict(sorted(Counter(flag for i in ok for flag in set(i.flags)).items())),
        unseen_evidence=sum(1 for i in ok if i.unseen_evidence),
        forced_answers=sum(1 for i in ok if i.forced),
    )


def score_file(
    path: str | Path, *, model: str | None = None, extraction: ExtractionMode = "official", benchmark: str = "mmr_v"
) -> Scorecard:
    """Score one results file (ours or official) or run directory."""
    items, facts = load_items(path, model=model, extraction=extraction, benchmark=benchmark)
    return score_items(items, source=str(path), facts=facts)
