"""The ``sleuth`` command: one typer app, subcommands registered per area.

Each area owns its commands in its own module (``tools/cli.py``,
``agent/cli.py``, ``eval/cli.py``, ``eval/views/cli.py``); this module only
assembles them and turns ``SleuthError`` into a one-line message and a
non-zero exit status.
"""

from __future__ import annotations

import importlib
import sys

import typer

from sleuth import __version__
from sleuth.errors import SleuthError
from sleuth.redact import redact

app = typer.Typer(
    name="sleuth",
    help="Agentic video reasoning: CLIP frame search, evidence mining, MMR-V evaluation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# (module, attribute) pairs; each attribute is a function ``register(app)``.
_COMMAND_MODULES = [
    "tools.cli",
    "agent.cli",
    "eval.cli",
    "eval.views.cli",
]


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"sleuth {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Agentic video reasoning: CLIP frame search, evidence mining, MMR-V evaluation."""


def _register_all() -> None:
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # area not built yet
                continue
            raise
        module.register(app)


_register_all()


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, standalone_mode=True)
    except SleuthError as exc:
        typer.secho(redact(f"error: {exc}"), fg=typer.colors.RED, err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        sys.exit(130)
