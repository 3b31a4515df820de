"""Agent budgets: the overview leaves frames to look with."""

import pytest
from pydantic import ValidationError

from agent.config import AgentConfig


@pytest.mark.parametrize(("max_frames", "overview"), [(32, 8), (64, 8), (16, 4), (8, 2), (3, 1), (0, 0)])
def test_default_overview_is_a_quarter_of_the_frame_budget_at_most_8(max_frames, overview):
    assert AgentConfig(max_frames=max_frames).overview_frames == overview


def test_explicit_overview_wins():
    assert AgentConfig(max_frames=8, overview_frames=8).overview_frames == 8
    assert AgentConfig(overview_frames=None, max_frames=32).overview_frames == 8


def test_negative_budgets_are_refused():
    with pytest.raises(ValidationError):
        AgentConfig(overview_frames=-1)
