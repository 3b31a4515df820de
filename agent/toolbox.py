"""The agent's tools: typed Python functions whose JSON schemas the model sees.

Each tool is a ``Toolbox`` method marked with ``@tool``; its schema is
derived from the method's signature and docstring, so code, schema and the
prompts (which list the tools from ``Toolbox.specs``) never drift apart.
The tools: ``search_frames``, ``view_frames``, ``resample_clip``,
``judge_options`` (choice questions: a verdict per option, with the frames
behind it) and ``answer``, whose arguments follow the question's answer kind
(an option letter, a number or a text). Adding a tool: one ``@tool`` method;
a strategy with tools of its own subclasses ``Toolbox`` (its ``toolbox_class``).

A tool call never raises for model misbehaviour: unknown tools, invalid
arguments, out-of-range timestamps and frame-budget overruns all come back as
an ``Observation`` whose text tells the model what happened.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from agent.backends.base import Backend, ImagePart, Message, TextPart, ToolCall, ToolSpec, Usage
from agent.config import AgentConfig
from agent.trace import FrameRef, FrameSource, OptionVerdict
from agent.verdicts import VerdictBoard
from prompts import load_prompt
from sleuth.answers import resolve_letter
from sleuth.errors import ConfigError, ModelUnavailableError, SleuthError, ToolUnavailableError

TOOL_ATTRIBUTE = "__sleuth_tool__"


def tool(fn: Callable | None = None, *, name: str | None = None, answer_kind: str | None = None) -> Any:
    """Mark a ``Toolbox`` method as a tool the model may call (as ``name``, default: the method's name).

    ``answer_kind`` marks a variant offered only for questions of that answer kind."""

    def mark(method: Callable) -> Callable:
        setattr(method, TOOL_ATTRIBUTE, {"name": name or method.__name__, "answer_kind": answer_kind})
        return method

    return mark(fn) if fn is not None else mark
TIME_LABEL = "t={t:.2f}s"
# A model call that failed for these reasons (after its retries) is the server's failure, not the request's.
SERVER_FAILURE_KINDS = frozenset({"rate_limit", "server", "timeout", "empty", "bad_response", "deadline"})


# --------------------------------------------------------------------------- schemas from signatures


def _docstring_parts(fn: Callable) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into the summary and the ``Args:`` descriptions."""
    doc = inspect.getdoc(fn) or ""
    summary, _, args_block = doc.partition("\nArgs:\n")
    params: dict[str, str] = {}
    current = None
    for line in textwrap.dedent(args_block).splitlines():
        match = re.match(r"^(\w+)(?: \([^)]*\))?:\s*(.*)$", line)
        if match:
            current = match.group(1)
            params[current] = match.group(2).strip()
        elif current and line.strip():
            params[current] += " " + line.strip()
    return " ".join(summary.split()), params


def _strip_titles(schema: Any) -> Any:
    """pydantic adds a ``title`` to every property; the model does not need them."""
    if isinstance(schema, dict):
        return {k: _strip_titles(v) for k, v in schema.items() if k != "title"}
    if isinstance(schema, list):
        return [_strip_titles(v) for v in schema]
    return schema


def _inline_refs(schema: dict) -> dict:
    """Replace ``$ref``s to ``$defs`` by the definitions themselves: several OpenAI-compatible servers
    do not resolve references in tool schemas."""
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return inline(schema)


def arguments_model(
    fn: Callable, *, exclude: tuple[str, ...] = (), defaults: dict[str, Any] | None = None
) -> type[BaseModel]:
    """A pydantic model of ``fn``'s keyword arguments (minus ``exclude``), described by its docstring."""
    key = _cache_key(fn, exclude, defaults)
    return _arguments_model(*key) if key is not None else _build_arguments_model(fn, exclude, defaults)


def _cache_key(fn: Callable, exclude: tuple[str, ...], defaults: dict[str, Any] | None) -> tuple | None:
    """(function, exclude, defaults) as a hashable key: every question's toolbox builds the same models and
    schemas (pydantic's create_model took 20 ms of CPU per question); None when a default is unhashable."""
    items = tuple(sorted((defaults or {}).items()))
    try:
        hash(items)
    except TypeError:
        return None
    return getattr(fn, "__func__", fn), tuple(exclude), items


@functools.lru_cache(maxsize=512)
def _arguments_model(func: Callable, exclude: tuple[str, ...], defaults: tuple) -> type[BaseModel]:
    return _build_arguments_model(func, exclude, dict(defaults))


@functools.lru_cache(maxsize=512)
def _schema(func: Callable, exclude: tuple[str, ...], defaults: tuple) -> dict[str, Any]:
    return _schema_of(_arguments_model(func, exclude, defaults))


def _schema_of(model: type[BaseModel]) -> dict[str, Any]:
    schema = _inline_refs(_strip_titles(model.model_json_schema()))
    schema.pop("additionalProperties", None)  # some servers reject it; extra keys are still refused on our side
    return schema


def _build_arguments_model(fn: Callable, exclude: tuple[str, ...], defaults: dict[str, Any] | None) -> type[BaseModel]:
    _, descriptions = _docstring_parts(fn)
    hints = get_type_hints(fn)
    fields: dict[str, Any] = {}
    for name, param in inspect.signature(fn).parameters.items():
        if name == "self" or name in exclude:
            continue
        default = (defaults or {}).get(name, param.default)
        default = ... if default is inspect.Parameter.empty else default
        fields[name] = (hints[name], Field(default, description=descriptions.get(name)))
    # NaN and infinity are refused like any invalid argument (they cannot be saved in a trace either)
    config = ConfigDict(extra="forbid", allow_inf_nan=False)
    return create_model(f"{fn.__name__}_arguments", __config__=config, **fields)


def tool_spec(
    fn: Callable, *, name: str | None = None, exclude: tuple[str, ...] = (), defaults: dict[str, Any] | None = None
) -> ToolSpec:
    """The ``ToolSpec`` (name, description, JSON schema) of a typed function."""
    summary, _ = _docstring_parts(fn)
    key = _cache_key(fn, exclude, defaults)
    schema = (copy.deepcopy(_schema(*key)) if key is not None  # the caller may change its copy
              else _schema_of(_build_arguments_model(fn, exclude, defaults)))
    return ToolSpec(name=name or fn.__name__, description=summary, parameters=schema)


def tools_for(cls: type, answer_kind: str) -> dict[str, str]:
    """Tool name -> method name of ``cls``'s ``@tool`` methods offered for ``answer_kind``, in definition order."""
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            mark = getattr(value, TOOL_ATTRIBUTE, None)
            if mark is not None and mark["answer_kind"] in (None, answer_kind):
                found[mark["name"]] = attr
    return found


def describe_tools(specs: list[ToolSpec]) -> str:
    """One line per tool for a prompt: ``- `name(arg, ...)`: description``."""
    return "\n".join(
        f"- `{spec.name}({', '.join(spec.parameters.get('properties', {}))})`: {spec.description}" for spec in specs
    )


# --------------------------------------------------------------------------- results


@dataclass
class AnswerRequest:
    """What the model passed to ``answer``, before it is checked: an option letter, or a value
    (a number or a text) for questions of those kinds."""

    option: str | None
    rationale: str
    evidence: list[float]
    value: float | str | None = None


@dataclass
class Observation:
    """The result of one tool call: what the model reads, what it is shown, what the trace keeps."""

    tool: str
    text: str
    frames: list[FrameRef] = field(default_factory=list)
    images: list[ImagePart] = field(default_factory=list)  # shown to the planner in the next user turn
    frames_shown: int = 0  # counted against the frame budget (to the planner or the perception model)
    error: str | None = None
    answer: AnswerRequest | None = None
    verdicts: list[OptionVerdict] = field(default_factory=list)  # judge_options: the verdicts it recorded
    confidence: int | None = None  # judge_answer (confidence strategy): how sure the model is, 1 to 3
    # the perception model's call, in delegated mode
    usage: Usage | None = None
    latency_s: float | None = None
    cost_usd: float | None = None
    model_calls: int = 0


class ToolInputError(SleuthError):
    """The model's arguments cannot be used; the message is shown to the model."""


# --------------------------------------------------------------------------- the tools


class Toolbox:
    """The agent's tools over one open video.

    ``call`` dispatches a ``ToolCall``; the tool methods themselves are plain
    typed functions (their signatures and docstrings are the schemas).
    """

    def __init__(
        self,
        *,
        video: Any,  # tools.video.Video
        video_path: str | Path,
        searcher: Any,  # tools.search.FrameSearcher
        config: AgentConfig,
        letters: list[str],
        options: list[str] | None = None,
        perception_backend: Backend | None = None,
        main_question: str = "",
        thumbnail: Callable[[Any], str] | None = None,
        answer_kind: str = "choice",
        frame_store: Any = None,  # tools.frame_store.FrameStore; None: one for this toolbox alone
    ):
        from tools.frame_store import FrameStore

        self.video = video
        self.video_path = str(video_path)
        self.searcher = searcher
        self.config = config
        self.letters = letters
        self.options = options or []
        self.perception_backend = perception_backend
        self.main_question = main_question
        self.delegated = config.perception == "delegated"
        if self.delegated and perception_backend is None:
            raise ValueError("delegated perception needs a perception backend")
        self.duration = float(video.meta.duration_s)
        self._thumbnail = thumbnail or (lambda image: ImagePart.from_array(image, max_side=config.thumb_side).data_url())
        # frames are shown as this renders them, each rendered once per run (and kept on the store's shelf)
        self.frame_store = frame_store if frame_store is not None else FrameStore()
        self.rendering = config.frame_rendering()
        self._frames_left = config.max_frames
        self.answer_kind = answer_kind
        self.board = VerdictBoard(letters)
        self.pixels_shown = 0  # width x height of every image made for a model
        defaults = {"k": config.search_k, "n": config.resample_n}
        # tool name -> method name
        self._tools = {name: attr for name, attr in tools_for(type(self), answer_kind).items() if self._offered(name)}
        self._models = {
            name: arguments_model(getattr(self, attr), exclude=self._exclude(name), defaults=defaults)
            for name, attr in self._tools.items()
        }
        self._specs = [
            tool_spec(getattr(self, attr), name=name, exclude=self._exclude(name), defaults=defaults)
            for name, attr in self._tools.items()
        ]

    @property
    def tool_names(self) -> list[str]:
        return list(self._tools)

    # ------------------------------------------------------------------ schemas
    def specs(self, only: tuple[str, ...] | None = None) -> list[ToolSpec]:
        """The tools' schemas as the model sees them (``only``: a subset, e.g. just ``answer``)."""
        return [s for s in self._specs if only is None or s.name in only]

    def _offered(self, name: str) -> bool:
        """Whether this run offers the tool ``name`` (the config can turn tools off)."""
        return name != "judge_options" or self.config.option_verdicts

    def _exclude(self, name: str) -> tuple[str, ...]:
        # the sub-question only means something when a perception model does the looking
        return ("question",) if not self.delegated and name in ("view_frames", "resample_clip") else ()

    # ------------------------------------------------------------------ dispatch
    def call(self, call: ToolCall, *, frames_left: int) -> Observation:
        """Run one tool call; never raises for a bad call, the observation says what was wrong."""
        self._frames_left = frames_left
        if call.name not in self._tools:
            return _error(call.name, f"unknown tool {call.name!r}; the tools are: {', '.join(self._tools)}")
        if call.error:
            return _error(call.name, f"the arguments are not a JSON object ({call.error}): {call.raw_arguments[:200]!r}")
        method = getattr(self, self._tools[call.name])
        try:
            args = self._models[call.name].model_validate(call.arguments)
        except ValidationError as exc:
            return _error(call.name, f"invalid arguments for {call.name}: {_validation_summary(exc)}")
        try:
            return method(**{name: getattr(args, name) for name in type(args).model_fields})  # nested models stay models
        except ToolInputError as exc:
            return _error(call.name, str(exc))
        except (ModelUnavailableError, ConfigError, ToolUnavailableError, OSError) as exc:
            # Not the model's doing (no CLIP weights, a cache that cannot be written): the question
            # cannot be answered as the method intends, so it fails instead of going on without the tool.
            raise ToolUnavailableError(f"{call.name} cannot work: {exc}") from None
        except SleuthError as exc:  # a video or index problem: the model can try something else
            return _error(call.name, f"{call.name} failed: {exc}")

    # ------------------------------------------------------------------ tools
    @tool
    def search_frames(self, query: str, k: int = 8, start: float | None = None, end: float | None = None) -> Observation:
        """Find the moments of the video that best match a short visual description (CLIP text-to-frame similarity). Returns a JSON list of {"t": seconds, "score": similarity}, best first; shows no images.

        Args:
            query: what would be visible in the frame, e.g. "a rabbit holding an apple".
            k: how many moments to return.
            start: only search from this time (seconds).
            end: only search up to this time (seconds).
        """
        if not query.strip():
            raise ToolInputError("search_frames needs a non-empty query")
        if k < 1:
            raise ToolInputError(f"k must be at least 1, got {k}")
        notes: list[str] = []
        if start is not None:
            start, note = self._clamp(start, "start")
            notes += [note] if note else []
        if end is not None:
            end, note = self._clamp(end, "end")
            notes += [note] if note else []
        if start is not None and end is not None and start >= end:
            raise ToolInputError(f"empty window: start {start:.2f}s is not before end {end:.2f}s" + _join(notes))
        hits = self.searcher.search(self.video_path, query, k=k, start=start, end=end, min_gap_s=self.config.min_gap_s)
        if hits and self.config.prefetch_hits:
            # the model often asks to see the best hits next: have them ready while it reads this result
            best = self.video.nearest_indices([h.t for h in hits[: self.config.prefetch_hits]]).tolist()
            self.frame_store.render_ahead(self.video, best, self.rendering)
        results = [{"t": round(float(h.t), 2), "score": round(float(h.score), 4)} for h in hits]
        frames = [FrameRef(t=float(h.t), source="search", score=float(h.score), shown=False) for h in hits]
        text = json.dumps(results)
        if not results:
            text += " (no frames in that window)"
        return Observation(tool="search_frames", text=text + _join(notes), frames=frames)

    @tool
    def view_frames(self, timestamps: list[float], question: str | None = None) -> Observation:
        """Look at the frames at these timestamps (seconds). They are shown to you in the next message, each labelled with its timestamp.

        Args:
            timestamps: the moments to look at, in seconds.
            question: what you want to know about these frames; a perception model looks at them and answers in words.
        """
        if not timestamps:
            raise ToolInputError("view_frames needs at least one timestamp")
        self._check_budget(len(timestamps), "view_frames")
        clamped, notes = [], []
        for t in timestamps:
            t2, note = self._clamp(t, "timestamp")
            clamped.append(t2)
            notes += [note] if note else []
        batch = self.look(self.video.nearest_indices(clamped).tolist())
        return self._show(batch, "view", "view_frames", question, notes)

    @tool
    def resample_clip(self, start: float, end: float, n: int = 8, question: str | None = None) -> Observation:
        """Look at n evenly spaced frames between start and end (seconds), to follow an action in detail. They are shown to you in the next message, each labelled with its timestamp.

        Args:
            start: window start, in seconds.
            end: window end, in seconds.
            n: how many frames to take from the window.
            question: what you want to know about these frames; a perception model looks at them and answers in words.
        """
        if n < 1:
            raise ToolInputError(f"n must be at least 1, got {n}")
        start, note_start = self._clamp(start, "start")
        end, note_end = self._clamp(end, "end")
        notes = [n_ for n_ in (note_start, note_end) if n_]
        if start >= end:
            raise ToolInputError(f"empty window: start {start:.2f}s is not before end {end:.2f}s" + _join(notes))
        self._check_budget(n, "resample_clip")
        batch = self.look(self.video.window_indices(start, end, n))
        return self._show(batch, "resample", "resample_clip", question, notes)

    @tool(answer_kind="choice")
    def judge_options(self, verdicts: list[OptionVerdict]) -> Observation:
        """Record what the evidence says about options: "supported", "refuted" or "unknown", each with the timestamps of the frames behind it. A later verdict on an option replaces the earlier one. Shows no images.

        Args:
            verdicts: one entry per option judged now: {"option": letter, "verdict": "supported" | "refuted" | "unknown", "times": [seconds], "note": why, in a few words}.
        """
        if not verdicts:
            raise ToolInputError("judge_options needs at least one verdict")
        checked: list[OptionVerdict] = []
        for verdict in verdicts:
            letter = resolve_letter(verdict.option, self.letters, self.options)
            if letter is None:
                raise ToolInputError(f"{verdict.option!r} is not one of this question's letters ({', '.join(self.letters)})")
            times = [self._clamp(t, "time")[0] for t in verdict.times]
            checked.append(verdict.model_copy(update={"option": letter, "times": times}))
        self.board.update(checked)
        return Observation(tool="judge_options", text=self.board.summary(), verdicts=checked)

    @tool(answer_kind="choice")
    def answer(self, option: str, rationale: str, evidence: list[float]) -> Observation:
        """Give your final answer. This ends the task.

        Args:
            option: the letter of the chosen option, e.g. "B".
            rationale: why the evidence supports this option, in one to three sentences.
            evidence: timestamps (seconds) of the frames that support the answer.
        """
        request = AnswerRequest(option=option, rationale=rationale, evidence=[float(t) for t in evidence])
        return Observation(tool="answer", text=f"answer {option!r} received", answer=request)

    @tool(name="answer", answer_kind="number")
    def answer_number(self, value: float, rationale: str, evidence: list[float]) -> Observation:
        """Give your final answer, a number. This ends the task.

        Args:
            value: the number that answers the question, e.g. 3 or 2.5.
            rationale: why the evidence supports this value, in one to three sentences.
            evidence: timestamps (seconds) of the frames that support the answer.
        """
        request = AnswerRequest(option=None, value=float(value), rationale=rationale,
                                evidence=[float(t) for t in evidence])
        return Observation(tool="answer", text=f"answer {value:g} received", answer=request)

    @tool(name="answer", answer_kind="text")
    def answer_text(self, text: str, rationale: str, evidence: list[float]) -> Observation:
        """Give your final answer, in a few words. This ends the task.

        Args:
            text: the answer, as short as it can be.
            rationale: why the evidence supports this answer, in one to three sentences.
            evidence: timestamps (seconds) of the frames that support the answer.
        """
        request = AnswerRequest(option=None, value=text.strip(), rationale=rationale,
                                evidence=[float(t) for t in evidence])
        return Observation(tool="answer", text=f"answer {text.strip()[:80]!r} received", answer=request)

    # ------------------------------------------------------------------ helpers
    def _clamp(self, t: float, what: str) -> tuple[float, str | None]:
        if 0.0 <= t <= self.duration:
            return float(t), None
        clamped = min(max(float(t), 0.0), self.duration)
        return clamped, f"{what} {t:g}s is outside the video (0 to {self.duration:.2f}s); clamped to {clamped:.2f}s"

    def _check_budget(self, wanted: int, tool: str) -> None:
        if wanted > self._frames_left:
            raise ToolInputError(
                f"frame budget: {tool} asks for {wanted} frames but only {self._frames_left} of "
                f"{self.config.max_frames} are left; ask for at most {self._frames_left}, or answer"
            )

    def _show(self, batch: Any, source: FrameSource, tool: str, question: str | None, notes: list[str]) -> Observation:
        frames = [f for f in batch.frames]
        notes = list(notes) + [f"frame {index} could not be decoded ({reason})" for index, reason in batch.skipped]
        if not frames:
            raise ToolInputError(f"{tool}: no frame could be decoded there" + _join(notes))
        refs = [FrameRef(t=f.t, source=source, thumb=self.thumbnail(f)) for f in frames]
        images = [self.image_part(f) for f in frames]
        labels = ", ".join(TIME_LABEL.format(t=f.t) for f in frames)
        left = self._frames_left - len(frames)
        if not self.delegated:
            text = f"showing {len(frames)} frames ({labels}) in the next message; {left} of {self.config.max_frames} frames left"
            return Observation(tool=tool, text=text + _join(notes), frames=refs, images=images, frames_shown=len(frames))
        # delegated: the perception model looks, the planner reads its words
        request = question.strip() if question and question.strip() else load_prompt(
            "agent_perception_describe").text.strip().format(question=self.main_question)
        reply, error = self.perceive(images, request)
        if error:
            return Observation(tool=tool, text=f"{tool} failed: {error}" + _join(notes), error=error)
        text = f"perception model on {labels}: {reply.text.strip() or '(empty reply)'}"
        text += f"\n{left} of {self.config.max_frames} frames left"
        return Observation(
            tool=tool, text=text + _join(notes), frames=refs, frames_shown=len(frames),
            usage=reply.usage, latency_s=reply.latency_s, cost_usd=reply.cost_usd, model_calls=1,
        )

    def look(self, indices: list[int]) -> Any:
        """Frames as the model receives them, in the order given (a ``tools.frame_store.RenderedBatch``):
        kept from earlier, or decoded and rendered now."""
        return self.frame_store.render(self.video, indices, self.rendering)

    def image_part(self, frame: Any) -> ImagePart:
        """A rendered frame (``look``) as an image for a model, labelled with its time and counted."""
        part = ImagePart.from_rendered(frame.image, detail=self.config.image_detail, label=TIME_LABEL.format(t=frame.t))
        self.count_pixels(part)
        return part

    def count_pixels(self, part: ImagePart) -> None:
        """Add an image made for a model to ``pixels_shown`` (rows report pixels beside frames)."""
        self.pixels_shown += part.width * part.height

    def perceive(self, images: list[ImagePart], request: str) -> tuple[Any, str | None]:
        """Ask the perception model about ``images``; returns (reply, None) or (None, error).

        A perception model that cannot be reached raises (the question fails as an error row); one
        that cannot handle this request (e.g. too many images for a local model) is reported to the planner.
        """
        prompt = load_prompt("agent_perception").text.strip().format(n_frames=len(images), request=request)
        message = Message(role="user", content=[TextPart(text=prompt), *images])
        try:
            return self.perception_backend.chat([message]), None
        except SleuthError as exc:
            if exc.config_class or exc.kind in SERVER_FAILURE_KINDS:
                raise
            return None, f"the perception model failed: {exc}"

    def thumbnail(self, frame: Any) -> str:
        """The trace's thumbnail of a frame: a decoded one (``.image`` an array), or a rendered one, made
        from the image the model received (once per run: ``FrameStore.thumbnail``)."""
        if isinstance(frame.image, np.ndarray):
            return self._thumbnail(frame.image)
        small = self.frame_store.thumbnail(self.video, frame, self.rendering, self.config.thumb_side)
        return ImagePart.from_rendered(small).data_url()


def _error(tool: str, message: str) -> Observation:
    return Observation(tool=tool, text=f"error: {message}", error=message)


def _join(notes: list[str]) -> str:
    return "".join(f"\nnote: {n}" for n in notes)


def _validation_summary(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ())) or "arguments"
        if err.get("type") == "extra_forbidden":
            parts.append(f"unexpected argument {where!r}")
        elif err.get("type") == "missing":
            parts.append(f"missing argument {where!r}")
        else:
            parts.append(f"{where}: {err.get('msg')} (got {err.get('input')!r})")
    return "; ".join(parts)
