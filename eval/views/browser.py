"""The run browser: an index of every question in one or more run directories.

``write_run_browser(run_dirs, out_dir)`` writes ``out_dir/index.html`` (a
summary per run, and a sortable, filterable table with one row per question
and a column per run), one trace page per question that has a trace
(``traces/<run>/<question>.html``) and, where runs share a question (say
agent and uniform baseline), a side-by-side page (``compare/<question>.html``)
with every run's frames on one time axis. Malformed rows and unreadable
traces are listed on the index page; the rest is written regardless.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agent.trace import Trace
from eval.benchmarks import Benchmark, get_benchmark
from eval.results import CONFIG_FILE, RESULTS_FILE, TRACES_DIR, ResultRow, first_error, read_result_rows
from eval.views.analysis import verdict
from eval.views.frame_axis import VideoFacts, facts_from_file, facts_from_trace, shared_axis, video_file_of
from eval.views.html import fill_missing_thumbnails, render_trace_html, template_env, timeline_context
from eval.views.labels import config_labels, run_labels, trace_labels
from sleuth.errors import SleuthError

INDEX_FILE = "index.html"
TRACE_PAGES_DIR = "traces"
COMPARE_DIR = "compare"


@dataclass
class RunData:
    """One run directory as read from disk."""

    path: Path
    label: str
    config: dict[str, Any]
    rows: dict[str, ResultRow]  # question_id -> latest row
    problems: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- reading


def read_results(path: Path) -> tuple[dict[str, ResultRow], list[str]]:
    """Rows by question id (a later row for the same question supersedes an earlier one) and problems found."""
    return read_result_rows(path)


def load_run(run_dir: Path, label: str | None = None) -> RunData:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise SleuthError(f"{run_dir}: not a run directory (it does not exist or is not a folder)")
    results = run_dir / RESULTS_FILE
    if not results.is_file():
        raise SleuthError(f"{run_dir}: no {RESULTS_FILE} in it; is this a run directory?")
    problems: list[str] = []
    config: dict[str, Any] = {}
    config_path = run_dir / CONFIG_FILE
    if config_path.is_file():
        try:
            loaded = json.loads(config_path.read_text(encoding="utf-8"))
            config = loaded if isinstance(loaded, dict) else {}
        except (OSError, json.JSONDecodeError) as exc:
            problems.append(f"{config_path}: unreadable ({exc})")
    rows, row_problems = read_results(results)
    return RunData(path=run_dir, label=label or run_dir.name, config=config, rows=rows, problems=problems + row_problems)


def trace_path(run: RunData, row: ResultRow) -> Path | None:
    """Where the row's trace lives, if it has one on disk."""
    if row.trace:
        candidate = Path(row.trace)
        return candidate if candidate.is_absolute() else run.path / candidate
    fallback = run.path / TRACES_DIR / f"{row.question_id}.json"
    return fallback if fallback.is_file() else None


def load_trace(path: Path) -> Trace:
    try:
        return Trace.load(path)
    except ValidationError as exc:
        raise SleuthError(f"{path}: not a valid trace ({first_error(exc)})") from None


# --------------------------------------------------------------------------- naming


def safe_name(text: str) -> str:
    """A file name for a question id or run label; ids that need changing get a short hash to stay unique."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "item"
    if cleaned == text:
        return text
    return f"{cleaned[:80]}-{hashlib.sha1(text.encode('utf-8')).hexdigest()[:8]}"


def _unique_labels(run_dirs: list[Path]) -> list[str]:
    labels: list[str] = []
    seen: Counter[str] = Counter()
    for path in run_dirs:
        base = Path(path).resolve().name or "run"
        seen[base] += 1
        labels.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return labels


def _natural_key(text: str) -> list[Any]:
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text) if part]


# --------------------------------------------------------------------------- summaries


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _score(row: ResultRow) -> float:
    """A row's score in [0, 1] (rows written before scores were recorded: 1 when correct)."""
    return row.score if row.score is not None else float(row.correct)


def _benchmark_of(runs: list[RunData]) -> Benchmark:
    names = sorted({row.benchmark for run in runs for row in run.rows.values()}) or ["mmr_v"]
    return get_benchmark(names[0])


