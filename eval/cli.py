"""``sleuth eval``, ``sleuth score``, ``sleuth report`` and ``sleuth data download``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import typer

from agent.backends.options import (
    DEFAULT_BACKEND,
    DEFAULT_DEVICE,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_TOKENS,
    DEFAULT_TEMPERATURE,
    DEFAULT_TIMEOUT,
    DEFAULT_TOOL_MODE,
    ApiKeyOpt,
    BackendOpt,
    BaseUrlOpt,
    DeviceOpt,
    HeaderOpt,
    ImageDetailOpt,
    ImageMaxSideOpt,
    MaxRetriesOpt,
    MaxTokensOpt,
    ModelOpt,
    PricesOpt,
    ReplayCacheOpt,
    TemperatureOpt,
    TimeoutOpt,
    ToolModeOpt,
)
from agent.options import (
    AgentOptionOpt,
    MaxStepsOpt,
    MaxToolCallsOpt,
    OverviewFramesOpt,
    OverviewModeOpt,
    PerceptionModelOpt,
    StrategyOpt,
    TokenBudgetOpt,
)
from eval.runner import DEFAULT_BREAKER, DEFAULT_QUESTION_TIMEOUT
from sleuth.errors import ConfigError, SleuthError
from sleuth.options import FramesOpt, JsonOpt, OutOpt
from tools.options import (
    DEFAULT_CLIP_MODEL,
    ClipDeviceOpt,
    DEFAULT_FPS,
    DEFAULT_FRAME_FIT,
    DEFAULT_MAX_FRAMES,
    CacheDirOpt,
    ClipCheckpointOpt,
    ClipModelOpt,
    FpsOpt,
    FrameFitOpt,
    MaxFramesOpt,
    PretrainedOpt,
    RandomWeightsOpt,
)

EVAL_PANEL = "Evaluation"
RUN_PANEL = "Run safety"

data_app = typer.Typer(
    name="data",
    help="Get a benchmark's questions and videos.",
    no_args_is_help=True,
)


def _console(json_output: bool = False) -> Any:
    from rich.console import Console

    # with --json, stdout carries only the JSON; everything else goes to stderr
    return Console(stderr=True) if json_output else Console()


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


# --------------------------------------------------------------------------- eval


def eval_command(
    ctx: typer.Context,
    config_file: Annotated[
        Optional[Path],
        typer.Option("--config", dir_okay=False, rich_help_panel=EVAL_PANEL,
                     help="A run specification (YAML or JSON; a run directory's spec.json works). "
                     "Flags given on the command line override its values."),
    ] = None,
    benchmark: Annotated[
        str,
        typer.Option("--benchmark", "-b", rich_help_panel=EVAL_PANEL,
                     help="Benchmark by name: mmr_v, video_holmes, videommmu, vsibench, or one your code registers."),
    ] = "mmr_v",
    variant: Annotated[
        Optional[str],
        typer.Option("--variant", rich_help_panel=EVAL_PANEL,
                     help="One of the benchmark's protocol variants (e.g. where its paper and its code differ); "
                     "default: its official code."),
    ] = None,
    data: Annotated[
        Optional[str],
        typer.Option(
            "--data", "-d", rich_help_panel=EVAL_PANEL,
            help="Questions: a .json/.jsonl/.parquet file, a folder from `sleuth data download`, or hf://NAME "
            "(needs the hub extra). Default: the benchmark's hub dataset.",
        ),
    ] = None,
    videos: Annotated[
        Optional[Path],
        typer.Option("--videos", file_okay=False, rich_help_panel=EVAL_PANEL,
                     help="Folder with the benchmark's video files (DIR/<video> or DIR/videos/<video>)."),
    ] = None,
    method: Annotated[
        str,
        typer.Option("--method", rich_help_panel=EVAL_PANEL,
                     help="uniform: the benchmark's official end-to-end protocol (N uniform frames, one call); "
                     "agent: the tool-using agent (see --strategy)."),
    ] = "uniform",
    out: OutOpt = None,
    frames: FramesOpt = None,
    limit: Annotated[
        Optional[int],
        typer.Option("--limit", min=0, rich_help_panel=EVAL_PANEL, help="Only the first N questions of the dataset."),
    ] = None,
    concurrency: Annotated[
        int,
        typer.Option("--concurrency", "-j", min=1, rich_help_panel=EVAL_PANEL, help="Questions answered at once."),
    ] = 1,
    retry_errors: Annotated[
        bool,
        typer.Option("--retry-errors", rich_help_panel=EVAL_PANEL,
                     help="Re-run the questions whose recorded row is an error (finished ones are never re-run)."),
    ] = False,
    cot: Annotated[
        bool,
        typer.Option("--cot", rich_help_panel=EVAL_PANEL, help="uniform: the benchmark's chain-of-thought template, where it has one (MMR-V's --with_cot)."),
    ] = False,
    strict_official: Annotated[
        bool,
        typer.Option("--strict-official", rich_help_panel=EVAL_PANEL,
                     help="uniform: read the answer exactly like the benchmark's official script where sleuth's "
                     "default differs (MMR-V: the FIRST [[X]], any letter A-L, instead of the last [[X]] among the "
                     "question's letters)."),
    ] = False,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", rich_help_panel=EVAL_PANEL, help="Show a progress bar.")
    ] = True,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", rich_help_panel=RUN_PANEL,
                     help="Only check that the run can start (videos, model server, frame index), in seconds; answer nothing."),
    ] = False,
    allow_missing: Annotated[
        bool,
        typer.Option("--allow-missing", rich_help_panel=RUN_PANEL,
                     help="Run even when some videos are missing or unreadable (their questions get error rows)."),
    ] = False,
    keep_frames: Annotated[
        bool,
        typer.Option("--keep-frames/--no-keep-frames", rich_help_panel=RUN_PANEL,
                     help="Keep every frame sent to a model, and the frames an agent's frame index samples, under "
                     "the cache directory (frames/), so later questions and runs show them without decoding "
                     "(the same bytes: speed only)."),
    ] = True,
    question_timeout: Annotated[
        float,
        typer.Option("--question-timeout", min=1, rich_help_panel=RUN_PANEL,
                     help="Seconds one question may take in total (every model request inside it included); "
                     "past it the question is an error row."),
    ] = DEFAULT_QUESTION_TIMEOUT,
    stop_after: Annotated[
        int,
        typer.Option("--stop-after", min=0, rich_help_panel=RUN_PANEL,
                     help="Stop the run when this many questions in a row fail the same way for a reason that "
                     "no question escapes (server unreachable, key refused, model unknown, a tool that cannot "
                     "work); 0: never stop."),
    ] = DEFAULT_BREAKER,
    json_output: JsonOpt = False,
    strategy: StrategyOpt = "planner",
    agent_option: AgentOptionOpt = None,
    # -- model
    backend: BackendOpt = DEFAULT_BACKEND,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    api_key: ApiKeyOpt = None,
    header: HeaderOpt = None,
    temperature: TemperatureOpt = DEFAULT_TEMPERATURE,
    max_tokens: MaxTokensOpt = DEFAULT_MAX_TOKENS,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
    max_retries: MaxRetriesOpt = DEFAULT_MAX_RETRIES,
    tool_mode: ToolModeOpt = DEFAULT_TOOL_MODE,
    image_max_side: ImageMaxSideOpt = None,
    image_detail: ImageDetailOpt = None,
    replay_cache: ReplayCacheOpt = None,
    prices: PricesOpt = None,
    device: DeviceOpt = DEFAULT_DEVICE,
    perception_model: PerceptionModelOpt = None,
    # -- agent budgets
    max_steps: MaxStepsOpt = None,
    overview_frames: OverviewFramesOpt = None,
    overview_mode: OverviewModeOpt = None,
    max_tool_calls: MaxToolCallsOpt = None,
    token_budget: TokenBudgetOpt = None,
    # -- frame index (agent)
    clip_model: ClipModelOpt = DEFAULT_CLIP_MODEL,
    pretrained: PretrainedOpt = None,
    clip_checkpoint: ClipCheckpointOpt = None,
    random_weights: RandomWeightsOpt = False,
    fps: FpsOpt = DEFAULT_FPS,
    index_max_frames: MaxFramesOpt = DEFAULT_MAX_FRAMES,
    cache_dir: CacheDirOpt = None,
    frame_fit: FrameFitOpt = DEFAULT_FRAME_FIT,
    clip_device: ClipDeviceOpt = "auto",
    # -- scale (Ray)
    engine: Annotated[
        str,
        typer.Option("--engine", rich_help_panel=EVAL_PANEL,
                     help="local (this process, the default) or ray: the questions in --shards shards, each run "
                     "by a Ray worker rebuilt from the run specification (pip install 'sleuth[ray]')."),
    ] = "local",
    shards: Annotated[
        int, typer.Option("--shards", min=1, rich_help_panel=EVAL_PANEL,
                          help="--engine ray: shards of questions (whole videos each), one Ray task each."),
    ] = 2,
    server: Annotated[
        Optional[list[str]],
        typer.Option("--server", rich_help_panel=EVAL_PANEL, show_default=False,
                     help="--engine ray: a model server of the pool the workers share (repeatable), or a file of "
                     "them, one URL a line; each worker takes a healthy one (default: --base-url)."),
    ] = None,
) -> None:
    """Run a method over a benchmark's questions and record one result row per question.

    Before the first question, a preflight checks the videos, the model
    server and the frame index, and fails in seconds with what to fix.
    Re-running the same command resumes the run: finished questions are
    skipped, never duplicated. A question that fails (server error, deadline)
    is recorded as an error row with its reason and the run goes on; the same
    unrecoverable failure several times in a row stops it. Exit codes: 0 every
    question answered, 1 some error rows, 2 could not start, 3 stopped early,
    130 interrupted.
    """
    from eval.preflight import PreflightReport, check_backends, check_frame_index, check_videos, describe
    from eval.runner import build_run_config, run_evaluation
    from eval.spec import load_dataset, prepare, write_spec

    console = _console(json_output)
    flags = {name: value for name, value in locals().items() if name in _SPEC_FLAGS}
    spec = _spec_from_flags(ctx, config_file, flags)
    benchmark_, dataset = load_dataset(spec)
    for problem in dataset.invalid:
        console.print(f"[yellow]skipping invalid row:[/] {problem}", highlight=False, soft_wrap=True)
    selected = dataset.questions[: spec.limit] if spec.limit is not None else dataset.questions

    # Videos first: the cheapest check, and before any model loads.
    preflight = PreflightReport()
    check_videos(selected, preflight, allow_missing=spec.allow_missing)
    for path, reason in list(preflight.unusable_videos.items())[:5]:
        console.print(f"[yellow]unusable video:[/] {path}: {reason}", highlight=False, soft_wrap=True)

    if engine != "local" and not dry_run:  # --dry-run: the local preflight, against --base-url
        _run_on_ray(console, spec, engine=engine, shards=shards, servers=server, json_output=json_output)
    run = prepare(spec, benchmark_, dataset)
    check_backends({"model": run.backend, "perception model": run.perception_backend}, preflight)
    if run.searcher is not None:
        check_frame_index(run.searcher, preflight)
    if dry_run:
        if json_output:
            _print_json({"preflight": preflight.model_dump(mode="json")})
        else:
            for line in describe(preflight):
                console.print(line, highlight=False)
            console.print("preflight passed; nothing was run (--dry-run)")
        raise typer.Exit(1 if preflight.unusable_videos else 0)

    config = build_run_config(run.method, backend_info=spec.backend.public_dict(), benchmark=benchmark_.name,
                              variant=spec.variant,
                              extra=run.config_extra, identity=run.identity_extra)
    config["preflight"] = preflight.model_dump(mode="json")
    cache_stats = getattr(run.backend, "cache_stats", None)
    summary = run_evaluation(
        dataset.questions, run.method, spec.out, config=config, concurrency=spec.concurrency,
        retry_errors=spec.retry_errors, limit=spec.limit, invalid=dataset.invalid,
        progress=progress and not json_output, console=console,
        cache_stats=cache_stats if callable(cache_stats) else None, model=spec.backend.model,
        question_timeout=spec.question_timeout, breaker=spec.stop_after,
        unusable_videos=preflight.unusable_videos, benchmark=benchmark_,
        on_start=lambda run_dir: write_spec(spec, run_dir),
    )
    if json_output:
        _print_json({**summary.model_dump(mode="json"), "exit_code": summary.exit_code})
    else:
        _print_run_summary(console, summary)
    raise typer.Exit(summary.exit_code)


# The eval flags that make up the run specification, and where each goes in it.
_SPEC_FLAGS: dict[str, tuple[str, ...]] = {
    "benchmark": ("benchmark",), "variant": ("variant",), "data": ("data",), "videos": ("videos",), "limit": ("limit",),
    "method": ("method",), "frames": ("frames",), "cot": ("cot",), "strict_official": ("strict_official",),
    "strategy": ("strategy",), "perception_model": ("perception_model",),
    "out": ("out",), "concurrency": ("concurrency",), "retry_errors": ("retry_errors",),
    "question_timeout": ("question_timeout",), "stop_after": ("stop_after",), "allow_missing": ("allow_missing",),
    "keep_frames": ("keep_frames",),
    # the model backend
    "backend": ("backend", "backend"), "model": ("backend", "model"), "base_url": ("backend", "base_url"),
    "api_key": ("backend", "api_key"), "header": ("backend", "headers"), "temperature": ("backend", "temperature"),
    "max_tokens": ("backend", "max_tokens"), "timeout": ("backend", "timeout_s"),
    "max_retries": ("backend", "max_retries"), "tool_mode": ("backend", "tool_mode"),
    "image_max_side": ("image_max_side",), "image_detail": ("backend", "image_detail"),
    "replay_cache": ("backend", "replay_cache"), "prices": ("backend", "prices_file"), "device": ("backend", "device"),
    # the agent's budgets
    "max_steps": ("agent", "max_steps"), "overview_frames": ("agent", "overview_frames"),
    "overview_mode": ("agent", "overview_mode"), "agent_option": ("agent",),
    "token_budget": ("agent", "max_tokens"), "max_tool_calls": ("agent", "max_tool_calls"),
    # the frame index
    "clip_model": ("index", "clip_model"), "pretrained": ("index", "pretrained"),
    "clip_checkpoint": ("index", "checkpoint"), "random_weights": ("index", "random_weights"),
    "fps": ("index", "fps"), "index_max_frames": ("index", "max_frames"), "cache_dir": ("index", "cache_dir"),
    "clip_device": ("index", "device"), "frame_fit": ("index", "frame_fit"),
}


def _spec_from_flags(ctx: typer.Context, config_file: Path | None, flags: dict[str, Any]) -> Any:
    """The run specification: the --config file's values, with the flags the user gave laid over them
    (without a file, every flag, defaults included)."""
    from agent.backends.options import parse_headers
    from agent.options import parse_agent_options
    from eval.spec import load_spec_file, make_spec, merge
    from tools.options import default_pretrained_for

    values: dict[str, Any] = {}
    for name, path in _SPEC_FLAGS.items():
        value = flags[name]
        if config_file is not None and not _given_by_user(ctx, name):
            continue
        if value is None and name not in ("data", "limit", "perception_model", "variant"):
            continue  # "not given": leave it to the file or the model's default
        if name == "header":
            value = parse_headers(value)
        if name == "agent_option":
            values.setdefault("agent", {}).update(parse_agent_options(value))
            continue
        target = values
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value
    base = load_spec_file(config_file) if config_file is not None else {}
    merged = merge(base, values)
    if "frames" not in base and not _given_by_user(ctx, "frames"):
        # the benchmark's own protocol decides how many frames its end-to-end runs show (MMR-V: 32)
        from eval.benchmarks import get_benchmark

        merged["frames"] = get_benchmark(merged.get("benchmark", "mmr_v"), merged.get("variant")).default_frames
    merged["temperature_set"] = merged.get("temperature_set", False) or _given_by_user(ctx, "temperature")
    merged["max_tokens_set"] = merged.get("max_tokens_set", False) or _given_by_user(ctx, "max_tokens")
    agent = merged.setdefault("agent", {})
    backend = merged.get("backend", {})
    if backend.get("image_detail") is not None:  # the agent's frames carry the detail hint the user chose
        agent.setdefault("image_detail", backend["image_detail"])
    if not _given_by_user(ctx, "image_max_side") and "image_max_side" not in base:
        merged.pop("image_max_side", None)  # the benchmark protocol's size, for every method
    if merged.get("perception_model"):
        agent["perception"] = "delegated"
    if merged.get("method", "uniform") == "uniform":
        index = merged.pop("index", None) or {}
        if index.get("cache_dir") is not None:  # --cache-dir: where a uniform run keeps its frames
            merged.setdefault("frames_cache_dir", index["cache_dir"])
    else:
        index = merged.setdefault("index", {})
        if not any(index.get(k) for k in ("pretrained", "checkpoint", "random_weights")):
            index["pretrained"] = default_pretrained_for(str(index.get("clip_model", DEFAULT_CLIP_MODEL)).strip())
        if index.get("checkpoint") and index.get("random_weights"):
            raise ConfigError("--clip-checkpoint and --random-weights exclude each other: pick one")
    if merged.get("videos") is None:
        raise ConfigError("no video folder: pass --videos DIR (or set videos in --config)")
    if merged.get("out") is None:
        raise ConfigError("no run directory: pass --out DIR (or set out in --config)")
    if not (backend.get("model") or "").strip():
        raise ConfigError("no model given: pass --model (or set SLEUTH_MODEL)")
    return make_spec(merged)


def _given_by_user(ctx: typer.Context, name: str) -> bool:
    """Whether a flag came from the command line or the environment rather than its default."""
    source = ctx.get_parameter_source(name)
    # compared by name: typer may ship its own copy of click's ParameterSource enum
    return source is not None and getattr(source, "name", "") in ("COMMANDLINE", "ENVIRONMENT")


def _run_on_ray(console: Any, spec: Any, *, engine: str, shards: int, servers: list[str] | None,
                json_output: bool) -> None:
    """``--engine ray``: the run as shards on Ray workers (eval.shards); exits with the run's code."""
    from eval.servers import read_servers
    from eval.shards import run_sharded
    from sleuth.errors import ConfigError

    if engine != "ray":
        raise ConfigError(f"invalid --engine {engine!r}: expected local or ray")
    pool = read_servers(list(servers or [])) or ([spec.backend.base_url] if spec.backend.base_url else [])
    summary = run_sharded(spec, shards=shards, servers=pool,
                          on_shard=None if json_output else lambda done: console.print(
                              f"shard {done['shard']}: {done['ran']} run ({done['ok']} ok, {done['errors']} errors)",
                              highlight=False))
    if json_output:
        _print_json({**summary.model_dump(mode="json"), "exit_code": summary.exit_code})
    else:
        console.print(
            f"[bold]{summary.run_dir}[/]: {summary.questions} questions, {summary.already_done} already done, "
            f"{summary.ran} run now on {summary.shards} shards ({summary.ok} ok, {summary.errors} errors)",
            highlight=False, soft_wrap=True,
        )
        console.print(f"score it with: sleuth score {summary.run_dir}", highlight=False, soft_wrap=True)
    raise typer.Exit(summary.exit_code)


