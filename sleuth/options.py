"""Command-line options every command shares, defined once so that a flag means the same everywhere.

The option groups live beside what they configure: the model backend in
``agent.backends.options``, the frame index in ``tools.options``, the agent's
budgets in ``agent.options``; this module holds the output options. Across
commands:

- ``-o/--out``: where the command writes its result (a run directory, a
  report folder, a trace file);
- ``--json``: the result as JSON on stdout, everything else on stderr;
- ``--frames``: the frames one question may show a model, in every method;
- ``--device``: where an in-process model runs (transformers backend);
  ``--clip-device``: where CLIP runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

OUTPUT_PANEL = "Output"

OutOpt = Annotated[
    Optional[Path],
    typer.Option("--out", "-o", rich_help_panel=OUTPUT_PANEL,
                 help="Where to write the result: eval a run directory (re-running resumes it), report a folder, "
                 "ask and trace html a file."),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", rich_help_panel=OUTPUT_PANEL, help="Print the result as JSON on stdout.")
]
FramesOpt = Annotated[
    Optional[int],
    typer.Option("--frames", min=1, show_default=False,
                 help="Frames one question may show a model: the uniform method's frames per question, the agent's "
                 "total (overview included), so methods compare at equal frames. Default: the benchmark's "
                 "official protocol (MMR-V: 32)."),
]
