"""Ray is an optional extra (``pip install 'sleuth[ray]'``): imported only where ``--engine ray`` is asked for."""

from __future__ import annotations

from sleuth.errors import ConfigError


def require_ray():
    """The ``ray`` module (with Ray Data), or a one-line error saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ConfigError("--engine ray needs Ray: pip install 'sleuth[ray]'") from None
    return ray