def _print_run_summary(console: Any, summary: Any) -> None:
    acc = f"{100 * summary.accuracy:.1f}%" if summary.accuracy is not None else "-"
    cost = f"${summary.cost_usd:.4f}" if summary.cost_usd is not None else "unknown"
    console.print(
        f"[bold]{summary.run_dir}[/]: {summary.questions} questions, {summary.already_done} already done, "
        f"{summary.ran} run now ({summary.ok} ok, {summary.errors} errors); accuracy this run {acc}; "
        f"tokens {summary.prompt_tokens + summary.completion_tokens:,}; cost {cost}",
        highlight=False, soft_wrap=True,
    )
    if summary.replay_cache:
        console.print(
            f"replay cache: {summary.replay_cache.get('hits', 0)} hits, {summary.replay_cache.get('misses', 0)} misses",
            highlight=False, soft_wrap=True,
        )
    for reason in summary.error_reasons[:10]:
        console.print(f"[red]error[/] {reason}", highlight=False, soft_wrap=True)
    if len(summary.error_reasons) > 10:
        console.print(f"... and {len(summary.error_reasons) - 10} more errors (see results.jsonl)")
    if summary.rejected_lines:
        console.print(f"[yellow]{len(summary.rejected_lines)} unreadable line(s) of results.jsonl were set aside "
                      "in results.rejected.jsonl[/]", highlight=False, soft_wrap=True)
    if summary.unanswered:
        console.print(f"{summary.unanswered} questions have error rows; re-run with --retry-errors to try them again")
    if summary.stopped:
        console.print(f"[red]stopped:[/] {summary.stopped}", highlight=False, soft_wrap=True)
    if summary.interrupted or summary.stopped:
        # the last line: what is safe, and how to go on
        console.print(
            f"{summary.already_done + summary.ran} of {summary.questions} questions have rows in "
            f"{summary.run_dir}/results.jsonl ({summary.not_run} not run); run the same command to resume",
            highlight=False, soft_wrap=True,
        )
        return
    console.print(f"score it with: sleuth score {summary.run_dir}", highlight=False, soft_wrap=True)


