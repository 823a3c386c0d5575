"""Decoding defaults come from the run's manifest; the paper's is one choice away."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.experiments import decoding
from core.experiments.cross_sampling.config import CrossSampleConfig
from core.store.run import Run

pytestmark = pytest.mark.unit


def test_run_decoding_is_the_default_and_the_paper_is_named():
    def run(**manifest) -> Run:
        return Run("x", Path("x"), manifest)

    man = run(config={"top_p": 1.0, "temperature": 1.0, "js_top_p": 0.7})
    d = decoding.resolve(CrossSampleConfig(run="x").decoding, man)
    assert (d.top_p, d.temperature, d.source) == (1.0, 1.0, "run")
    assert "the run's decoding (top-p 1, temperature 1" in d.label()
    p = decoding.resolve("paper", man)
    assert (p.top_p, p.source) == (0.7, "paper") and "the paper's" in p.label()
    # an explicit value overrides the choice and says so
    c = decoding.resolve("run", run(config={"top_p": 0.9, "temperature": 0.6}), top_p=0.5)
    assert (c.top_p, c.temperature, c.source) == (0.5, 0.6, "custom")
    assert decoding.of_run(run()) == decoding.Decoding(1.0, 1.0, "run")  # manifest silent
    assert decoding.of_run(None) == decoding.Decoding(1.0, 1.0, "run")
    with pytest.raises(ValueError, match="decoding must be one of run, paper"):
        decoding.resolve("nucleus", man)


def test_cli_defaults_read_the_run():
    import argparse

    from core.config import add_arguments, from_args
    parser = argparse.ArgumentParser()
    add_arguments(parser, CrossSampleConfig)
    cfg = from_args(CrossSampleConfig, parser.parse_args(["--run", "r"]))
    assert cfg.top_p is None and cfg.temperature is None and cfg.decoding == "run"
    cfg = from_args(CrossSampleConfig, parser.parse_args(["--run", "r", "--top-p", "0.7"]))
    assert cfg.top_p == 0.7