def run_summary(run: RunData, benchmark: Benchmark | None = None, traces: list[Trace] | None = None) -> dict[str, Any]:
    """One run's headline figures and labels. Like ``sleuth score`` and the report, error rows
    (a missing video, a failed server) are counted apart and left out of the accuracy."""
    benchmark = benchmark or _benchmark_of([run])
    rows = list(run.rows.values())
    answered = [r for r in rows if r.status != "error"]
    headline = []
    for grouping in benchmark.groupings:
        if not grouping.headline:
            continue
        for value in grouping.order:
            subset = [r for r in answered if benchmark.groups_of_row(r).get(grouping.key) == value]
            accuracy = _mean([_score(r) for r in subset])
            headline.append((grouping.labels.get(value, value), accuracy))
    costs = [r.cost_usd for r in answered if r.cost_usd is not None]
    methods = sorted({r.method for r in rows})
    models = sorted({r.model for r in rows if r.model})
    return {
        "label": run.label,
        "labels": run_labels(run.config, traces or []),
        "path": str(run.path),
        "method": (", ".join(methods) or str(run.config.get("method", ""))) + _strategy_note(run.config),
        "model": ", ".join(models) or str(run.config.get("model", "")),
        "questions": len(rows),
        "correct": sum(r.correct for r in answered),
        "accuracy": _mean([_score(r) for r in answered]),  # the mean score: partial credit counts, as in score
        "headline": headline,
        "errors": len(rows) - len(answered),
        "mean_frames": _mean([r.frames for r in answered]),
        "tokens": sum(r.prompt_tokens + r.completion_tokens for r in rows),
        "cost": sum(costs) if costs else None,
        "unpriced": sum(r.cost_usd is None for r in answered),
        "mean_latency": _mean([r.latency_s for r in answered]),
    }


def _strategy_note(config: dict[str, Any]) -> str:
    """`` (captions)``: the agent strategy a run used, so runs of one method tell apart."""
    settings = config.get("method_settings") if isinstance(config.get("method_settings"), dict) else {}
    strategy = settings.get("strategy")
    return f" ({strategy})" if isinstance(strategy, str) and strategy else ""


def pair_summaries(runs: list[RunData]) -> list[dict[str, Any]]:
    """For each pair of runs: on the questions both answered (no error row), who got what right."""
    pairs = []
    for a, b in combinations(runs, 2):
        shared = [q for q in a.rows if q in b.rows and a.rows[q].status != "error" and b.rows[q].status != "error"]
        if not shared:
            continue
        ra = [a.rows[q].correct for q in shared]
        rb = [b.rows[q].correct for q in shared]
        pairs.append(
            {
                "a": a.label,
                "b": b.label,
                "shared": len(shared),
                "both": sum(x and y for x, y in zip(ra, rb)),
                "only_a": sum(x and not y for x, y in zip(ra, rb)),
                "only_b": sum(y and not x for x, y in zip(ra, rb)),
                "neither": sum(not x and not y for x, y in zip(ra, rb)),
            }
        )
    return pairs


def _result_word(row: ResultRow) -> str:
    if row.status == "error":
        return "error"
    return "correct" if row.correct else "wrong"


# --------------------------------------------------------------------------- writing


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise SleuthError(f"{path}: cannot write ({exc.strerror or exc})") from None


def _benchmark_for(run: RunData, row: ResultRow) -> Benchmark:
    """The benchmark a row was run under, with the run's protocol variant (which may pick other frames)."""
    try:
        return get_benchmark(row.benchmark, run.config.get("variant") or None)
    except SleuthError:
        return get_benchmark(row.benchmark)


def _question_flags(cells: list[dict[str, Any] | None]) -> dict[str, Any]:
    """How the runs that answered one question (error rows left out) fared together."""
    answered = [c for c in cells if c is not None and c["result"] != "error"]
    right = [c["row"].correct for c in answered]
    agent = [c["row"].correct for c in answered if c["row"].method == "agent"]
    others = [c["row"].correct for c in answered if c["row"].method != "agent"]
    return {
        "right": sum(right),
        "answered": len(answered),
        "disagree": len(set(right)) > 1,
        "all_wrong": bool(right) and not any(right),
        "all_right": bool(right) and all(right),
        "agent_only": any(agent) and bool(others) and not any(others),
    }


def _video_facts(columns: list[dict[str, Any]]) -> VideoFacts | None:
    """The question's video frame count and rate: from a trace when one has it, else from the video file,
    read only when a run without a trace needs it."""
    for c in columns:
        facts = facts_from_trace(c["trace"]) if c["trace"] is not None else None
        if facts:
            return facts
    for c in columns:
        if c["trace"] is None and c["result"] != "error":
            path = video_file_of(c["row"], c["config"])
            facts = facts_from_file(path) if path is not None else None
            if facts:
                return facts
    return None


