"""The metric math: the registry of per-token metrics with their metadata (registry.py),
the numeric building blocks they share (kernels.py) and the nucleus search behind the
truncated js columns (nucleus.py). `core.metrics` re-exports the registry's public names."""

from core.metrics.registry import *  # noqa: F401,F403