# --------------------------------------------------------------------------- score


def score_command(
    files: Annotated[
        list[Path],
        typer.Argument(help="results.jsonl files or run directories (ours), or MMR-V official result JSON files."),
    ],
    model: Annotated[
        Optional[str],
        typer.Option("--model", "-m",
                     help="Whose responses to score: the <model> of <model>_raw_response (official files), "
                     "or the model column (ours)."),
    ] = None,
    benchmark: Annotated[
        str,
        typer.Option("--benchmark", "-b",
                     help="Whose official result-file format a file that is not sleuth's is in (sleuth's own rows "
                     "name their benchmark)."),
    ] = "mmr_v",
    extraction: Annotated[
        Literal["official", "last"],
        typer.Option("--extraction",
                     help="Official files without a stored final_answer: 'official' re-extracts exactly as MMR-V's "
                     "script did (first [[X]]; reproduces the published answers); 'last' takes the last [[X]] "
                     "among the question's letters."),
    ] = "official",
    json_output: Annotated[bool, typer.Option("--json", help="Print the scores as JSON.")] = False,
) -> None:
    """Accuracy overall, Implicit/Explicit, per L2 type and per video type, with Wilson score 95% intervals.

    Also counts extraction failures and error rows, and gives the frames,
    tokens, cost and latency per question where the file records them.
    Unreadable lines are skipped and listed, never silently.
    """
    from rich.text import Text

    from eval.score import score_file

    cards = [score_file(path, model=model, extraction=extraction, benchmark=benchmark) for path in files]
    if json_output:
        _print_json([c.model_dump(mode="json") for c in cards] if len(cards) > 1 else cards[0].model_dump(mode="json"))
        # the JSON lists the lines; a person reading the terminal still hears about them (on stderr)
        warnings = _console(json_output=True)
        for card in cards:
            for note in card.data_notes():
                warnings.print(Text(f"{card.source}: {note.text}", style="yellow"), soft_wrap=True)
        return
    console = _console()
    for card in cards:
        _print_scorecard(console, card)


