"""The agent's command-line options, shared by ``sleuth ask``, ``sleuth demo`` and ``sleuth eval``."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

AGENT_PANEL = "Agent"

StrategyOpt = Annotated[
    str,
    typer.Option("--strategy", rich_help_panel=AGENT_PANEL,
                 help="The agent strategy by name. Built in: planner (overview, then search and look), captions "
                 "(a caption memory of the video first), confidence (answer, rate, look for what is missing); code "
                 "of yours may register more."),
]
AgentOptionOpt = Annotated[
    Optional[list[str]],
    typer.Option("--agent-option", rich_help_panel=AGENT_PANEL, metavar="KEY=VALUE", show_default=False,
                 help="Any agent setting, repeatable: e.g. answer_rule=elimination, option_verdicts=false, "
                 "confidence_rounds=2, caption_segments=6, caption_frames=2, sheet_tiles=16."),
]
OverviewModeOpt = Annotated[
    Optional[str],
    typer.Option("--overview-mode", rich_help_panel=AGENT_PANEL, metavar="frames|contact_sheet",
                 help="How the overview is shown: one image per frame, or tiled 8 to an image (each tile still "
                 "counts as a frame)."),
]
MaxStepsOpt = Annotated[
    Optional[int],
    typer.Option("--max-steps", min=1, rich_help_panel=AGENT_PANEL,
                 help="Planning steps before the final answer is forced (default: 8)."),
]
OverviewFramesOpt = Annotated[
    Optional[int],
    typer.Option("--overview-frames", min=0, rich_help_panel=AGENT_PANEL,
                 help="Uniform frames shown before the first step (default: a quarter of --frames, at most 8)."),
]
TokenBudgetOpt = Annotated[
    Optional[int],
    typer.Option("--token-budget", min=1, rich_help_panel=AGENT_PANEL, show_default=False,
                 help="Total prompt + completion tokens per question before the final answer is forced "
                 "(default: 100000)."),
]
MaxToolCallsOpt = Annotated[
    Optional[int],
    typer.Option("--max-tool-calls", min=1, rich_help_panel=AGENT_PANEL,
                 help="Tool calls run per planning step; a reply with more has the rest dropped (default: 8)."),
]
PerceptionModelOpt = Annotated[
    Optional[str],
    typer.Option("--perception-model", rich_help_panel=AGENT_PANEL,
                 help="Delegated perception: this VLM (same endpoint as --model) looks at the frames and answers "
                 "the planner's questions in words, so a text-only model can plan."),
]


def parse_agent_options(items: list[str] | None) -> dict:
    """``--agent-option KEY=VALUE`` pairs as ``AgentConfig`` values (VALUE read as YAML: 2, false, a word)."""
    import yaml

    from agent.config import AgentConfig
    from sleuth.errors import ConfigError

    values: dict = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in AgentConfig.model_fields:
            known = ", ".join(sorted(AgentConfig.model_fields))
            raise ConfigError(f"--agent-option {item!r}: expected KEY=VALUE with KEY one of: {known}")
        try:
            values[key] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            values[key] = raw
    return values


def agent_budgets(*, frames: int, max_steps: int | None, overview_frames: int | None, token_budget: int | None,
                  max_tool_calls: int | None, perception_model: str | None, overview_mode: str | None = None,
                  agent_option: list[str] | None = None) -> dict:
    """``AgentConfig`` values from the shared flags (unset flags keep the config's defaults)."""
    values: dict = {"max_frames": frames, **parse_agent_options(agent_option)}
    for key, value in (("max_steps", max_steps), ("overview_frames", overview_frames),
                       ("max_tokens", token_budget), ("max_tool_calls", max_tool_calls),
                       ("overview_mode", overview_mode)):
        if value is not None:
            values[key] = value
    if perception_model:
        values["perception"] = "delegated"
    return values
