"""Comparison reports over run directories: markdown + HTML, with plots.

``write_report([run_a, run_b], out_dir)`` writes ``report.md``, ``report.html``
(self-contained: plots embedded), the plots as PNG files, ``report.json``
(the same numbers, for scripts) and the run browser (``eval.views.browser``).

Contents: one summary row per run next to the benchmark paper's reported
numbers (clearly labelled: not run here), each run's data notes (unreadable
result lines skipped, dataset records skipped at load time, flagged questions
kept), each run's per-category table (overall and every grouping the
benchmark defines; for MMR-V: Implicit/Explicit, each L2 type, each video
type; Wilson score 95% intervals), a paired comparison of every two
runs on the questions both answered (accuracy deltas per category, McNemar's
exact test), and plots: accuracy overall and per headline group, accuracy per
group for every other grouping the benchmark defines (MMR-V: ability type,
video type), and accuracy against frames shown.

Question texts, category names, error reasons and the like come from
datasets and models: the HTML is autoescaped, and every value the markdown
shows is escaped for HTML and for markdown tables (``_markdown_text``).
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import re
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from eval.benchmarks import Benchmark, get_benchmark
from eval.matched import budget_pairs, budget_point
from eval.results import RESULTS_FILE
from eval.results import ScoredItem
from eval.score import Scorecard, load_items, score_items
from eval.stats import McNemarResult, mcnemar, paired_difference_ci
from eval.views.labels import config_labels
from sleuth.errors import SleuthError

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
REPORT_JSON = "report.json"
PLOT_CATEGORIES = "accuracy_by_category.png"
PLOT_FRAMES = "accuracy_vs_frames.png"
PLOT_GROUPING = "accuracy_by_{key}.png"  # one per grouping beyond the headline ones
BROWSER_DIR = "browser"


class ReportError(SleuthError):
    """A run directory cannot be reported on."""


@dataclass
class RunData:
    name: str
    path: Path
    config: dict[str, Any]
    items: list[ScoredItem]
    scorecard: Scorecard

    @property
    def ok_items(self) -> dict[str, ScoredItem]:
        return {i.question_id: i for i in self.items if i.status == "ok"}


class ComparisonRow(BaseModel):
    kind: str
    name: str
    n: int
    accuracy_a: float | None
    accuracy_b: float | None
    delta: float | None  # b - a
    only_a: int
    only_b: int
    p_value: float | None


class Comparison(BaseModel):
    run_a: str
    run_b: str
    shared: int
    rows: list[ComparisonRow]

    @property
    def headline(self) -> str:
        """One sentence: the overall difference, its 95% interval and McNemar's p, on the shared questions."""
        overall = next((r for r in self.rows if r.kind == "overall"), None)
        if overall is None or not overall.n:
            return f"{self.run_b} vs {self.run_a}: no question answered by both."
        low, high = paired_difference_ci(overall.only_a, overall.only_b, overall.n)
        p = "no discordant question" if overall.p_value is None else (
            "McNemar p < 0.001" if overall.p_value < 0.001 else f"McNemar p = {overall.p_value:.3f}")
        return (f"{self.run_b} vs {self.run_a}: {100 * (overall.delta or 0):+.1f} points "
                f"(95% CI {100 * low:+.1f} to {100 * high:+.1f}) on {overall.n} shared questions; {p}.")


@dataclass
class ReportPaths:
    markdown: Path
    html: Path
    json: Path
    plots: list[Path] = field(default_factory=list)
    browser: Path | None = None


# --------------------------------------------------------------------------- loading


def load_run(run_dir: str | Path, *, benchmark: str = "mmr_v") -> RunData:
    """A run directory of ours, or a benchmark's official result file (scored as ``sleuth score`` does,
    e.g. the MMR-V authors' published GPT-4o answers), as one run of the report."""
    path = Path(run_dir)
    if path.is_file():
        items, facts = load_items(path, benchmark=benchmark)
        config = facts.get("config") or {"model": facts.get("model", ""), "method": "official file"}
        return RunData(name=path.stem, path=path, config=config, items=items,
                       scorecard=score_items(items, source=str(path), facts=facts))
    if not path.is_dir():
        raise ReportError(f"{path}: neither a run directory nor a results file")
    if not (path / RESULTS_FILE).is_file():
        raise ReportError(f"{path}: no {RESULTS_FILE} in this directory (not a run directory?)")
    items, facts = load_items(path / RESULTS_FILE)
    if facts.get("format") != "sleuth":
        raise ReportError(f"{path / RESULTS_FILE}: not a sleuth results file")
    return RunData(
        name=path.name,
        path=path,
        config=facts["config"],
        items=items,
        scorecard=score_items(items, source=str(path), facts=facts),
    )


