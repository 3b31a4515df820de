"""Benchmarks, one folder each, registered by name: ``get_benchmark("mmr_v")``; see ``eval.benchmarks.base``."""

from eval.benchmarks import mmr_v  # noqa: F401  (the built-in benchmarks register themselves)
from eval.benchmarks import videommmu  # noqa: F401
from eval.benchmarks import vsibench  # noqa: F401
from eval.benchmarks import video_holmes  # noqa: F401
from eval.benchmarks.base import (
    REGISTRY,
    Benchmark,
    DownloadOutcome,
    Extraction,
    Grouping,
    Reference,
    mean_relative_accuracy,
    register_benchmark,
)
from sleuth.errors import ConfigError


def get_benchmark(name: str, variant: str | None = None) -> Benchmark:
    """The benchmark registered as ``name`` (with one of its protocol ``variants``)."""
    try:
        return REGISTRY[name](variant=variant)
    except KeyError:
        raise ConfigError(f"unknown benchmark {name!r}; choose one of: {', '.join(benchmark_names())}") from None


def benchmark_names() -> list[str]:
    return sorted(REGISTRY)


__all__ = [
    "Benchmark", "DownloadOutcome", "Extraction", "Grouping", "Reference", "benchmark_names", "get_benchmark",
    "mean_relative_accuracy", "register_benchmark",
]