def write_run_browser(run_dirs: list[Path], out_dir: Path, *, thumbnails_from_video: bool = False) -> Path:
    """Write the run browser for ``run_dirs`` into ``out_dir`` and return the index page's path.

    ``thumbnails_from_video`` decodes missing thumbnails (and search hits' thumbnails) from each
    trace's video when the file is reachable (slow on a full benchmark run).
    """
    if not run_dirs:
        raise SleuthError("no run directories given")
    out_dir = Path(out_dir)
    runs = [load_run(Path(d), label) for d, label in zip(run_dirs, _unique_labels(list(run_dirs)))]
    problems = [p for run in runs for p in run.problems]

    question_ids = sorted({q for run in runs for q in run.rows}, key=_natural_key)
    env = template_env()
    compare_template = env.get_template("browser.html.j2")
    benchmark = _benchmark_of(runs)
    browsed = [g for g in benchmark.groupings if g.browse]
    run_traces: dict[str, list[Trace]] = {run.label: [] for run in runs}

    questions: list[dict[str, Any]] = []
    for qid in question_ids:
        present = [run for run in runs if qid in run.rows]
        compare_rel = f"{COMPARE_DIR}/{safe_name(qid)}.html" if len(present) > 1 else None
        cells: dict[str, dict[str, Any]] = {}
        for run in present:
            row = run.rows[qid]
            trace_rel, trace_problem, trace = None, None, None
            source = trace_path(run, row)
            if source is not None:
                try:
                    trace = load_trace(source)
                except SleuthError as exc:
                    trace_problem = str(exc)
                    problems.append(f"{run.label} / {qid}: {exc}")
            if trace is not None:
                run_traces[run.label].append(trace)
                trace_rel = f"{TRACE_PAGES_DIR}/{safe_name(run.label)}/{safe_name(qid)}.html"
                note = None
                if thumbnails_from_video:
                    trace, note = fill_missing_thumbnails(trace)
                _write(
                    out_dir / trace_rel,
                    render_trace_html(trace, back_link=f"../../{INDEX_FILE}", back_label="run index", note=note),
                )
            cells[run.label] = {
                "run": run.label,
                "row": row,
                "config": run.config,
                "result": _result_word(row),
                "trace": trace,
                "trace_href": trace_rel,
                "trace_problem": trace_problem,
                "labels": trace_labels(trace) if trace is not None else [],
                "tokens": row.prompt_tokens + row.completion_tokens,
            }
        ordered = [cells.get(run.label) for run in runs]
        first = present[0].rows[qid]
        question = {
            "qid": qid,
            "row": first,
            "groups": benchmark.groups_of_row(first),
            "cells": ordered,
            "compare_href": compare_rel,
            **_question_flags(ordered),
        }
        questions.append(question)
        if compare_rel:
            columns = [c for c in ordered if c is not None]
            for c in columns:
                c.update(
                    timeline=timeline_context(c["trace"]) if c["trace"] is not None else None,
                    verdict=verdict(c["trace"]) if c["trace"] is not None else None,
                    rationale=c["trace"].answer.rationale if c["trace"] is not None and c["trace"].answer else "",
                    steps=c["trace"].totals.steps if c["trace"] is not None else None,
                )
            axis = shared_axis(
                columns, _video_facts(columns),
                lambda c: _benchmark_for(next(r for r in runs if r.label == c["run"]), c["row"]),
            )
            _write(
                out_dir / compare_rel,
                compare_template.render(
                    page="compare",
                    title=f"{qid} · side by side",
                    qid=qid,
                    question=next((c["row"].question for c in columns if c["row"].question), ""),
                    options=next((c["row"].options for c in columns if c["row"].options), []),
                    gold=first.gold,
                    columns=columns,
                    axis=axis,
                    disagree=question["disagree"],
                    run_labels={run.label: config_labels(run.config) for run in present},
                ),
            )

    summaries = [run_summary(run, benchmark, run_traces[run.label]) for run in runs]
    index = out_dir / INDEX_FILE
    _write(
        index,
        compare_template.render(
            page="index",
            title="sleuth runs · " + ", ".join(run.label for run in runs),
            runs=summaries,
            headline=[name for name, _ in summaries[0]["headline"]],
            pairs=pair_summaries(runs),
            questions=questions,
            problems=problems,
            groupings=[_browse_column(g, questions) for g in browsed],
            has_agent=any(r.method == "agent" for run in runs for r in run.rows.values()),
            has_other=any(r.method != "agent" for run in runs for r in run.rows.values()),
        ),
    )
    return index


def _browse_column(grouping: Any, questions: list[dict[str, Any]]) -> dict[str, Any]:
    """A grouping as the question table shows it: its values, and the data attribute that carries it."""
    dashed = grouping.key.replace("_", "-")
    camel = re.sub(r"-(\w)", lambda m: m.group(1).upper(), dashed)  # how the page's script reads data-<dashed>
    values = sorted({q["groups"].get(grouping.key, "") for q in questions} - {""})
    return {"key": grouping.key, "title": grouping.title or grouping.key, "attr": dashed, "dataset": camel,
            "values": values}


__all__ = ["RunData", "load_run", "read_results", "run_summary", "safe_name", "write_run_browser"]
