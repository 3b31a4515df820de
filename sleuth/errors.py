"""Error types shared by every part of sleuth.

Every error a user can cause (bad file, bad row, unreachable server) is a
``SleuthError``: its message is one line that says what went wrong and, where
possible, what to do. The command line prints that line and exits non-zero,
never a traceback.

Each error has a ``kind`` (``"connection"``, ``"auth"``, ``"video"``, ...)
recorded in error rows. Kinds in ``CONFIG_CLASS_KINDS`` are failures that
repeat identically for every question (a dead server URL, a wrong key or
model name, a tool that cannot work): the runner's circuit breaker stops a
run after a few of them in a row instead of paying for the rest.
"""

from __future__ import annotations

# Failures that no other question will escape: retrying question by question only wastes time.
CONFIG_CLASS_KINDS = frozenset({"connection", "auth", "not_found", "tool_unavailable", "model_unavailable", "config"})


class SleuthError(Exception):
    """Base class for errors with a user-facing one-line message."""

    exit_code = 2
    kind = "error"

    def __str__(self) -> str:  # one line, always
        return " ".join(super().__str__().split())

    @property
    def config_class(self) -> bool:
        """True when the same failure will hit every other question too."""
        return self.kind in CONFIG_CLASS_KINDS


class ConfigError(SleuthError):
    """Invalid settings or flags."""

    kind = "config"


class ModelUnavailableError(SleuthError):
    """Weights or a model could not be loaded (often: no network, no local copy)."""

    kind = "model_unavailable"


class ToolUnavailableError(SleuthError):
    """A tool cannot do its job for reasons outside the model's control (no CLIP weights, cache not writable)."""

    kind = "tool_unavailable"


class StorageError(SleuthError):
    """The run directory cannot be written (disk full, permissions): nothing more can be saved, so the run stops."""

    kind = "storage"


class DeadlineExceeded(SleuthError):
    """A question ran past its time limit."""

    kind = "deadline"