def _unique_names(runs: list[RunData]) -> None:
    seen: dict[str, int] = {}
    for run in runs:
        seen[run.name] = seen.get(run.name, 0) + 1
    for run in runs:
        if seen[run.name] > 1:
            run.name = str(run.path)


# --------------------------------------------------------------------------- comparisons


def _groups_of(item: ScoredItem, benchmark: Benchmark) -> list[tuple[str, str]]:
    groups = [("overall", "Overall")]
    for grouping in benchmark.groupings:
        value = item.groups.get(grouping.key)
        if value and (not grouping.closed or value in grouping.order):
            groups.append((grouping.key, grouping.labels.get(value, value)))
    return groups


def _group_rank(benchmark: Benchmark, key: tuple[str, str]) -> tuple[int, int, str]:
    """Overall first, then the benchmark's groupings in order, each in its own value order."""
    if key[0] == "overall":
        return 0, 0, ""
    for position, grouping in enumerate(benchmark.groupings, start=1):
        if grouping.key == key[0]:
            names = [grouping.labels.get(v, v) for v in grouping.order]
            return position, names.index(key[1]) if key[1] in names else len(names), key[1]
    return len(benchmark.groupings) + 1, 0, key[1]


def _benchmark_of(runs: list[RunData]) -> Benchmark:
    names = sorted({r.scorecard.benchmark for r in runs})
    if len(names) > 1:
        raise ReportError(f"the runs are on different benchmarks ({', '.join(names)}); report each on its own")
    return get_benchmark(names[0] if names else "mmr_v")


def compare_runs(a: RunData, b: RunData) -> Comparison:
    """Paired comparison on the questions both runs answered (status ok in both)."""
    a_items, b_items = a.ok_items, b.ok_items
    shared = [qid for qid in a_items if qid in b_items]
    benchmark = _benchmark_of([a, b])
    buckets: dict[tuple[str, str], list[str]] = {}
    for qid in shared:
        for key in _groups_of(a_items[qid], benchmark):
            buckets.setdefault(key, []).append(qid)

    rows = []
    for key in sorted(buckets, key=lambda k: _group_rank(benchmark, k)):
        qids = buckets[key]
        result: McNemarResult = mcnemar([a_items[q].correct for q in qids], [b_items[q].correct for q in qids])
        acc_a = (result.both_correct + result.only_a) / result.n
        acc_b = (result.both_correct + result.only_b) / result.n
        rows.append(
            ComparisonRow(
                kind=key[0], name=key[1], n=result.n, accuracy_a=acc_a, accuracy_b=acc_b,
                delta=acc_b - acc_a, only_a=result.only_a, only_b=result.only_b, p_value=result.p_value,
            )
        )
    return Comparison(run_a=a.name, run_b=b.name, shared=len(shared), rows=rows)


# --------------------------------------------------------------------------- plots


def _color(position: int) -> str:
    import matplotlib.pyplot as plt

    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return cycle[position % len(cycle)]


