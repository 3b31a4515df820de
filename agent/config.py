"""The agent's budgets and knobs, recorded verbatim in every trace."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class AgentConfig(BaseModel):
    """Budgets and display settings for one agent run.

    ``max_frames`` counts every frame shown to a model, overview included,
    so that the agent and the end-to-end baseline compare at equal frames.
    """

    model_config = ConfigDict(extra="forbid")

    overview_frames: int | None = Field(
        None, ge=0, description="uniform frames shown before the first planning step; None: a quarter of "
        "max_frames, at most 8 (8 of the default 32)"
    )
    overview_mode: Literal["frames", "contact_sheet"] = Field(
        "frames", description="frames: the overview frames one image each; contact_sheet: tiled into sheets of "
        "sheet_tiles frames (each tile still counts as a frame)"
    )
    sheet_tiles: int = Field(8, ge=1, description="frames per contact sheet, in rows of 4")
    max_steps: int = Field(8, ge=1, description="planning steps (model calls with tools) before the final answer is forced")
    max_frames: int = Field(32, ge=0, description="frames shown to a model in total, overview included")
    max_tokens: int | None = Field(
        100_000, ge=1, description="total prompt + completion tokens over the run; None: no limit"
    )
    max_tool_calls: int = Field(
        8, ge=1, description="tool calls run per planning step; further calls in the same reply are not run"
    )
    search_k: int = Field(8, ge=1, description="default number of hits for search_frames")
    prefetch_hits: int = Field(
        2, ge=0, description="best search hits decoded in the background while the model reads the search "
        "result (speed only: what the model sees is unchanged; needs a run's frame store)"
    )
    min_gap_s: float = Field(2.0, ge=0, description="temporal non-maximum suppression gap for search hits")
    resample_n: int = Field(8, ge=1, description="default number of frames for resample_clip")
    image_max_side: int | None = Field(
        768, ge=16, description="longest side of frames sent to a model, in pixels; None: full resolution"
    )
    image_detail: Literal["auto", "low", "high"] | None = Field(None, description="image detail hint for the server")
    thumb_side: int = Field(160, ge=16, description="longest side of the thumbnails stored in the trace")
    perception: Literal["direct", "delegated"] = Field(
        "direct", description="direct: the planner sees frames; delegated: a perception model describes them"
    )

    option_verdicts: bool = Field(
        True, description="choice questions: offer judge_options, which records supported / refuted / unknown per "
        "option with the timestamps behind each"
    )
    answer_rule: Literal["free", "elimination"] = Field(
        "free", description="free: answer any time; elimination: an answer is refused while more than one option "
        "still stands (not refuted), until a budget runs out"
    )
    confidence_rounds: int = Field(3, ge=1, description="confidence strategy: answer-and-rate rounds at most")
    caption_segments: int = Field(8, ge=1, description="captions strategy: segments the video is described in")
    caption_frames: int = Field(2, ge=1, description="captions strategy: frames shown per segment (each counts)")

    @property
    def overview_in_sheets(self) -> bool:
        """Whether the overview tiles decoded frames into contact sheets (else each frame is shown rendered)."""
        return self.overview_mode == "contact_sheet" and self.perception != "delegated"

    def frame_rendering(self) -> Any:
        """How frames become the images the agent shows (a ``tools.rendering.Rendering``): at ``image_max_side``."""
        from tools.rendering import Rendering

        return Rendering(self.image_max_side)

    @model_validator(mode="after")
    def _default_overview(self) -> "AgentConfig":
        # The overview must leave frames to look with: a quarter of the budget, at most 8.
        if self.overview_frames is None:
            self.overview_frames = min(8, max(1, self.max_frames // 4)) if self.max_frames else 0
        return self
