"""The decoding an experiment samples with: by default the one the run's traces were
sampled with (its manifest's config top_p and temperature), with the paper's (top-p 0.7,
temperature 1) one choice away and named as the paper's.

Cross-sampling, forks and live experiments read their defaults here, so a sweep on a run
sampled at top-p 1 measures the gap the run's own traces show, not the one a different
nucleus would (the demo's RL gain lives in the tail that top-p 0.7 removes). This module
only reads a run's recorded settings (core.store.run.Run); it samples nothing.
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


def of_run(run) -> Decoding:
    """The decoding a run's traces were sampled with (a core.store.run.Run: its recorded
    top_p and temperature; their defaults, 1 and 1, when it does not say, or run None)."""
    if run is None:
        return Decoding(1.0, 1.0, RUN)
    return Decoding(float(run.sampling_top_p), float(run.sampling_temperature), RUN)


def paper() -> Decoding:
    return Decoding(PAPER_TOP_P, PAPER_TEMPERATURE, PAPER)


def resolve(choice: str, run, top_p: float | None = None,
            temperature: float | None = None) -> Decoding:
    """`choice` (run or paper) with explicit top_p / temperature overriding it (then the
    source is "custom" unless they equal the choice's own values)."""
    if choice not in CHOICES:
        raise ValueError(f"decoding must be one of {', '.join(CHOICES)}, got {choice!r}")
    d = of_run(run) if choice == RUN else paper()
    tp = d.top_p if top_p is None else float(top_p)
    t = d.temperature if temperature is None else float(temperature)
    same = abs(tp - d.top_p) < 1e-12 and abs(t - d.temperature) < 1e-12
    return Decoding(tp, t, d.source if same else "custom")
