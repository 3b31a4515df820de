"""Agent strategies: the order of steps over the shared tools, budgets and trace recorder, by name.

A strategy gets an ``AgentContext`` (the planner backend, the ``Toolbox`` over
one open video, the ``TraceRecorder``, the budgets and the question) and runs
until it has recorded a final answer with ``context.recorder.finish``. It
returns a small state dict (``step``, ``frames_shown``, ``frontier``) that
``agent.run.solve`` folds into the trace's totals. A ``SleuthError`` it
raises (a tool that cannot work, the deadline) ends the question as a failure.

Adding one: a class with ``name``, ``prompt_names`` and ``run(context,
on_event)``, decorated with ``@register_strategy``; a strategy with tools of
its own names a ``Toolbox`` subclass as ``toolbox_class``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ClassVar

from agent.toolbox import Toolbox
from tools.video import uniform_indices

if TYPE_CHECKING:
    from agent.state import AgentContext

EventSink = Callable[[dict], None]


class Strategy:
    """Base class; subclasses set ``name`` and ``prompt_names`` and implement ``run``."""

    name: ClassVar[str]
    prompt_names: ClassVar[tuple[str, ...]] = ()  # every prompt file it may send (their hashes go in traces)
    toolbox_class: ClassVar[type[Toolbox]] = Toolbox  # the tools its runs get

    def run(self, context: "AgentContext", on_event: EventSink | None = None) -> dict[str, Any]:
        raise NotImplementedError

    def opening_frames(self, config: Any) -> int:
        """How many uniform frames its first look at a video shows (the overview); 0: none."""
        return max(0, min(config.overview_frames or 0, config.max_frames))

    def kept_frames(self, config: Any, cache_dir: Any) -> Any:
        """What an index build keeps for this strategy's runs (a ``tools.frame_shelf.KeepFrames``): every frame
        it samples as the agent shows them, and the overview frames shown one by one, so that a search hit
        and the first look at a video are shown without decoding."""
        from tools.frame_shelf import KeepFrames

        opening = 0 if config.overview_in_sheets else self.opening_frames(config)
        return KeepFrames(cache_dir, config.frame_rendering(), uniform=(opening,) if opening else ())

    def opening_indices(self, config: Any, n_frames: int) -> list[int]:
        """The frames its first look at a video will read (decoded ahead while another video's questions
        run, and kept by the index build): the uniform overview's, as ``Video.sample_uniform`` picks them."""
        n = self.opening_frames(config)
        return uniform_indices(n_frames, n) if n > 0 and n_frames > 0 else []


REGISTRY: dict[str, type[Strategy]] = {}


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make ``cls`` available by ``cls.name`` (``--strategy NAME``)."""
    REGISTRY[cls.name] = cls
    return cls