def _print_scorecard(console: Any, card: Any) -> None:
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}"

    # paths, category names and reasons come from files and datasets: never let them read as rich markup
    who = " / ".join(x for x in (card.method, card.model) if x)
    table = Table(title=escape(f"{card.source}" + (f" ({who})" if who else "")), title_justify="left")
    table.add_column("group", no_wrap=True)
    for name in ("n", "acc%", "95% CI (Wilson)", "no ans", "err"):
        table.add_column(name, justify="right", no_wrap=True)
    previous_kind = None
    for group in card.groups:
        if previous_kind is not None and group.kind != previous_kind and group.kind != "category":
            table.add_section()
        previous_kind = group.kind
        style = "bold" if group.kind in ("overall", "category") else None
        table.add_row(
            escape(group.name), str(group.n), pct(group.accuracy),
            f"{pct(group.ci_low)}-{pct(group.ci_high)}" if group.ci_low is not None else "-",
            str(group.extraction_failures), str(group.errors), style=style,
        )
    console.print(table)
    per = card.per_question

    def num(value: float | None, fmt: str, unit: str = "") -> str:
        return "unknown" if value is None else format(value, fmt) + unit

    console.print(
        f"per question: frames {num(per.frames, '.1f')}, tokens {num(per.tokens, ',.0f')}, "
        f"cost {('$' + format(per.cost_usd, '.4f')) if per.cost_usd is not None else 'unknown'}, "
        f"latency {num(per.latency_s, '.2f', ' s')}",
        highlight=False,
    )
    rules = ", ".join(f"{k} {v}" for k, v in card.extraction_rules.items())
    if rules:
        console.print(f"answers found by: {rules}", highlight=False)
    if card.errors:
        console.print(f"[yellow]{card.errors} error rows are not in the accuracy[/]", highlight=False)
    shown = 3  # a few lines say what went wrong; --json has them all
    for note in card.data_notes():
        # soft_wrap: long paths stay on one line, whole, for grep and copy-paste
        console.print(Text(note.text + (":" if note.lines else ""), style="yellow"), soft_wrap=True)
        for line in note.lines[:shown]:
            console.print(Text(f"  {line}"), soft_wrap=True)
        if len(note.lines) > shown:
            console.print(Text(f"  ... and {len(note.lines) - shown} more (all of them: --json)"))


