"""The decoding an experiment samples with: by default the one the run's traces were
sampled with (its manifest's config top_p and temperature), with the paper's (top-p 0.7,
temperature 1) one choice away and named as the paper's.

Cross-sampling, forks and live experiments read their defaults here, so a sweep on a run
sampled at top-p 1 measures the gap the run's own traces show, not the one a different
nucleus would (the demo's RL gain lives in the tail that top-p 0.7 removes). This module
only reads a manifest dict; it samples nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

RUN, PAPER = "run", "paper"
CHOICES = (RUN, PAPER)
PAPER_TOP_P, PAPER_TEMPERATURE = 0.7, 1.0


@dataclass(frozen=True)
class Decoding:
    top_p: float
    temperature: float
    source: str  # "run" | "paper" | "custom"

    def label(self) -> str:
        """'the run's decoding (top-p 1, temperature 1, from its manifest)', ..."""
        what = f"top-p {self.top_p:g}, temperature {self.temperature:g}"
        if self.source == RUN:
            return f"the run's decoding ({what}, from its manifest)"
        if self.source == PAPER:
            return f"the paper's decoding ({what})"
        return f"a custom decoding ({what})"


def of_run(manifest: dict | None) -> Decoding:
    """The decoding the run's traces were sampled with (PrecomputeConfig's top_p and
    temperature as its manifest stores them; their defaults, 1 and 1, when it does not)."""
    cfg = (manifest or {}).get("config") or {}
    top_p = cfg.get("top_p")
    temperature = cfg.get("temperature")
    return Decoding(float(1.0 if top_p is None else top_p),
                    float(1.0 if temperature is None else temperature), RUN)


def paper() -> Decoding:
    return Decoding(PAPER_TOP_P, PAPER_TEMPERATURE, PAPER)


def resolve(choice: str, manifest: dict | None, top_p: float | None = None,
            temperature: float | None = None) -> Decoding:
    """`choice` (run or paper) with explicit top_p / temperature overriding it (then the
    source is "custom" unless they equal the choice's own values)."""
    if choice not in CHOICES:
        raise ValueError(f"decoding must be one of {', '.join(CHOICES)}, got {choice!r}")
    d = of_run(manifest) if choice == RUN else paper()
    tp = d.top_p if top_p is None else float(top_p)
    t = d.temperature if temperature is None else float(temperature)
    same = abs(tp - d.top_p) < 1e-12 and abs(t - d.temperature) < 1e-12
    return Decoding(tp, t, d.source if same else "custom")