def _plot_groups(runs: list[RunData], path: Path, labels: list[tuple[str, str]], title: str) -> Path:
    """Bars of each run's accuracy for each (group kind, group name) in ``labels``, with Wilson intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(labels))
    width = 0.8 / max(1, len(runs))
    fig, ax = plt.subplots(figsize=(max(8.0, 0.9 * len(labels) + 2), 4.8))
    for position, run in enumerate(runs):
        heights, low_err, high_err = [], [], []
        for kind, name in labels:
            try:
                group = run.scorecard.group(kind, name)  # type: ignore[arg-type]
            except KeyError:
                group = None
            if group is None or group.accuracy is None:
                heights.append(0.0), low_err.append(0.0), high_err.append(0.0)
                continue
            heights.append(100 * group.accuracy)
            low_err.append(100 * (group.accuracy - (group.ci_low or group.accuracy)))
            high_err.append(100 * ((group.ci_high or group.accuracy) - group.accuracy))
        ax.bar(
            x + (position - (len(runs) - 1) / 2) * width, heights, width,
            yerr=[low_err, high_err], capsize=2, label=run.name, color=_color(position),
            error_kw={"elinewidth": 0.8, "ecolor": "#444444"},
        )
    ax.set_xticks(x)
    ax.set_xticklabels([name for _, name in labels], rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 112)  # headroom for the legend above the 100% line
    ax.set_yticks(range(0, 101, 20))
    ax.axhline(100, color="#cccccc", linewidth=0.6)
    ax.set_title(f"{title} (error bars: Wilson 95% CI)")
    ax.legend(fontsize=8, loc="upper right", ncol=max(1, len(runs)), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_categories(runs: list[RunData], out: Path) -> list[Path]:
    """One plot of the overall and the headline groups, then one per other grouping the benchmark
    defines (MMR-V: ability type, video type), each with the groups that have questions."""
    benchmark = _benchmark_of(runs)
    plots = [_plot_groups(runs, out / PLOT_CATEGORIES, [("overall", "Overall"), *benchmark.headline_groups()],
                          "Accuracy per category")]
    for grouping in benchmark.groupings:
        if grouping.headline:
            continue
        present = {(g.kind, g.name) for r in runs for g in r.scorecard.groups if g.kind == grouping.key and g.n}
        if not present:
            continue
        name = PLOT_GROUPING.format(key=re.sub(r"[^A-Za-z0-9_-]+", "_", grouping.key))
        if name in {p.name for p in plots}:
            name = name.replace(".png", "_2.png")
        labels = sorted(present, key=lambda k: _group_rank(benchmark, k))
        plots.append(_plot_groups(runs, out / name, labels, f"Accuracy per {grouping.title}"))
    return plots


def _plot_frames(runs: list[RunData], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    curve = sorted((p.frames, 100 * r.scorecard.overall.accuracy) for p, r in zip(_budget_points(runs), runs)
                   if p.uniform and p.frames is not None and r.scorecard.overall.accuracy is not None)
    if len(curve) > 1:  # uniform runs at several N: the baseline's accuracy-for-frames curve
        ax.plot([x for x, _ in curve], [y for _, y in curve], color="0.6", linestyle="--", linewidth=1,
                label="uniform frames (curve over N)", zorder=0)
    for position, run in enumerate(runs):
        ok = [i for i in run.items if i.status == "ok" and i.frames is not None]
        if not ok:
            continue
        overall = run.scorecard.overall
        mean_frames = sum(i.frames or 0 for i in ok) / len(ok)
        distinct = sorted({i.frames for i in ok})
        if len(distinct) > 1:  # frames vary per question (the agent): accuracy per frames-shown value
            xs, ys, sizes = [], [], []
            for frames in distinct:
                bucket = [i for i in ok if i.frames == frames]
                xs.append(frames)
                ys.append(100 * sum(i.correct for i in bucket) / len(bucket))
                sizes.append(12 + 6 * len(bucket))
            ax.scatter(xs, ys, s=sizes, alpha=0.3, color=_color(position))
        if overall.accuracy is not None:
            low = 100 * (overall.accuracy - (overall.ci_low or overall.accuracy))
            high = 100 * ((overall.ci_high or overall.accuracy) - overall.accuracy)
            ax.errorbar(
                [mean_frames], [100 * overall.accuracy], yerr=[[low], [high]], fmt="o", capsize=4,
                markersize=8, label=f"{run.name} (mean {mean_frames:.1f} frames)", color=_color(position),
            )
    ax.set_xlim(left=0)
    ax.set_xlabel("frames shown per question")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(
        "Accuracy vs frames shown\n(large: whole run with Wilson 95% CI; faint: questions grouped by frames shown)",
        fontsize=10,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- rendering


def _pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}"


def _signed_pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:+.1f}"


def _num(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _money(value: float | None) -> str:
    return "–" if value is None else f"${value:.4f}"


def _pvalue(value: float | None) -> str:
    if value is None:
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _kind_labeller(benchmark: Benchmark):
    """A group kind as the tables name it: the grouping's title (none for overall and headline groups)."""
    titles = {g.key: "" if g.headline else g.title for g in benchmark.groupings}
    return lambda kind: "" if kind == "overall" else titles.get(kind, kind)


def _ci(group: Any) -> str:
    if getattr(group, "ci_low", None) is None or getattr(group, "ci_high", None) is None:
        return "–"
    return f"{100 * group.ci_low:.1f}–{100 * group.ci_high:.1f}"


# <, > and & as entities, so no tag opens; "|" would end a table cell, a backslash could escape ours,
# a newline would end the table row. Emphasis characters (*, _) are left alone: they restyle, never break.
_MARKDOWN_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\\": "\\\\", "|": "\\|", "\n": " ", "\r": " "})


def _markdown_text(value: Any) -> str:
    """A value as markdown text that renders as itself, inside or outside a table."""
    return str(value).translate(_MARKDOWN_ESCAPES)


