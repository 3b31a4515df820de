"""Directory indexing as a Ray Data pipeline: ``sleuth index DIR --engine ray``."""

from __future__ import annotations

from sleuth.errors import ConfigError


def require_ray():
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ConfigError("--engine ray needs Ray: pip install 'sleuth[ray]'") from None
    return ray
