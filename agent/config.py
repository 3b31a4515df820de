"""The agent's budgets and knobs, recorded verbatim in every trace."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class AgentConfig(BaseModel):
    """Budgets and display settings for one agent run.

    ``max_frames`` counts every frame shown to a model, overview included,
    so that the agent and the end-to-end baseline compare at equal frames.
    """

    model_config = ConfigDict(extra="forbid")

    overview_frames: int = Field(8, ge=0, description="uniform frames shown before the first planning step")
    max_steps: int = Field(8, ge=1, description="planning steps (model calls with tools) before the final answer is forced")
    max_frames: int = Field(32, ge=0, description="frames shown to a model in total, overview included")
    max_tokens: int | None = Field(
        100_000, ge=1, description="total prompt + completion tokens over the run; None: no limit"
    )
    search_k: int = Field(8, ge=1, description="default number of hits for search_frames")
    min_gap_s: float = Field(2.0, ge=0, description="temporal non-maximum suppression gap for search hits")
    resample_n: int = Field(8, ge=1, description="default number of frames for resample_clip")
    image_max_side: int = Field(768, ge=16, description="longest side of frames sent to a model, in pixels")
    image_detail: Literal["auto", "low", "high"] | None = Field(None, description="image detail hint for the server")
    thumb_side: int = Field(160, ge=16, description="longest side of the thumbnails stored in the trace")
    perception: Literal["direct", "delegated"] = Field(
        "direct", description="direct: the planner sees frames; delegated: a perception model describes them"
    )