def _environment(benchmark: Benchmark, *, markdown: bool = False) -> Any:
    """The templates' environment: HTML templates autoescape; the markdown one escapes every
    ``{{ }}`` through ``_markdown_text`` (jinja's ``finalize``), so no field can be forgotten."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=PackageLoader("eval", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_markdown_text if markdown else None,
    )
    env.filters.update(kind=_kind_labeller(benchmark), ci=_ci, pct=_pct, signed_pct=_signed_pct, num=_num, money=_money, pvalue=_pvalue)
    return env


def _run_summary(run: RunData, benchmark: Benchmark) -> dict[str, Any]:
    card = run.scorecard
    config = run.config
    return {
        "name": run.name,
        "path": str(run.path),
        "method": config.get("method") or card.method,
        "model": config.get("model") or card.model,
        "frames_setting": config.get("frames"),
        "card": card,
        "overall": card.overall,
        "headline": [card.group(kind, name) for kind, name in benchmark.headline_groups()],
        "labels": config_labels(config),
        "notes": card.data_notes(),
    }


def _budget_points(runs: list[RunData]):
    return [budget_point(r.name, r.config, [i.frames for i in r.items if i.status == "ok" and i.frames is not None])
            for r in runs]


def matched_budgets(runs: list[RunData]) -> list[dict[str, Any]]:
    """Each agent run beside the uniform run nearest its mean frames shown, with the paired headline
    when the budgets match (``eval.matched``)."""
    by_name = {r.name: r for r in runs}
    rows = []
    for pair in budget_pairs(_budget_points(runs)):
        headline = compare_runs(by_name[pair.uniform], by_name[pair.agent]).headline if pair.matched else None
        rows.append({**asdict(pair), "headline": headline})
    return rows


def build_report_data(runs: list[RunData]) -> dict[str, Any]:
    benchmark = _benchmark_of(runs)
    comparisons = [compare_runs(a, b) for a, b in combinations(runs, 2)]
    return {
        "title": f"{benchmark.title} evaluation report",
        "benchmark_title": benchmark.title,
        "generated_at": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "runs": [_run_summary(r, benchmark) for r in runs],
        "comparisons": comparisons,
        "headline": [name for _, name in benchmark.headline_groups()],
        "reference": [asdict(ref) for ref in benchmark.references],
        "reference_source": benchmark.reference_source,
        "derived": benchmark.derived_metrics({r.name: (r.scorecard, r.config) for r in runs}),
        "matched": matched_budgets(runs),
    }


def write_report(
    run_dirs: list[str | Path], out_dir: str | Path, *, browser: bool = True, benchmark: str = "mmr_v",
    thumbnails: bool = False,
) -> ReportPaths:
    """Write the report for one or more run directories into ``out_dir`` (``thumbnails``: the run browser
    decodes search hits' thumbnails from each trace's video)."""
    if not run_dirs:
        raise ReportError("give at least one run directory")
    runs = [load_run(d, benchmark=benchmark) for d in run_dirs]
    _unique_names(runs)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"{out}: cannot create the report directory ({exc.strerror or exc})") from None

    plots = [*_plot_categories(runs, out), _plot_frames(runs, out / PLOT_FRAMES)]
    paths = ReportPaths(markdown=out / REPORT_MD, html=out / REPORT_HTML, json=out / REPORT_JSON, plots=plots)
    if browser:
        from eval.views.browser import write_run_browser

        # the browser shows our runs' questions and traces; official files have neither
        ours = [r.path for r in runs if r.path.is_dir()]
        paths.browser = write_run_browser(ours, out / BROWSER_DIR, thumbnails_from_video=thumbnails) if ours else None
    browser_link = paths.browser.relative_to(out).as_posix() if paths.browser else None

    data = build_report_data(runs)
    benchmark = _benchmark_of(runs)
    markdown = _environment(benchmark, markdown=True).get_template("report.md.j2").render(
        **data, plots=[p.name for p in plots], browser_link=browser_link
    )
    embedded = [
        {"name": p.name, "data": "data:image/png;base64," + base64.b64encode(p.read_bytes()).decode("ascii")}
        for p in plots
    ]
    html = _environment(benchmark).get_template("report.html.j2").render(**data, plots=embedded, browser_link=browser_link)

    paths.markdown.write_text(markdown, encoding="utf-8")
    paths.html.write_text(html, encoding="utf-8")
    paths.json.write_text(
        json.dumps(
            {
                "runs": [
                    {"name": r.name, "path": str(r.path), "config": r.config, "score": r.scorecard.model_dump(mode="json")}
                    for r in runs
                ],
                "comparisons": [c.model_dump(mode="json") for c in data["comparisons"]],
                "matched_budgets": data["matched"],
                "reference": {"source": data["reference_source"], "rows": data["reference"]},
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    return paths