# --------------------------------------------------------------------------- report


def report_command(
    run_dirs: Annotated[
        list[Path],
        typer.Argument(help="Run directories made by `sleuth eval`, or a benchmark's official result files."),
    ],
    out: Annotated[
        Optional[Path],
        typer.Option("--out", "-o", file_okay=False, help="Where to write the report (default: ./report)."),
    ] = None,
    benchmark: Annotated[
        str, typer.Option("--benchmark", "-b", help="Whose format the official result files given are in.")
    ] = "mmr_v",
    thumbnails: Annotated[
        bool,
        typer.Option("--thumbnails", help="Decode thumbnails of search hits (and frames stored without one) from "
                     "each trace's video for the run browser's trace pages; slow on a whole benchmark."),
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print where the report files are, as JSON.")] = False,
) -> None:
    """Markdown + HTML report: per-category tables, paired comparison (McNemar), the paper's numbers, plots.

    Also writes the run browser: every question, linking to its trace page.
    """
    from eval.report import write_report

    paths = write_report(run_dirs, out or Path("report"), benchmark=benchmark, thumbnails=thumbnails)
    listing = {
        "markdown": str(paths.markdown),
        "html": str(paths.html),
        "json": str(paths.json),
        "plots": [str(p) for p in paths.plots],
        "browser": str(paths.browser) if paths.browser else None,
    }
    if json_output:
        _print_json(listing)
        return
    console = _console()
    console.print(f"report: {paths.markdown}\n        {paths.html}", highlight=False)
    if paths.browser:
        console.print(f"run browser: {paths.browser}", highlight=False)


# --------------------------------------------------------------------------- data


@data_app.command("download")
def download_command(
    directory: Annotated[Path, typer.Argument(file_okay=False, help="Where to put the dataset.")],
    benchmark: Annotated[
        str, typer.Option("--benchmark", "-b", help="Which benchmark to fetch (by name, as in sleuth eval).")
    ] = "mmr_v",
    skip_fetch: Annotated[
        bool,
        typer.Option("--skip-fetch", help="Do not contact the hub; unpack and verify what is already in DIRECTORY."),
    ] = False,
    no_extract: Annotated[bool, typer.Option("--no-extract", help="Only download; leave the archives as they are.")] = False,
    revision: Annotated[Optional[str], typer.Option("--revision", help="Branch, tag or commit.")] = None,
    json_output: JsonOpt = False,
) -> None:
    """Download a benchmark's questions and videos (huggingface_hub), unpack the videos and verify them."""
    from eval.benchmarks import get_benchmark

    console = _console(json_output)
    chosen = get_benchmark(benchmark)
    outcome = chosen.download(directory, fetch=not skip_fetch, extract=not no_extract, revision=revision,
                              progress=not json_output, console=console)
    listing = {
        "benchmark": chosen.name,
        "root": str(outcome.root),
        **outcome.details,
        "videos_dir": str(outcome.videos_dir),
        "video_files": outcome.video_files,
        "questions_file": str(outcome.questions_file) if outcome.questions_file else None,
        "referenced_videos": outcome.referenced,
        "missing_videos": outcome.missing,
    }
    if json_output:
        _print_json(listing)
    else:
        console.print(
            f"{outcome.video_files} video files in {outcome.videos_dir}"
            + (f"; the questions name {outcome.referenced}, missing {len(outcome.missing)}"
               if outcome.questions_file else ""),
            highlight=False, soft_wrap=True,
        )
        if outcome.questions_file:
            console.print(
                f"evaluate with: sleuth eval --benchmark {chosen.name} --data {outcome.questions_file} "
                f"--videos {outcome.videos_dir} ...", highlight=False, soft_wrap=True,
            )
    if not no_extract and outcome.video_files == 0:
        raise SleuthError(f"{outcome.videos_dir}: no video files after extraction")
    if outcome.missing:
        shown = ", ".join(outcome.missing[:3])
        raise SleuthError(f"{len(outcome.missing)} videos named by the questions are missing (e.g. {shown})")


# --------------------------------------------------------------------------- grid


def grid_command(
    grid_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="The grid file (YAML or JSON).",
                                              show_default=False)],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only the preflight of every run; answer nothing.")] = False,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Write the comparison report at the end.")] = True,
    json_output: JsonOpt = False,
) -> None:
    """Run a grid of methods, strategies and budgets from one file, then report them side by side.

    Each run is an ordinary `sleuth eval --config` run with its own directory
    (it resumes); the report sets each agent run beside the uniform run at the
    nearest frame count. A run that cannot start stops the grid; runs with
    error rows do not.
    """
    from eval.grid import REPORT_DIR, expand, load_grid, write_run_spec
    from eval.report import write_report

    console = _console(json_output)
    grid = load_grid(grid_file)
    runs = expand(grid)
    single = typer.Typer()
    single.command()(eval_command)
    command = typer.main.get_command(single)
    codes: dict[str, int] = {}
    for position, run in enumerate(runs, start=1):
        console.rule(f"[bold]{run.name}[/] ({position} of {len(runs)})")
        args = ["--config", str(write_run_spec(grid, run)), "--no-progress"]
        args += ["--dry-run"] if dry_run else []
        args += ["--json"] if json_output else []
        try:
            code = command.main(args, prog_name="sleuth eval", standalone_mode=False) or 0
        except SleuthError:  # the run's own one-line error follows; runs already done are kept
            typer.secho(f"grid run {run.name} could not start; fix it and run the grid again", err=True,
                        fg=typer.colors.RED)
            raise
        codes[run.name] = int(code)
        if code in (2, 3, 130):  # could not start, stopped early (failing the same way), interrupted
            raise SleuthError(f"grid run {run.name} could not go on (exit {code}); fix it and run the grid again: "
                              "finished questions are kept")
    paths = write_report([run.out for run in runs], Path(grid.out) / REPORT_DIR) if report and not dry_run else None
    if json_output:  # one line, after each run's own JSON
        typer.echo(json.dumps({"runs": [{"name": r.name, "out": str(r.out), "exit_code": codes[r.name]} for r in runs],
                               "report": str(paths.markdown) if paths else None}))
    elif paths:
        console.print(f"report: {paths.markdown}\n        {paths.html}", highlight=False)
    raise typer.Exit(max(codes.values(), default=0))


# --------------------------------------------------------------------------- registration


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
    app.command("score")(score_command)
    app.command("report")(report_command)
    app.command("grid")(grid_command)
    app.add_typer(data_app, name="data")
