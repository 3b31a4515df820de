"""``sleuth trace``: look at one reasoning trace as a web page, a terminal tree, DOT or Mermaid."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from agent.trace import Trace
from sleuth.errors import SleuthError

TRACE_ARG_HELP = "A trace JSON file (a run directory's traces/<question_id>.json)."
JSON_HELP = "Print a JSON object instead of text."


def _load(path: Path) -> Trace:
    from eval.views.browser import load_trace

    return load_trace(path)


def _video_for(trace: Trace, trace_file: Path, override: Path | None) -> Path | None:
    """The trace's video: as given, else relative to the trace file's folder (runs keep relative paths)."""
    if override is not None:
        if not override.is_file():
            raise SleuthError(f"{override}: video not found")
        return override
    given = Path(trace.video)
    if given.is_file() or given.is_absolute():
        return given
    beside = trace_file.parent / given
    return beside if beside.is_file() else given


def _write_text(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise SleuthError(f"{path}: cannot write ({exc.strerror or exc})") from None


def _emit_graph(kind: str, text: str, output: Path | None, as_json: bool) -> None:
    if output is not None:
        _write_text(output, text)
    if as_json:
        typer.echo(json.dumps({"format": kind, "path": str(output) if output else None, "text": text}))
    elif output is None:
        typer.echo(text, nl=False)
    else:
        typer.echo(f"wrote {output}")


def register(app: typer.Typer) -> None:
    trace_app = typer.Typer(
        help="Inspect one reasoning trace: a self-contained HTML page, a terminal tree, Graphviz DOT or Mermaid.",
        no_args_is_help=True,
    )
    app.add_typer(trace_app, name="trace")

    @trace_app.command("html")
    def html_command(
        trace_file: Path = typer.Argument(..., help=TRACE_ARG_HELP, show_default=False),
        output: Path | None = typer.Option(
            None, "-o", "--out", help="Where to write the page (default: the trace's name with .html)."
        ),
        video: Path | None = typer.Option(
            None, "--video", help="The video file, when the path recorded in the trace does not resolve here."
        ),
        thumbnails: bool = typer.Option(
            True, "--thumbnails/--no-thumbnails", help="Decode missing frame thumbnails from the video if it is reachable."
        ),
        as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    ) -> None:
        """Write a self-contained HTML page (no network, images embedded) for one trace.

        It shows the question, options, chosen and gold answer, and a timeline of every frame seen.

        Below: the reasoning graph step by step, with tokens, latency and cost per step and in total.
        """
        from eval.views.analysis import evidence_flags
        from eval.views.html import write_trace_html

        trace = _load(trace_file)
        out = output or trace_file.with_suffix(".html")
        video_path = _video_for(trace, trace_file, video) if thumbnails else None
        path = write_trace_html(trace, out, video_path=video_path, extract_thumbnails=thumbnails)
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "path": str(path),
                        "question_id": trace.question_id,
                        "frames": len(trace.frames()),
                        "evidence_frames": sum(evidence_flags(trace)),
                        "bytes": path.stat().st_size,
                    }
                )
            )
        else:
            typer.echo(f"wrote {path}")

    @trace_app.command("show")
    def show_command(
        trace_file: Path = typer.Argument(..., help=TRACE_ARG_HELP, show_default=False),
        as_json: bool = typer.Option(False, "--json", help="Print the same outline as JSON (frames without thumbnails)."),
    ) -> None:
        """Print the reasoning graph as a tree: steps, thoughts, tool calls, observations with frame times, answer."""
        from eval.views.tree import trace_outline, trace_tree

        trace = _load(trace_file)
        if as_json:
            typer.echo(json.dumps(trace_outline(trace), ensure_ascii=False))
            return
        Console(highlight=False).print(trace_tree(trace))

    @trace_app.command("dot")
    def dot_command(
        trace_file: Path = typer.Argument(..., help=TRACE_ARG_HELP, show_default=False),
        output: Path | None = typer.Option(None, "-o", "--out", help="Write to this file instead of printing."),
        as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    ) -> None:
        """Export the reasoning graph as Graphviz DOT (render with: dot -Tpdf trace.dot -o trace.pdf)."""
        from eval.views.export import to_dot

        _emit_graph("dot", to_dot(_load(trace_file)), output, as_json)

    @trace_app.command("mermaid")
    def mermaid_command(
        trace_file: Path = typer.Argument(..., help=TRACE_ARG_HELP, show_default=False),
        output: Path | None = typer.Option(None, "-o", "--out", help="Write to this file instead of printing."),
        as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    ) -> None:
        """Export the reasoning graph as a Mermaid flowchart (for Markdown, slides and notebooks)."""
        from eval.views.export import to_mermaid

        _emit_graph("mermaid", to_mermaid(_load(trace_file)), output, as_json)
