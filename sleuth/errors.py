"""Error types shared by every part of sleuth.

Every error a user can cause (bad file, bad row, unreachable server) is a
``SleuthError``: its message is one line that says what went wrong and, where
possible, what to do. The command line prints that line and exits non-zero,
never a traceback.
"""


class SleuthError(Exception):
    """Base class for errors with a user-facing one-line message."""

    exit_code = 2

    def __str__(self) -> str:  # one line, always
        return " ".join(super().__str__().split())


class ConfigError(SleuthError):
    """Invalid settings or flags."""


class ModelUnavailableError(SleuthError):
    """Weights or a model could not be loaded (often: no network, no local copy)."""
