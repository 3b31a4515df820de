"""What flows through the agent graph (state) and what stays fixed for a run (context)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from agent.answer_texts import AnswerTexts
from agent.backends.base import Backend, Message, ToolCall
from agent.config import AgentConfig
from agent.recorder import TraceRecorder
from agent.toolbox import Toolbox
from agent.trace import FinalAnswer


class PendingCall(TypedDict):
    call: ToolCall
    node_id: str  # the trace's tool_call node


class AgentState(TypedDict, total=False):
    messages: list[Message]  # the planner's conversation so far
    step: int  # planning calls made
    frames_shown: int  # frames shown to any model, overview included
    tokens_used: int  # prompt + completion tokens over every model call
    pending: list[PendingCall]  # tool calls from the last planning call, not run yet
    frontier: list[str]  # trace nodes the next step follows (``next`` edges)
    prompting: list[str]  # observations the next tool calls were made after reading (``prompted`` edges)
    reasked: bool  # the one re-ask for an invalid answer has been used
    final_attempts: int  # calls made for the forced final answer
    exhausted: str | None  # which budget ran out, as told to the model
    final: FinalAnswer | None
    dropped_calls: int  # tool calls of the last planning reply beyond max_tool_calls, not run


@dataclass
class AgentContext:
    """Run-scoped dependencies, handed to every graph node by langgraph."""

    backend: Backend
    toolbox: Toolbox
    recorder: TraceRecorder
    config: AgentConfig
    question: str
    options: list[str]
    letters: list[str]
    answer_kind: str = "choice"

    @property
    def answer_texts(self) -> AnswerTexts:
        """How the prompts speak of the expected answer."""
        return AnswerTexts(self.answer_kind, self.letters, self.options)

    @property
    def delegated(self) -> bool:
        return self.config.perception == "delegated"
