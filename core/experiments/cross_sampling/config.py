"""The cross-sampling job's settings, in the style of core/config.py (one `opt` per field).

`CrossSampleOptions` holds every --option; `CrossSampleConfig` adds the run it works on
(a positional argument on the command line, so it lives in the subclass).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.config import opt


def split_list(value: str | list | tuple, cast=str) -> list:
    """'a,b' or ['a', 'b'] -> [cast(a), cast(b)] (blank items dropped)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return [cast(x.strip() if isinstance(x, str) else x) for x in items
            if not (isinstance(x, str) and not x.strip())]


@dataclass
class CrossSampleOptions:
    cache: str = opt("", "folder that holds run folders (default: $SHIFTLENS_CACHE, else "
                         "cache/ in the repository)")
    direction: str = opt("forward,reverse",
                         "comma-separated directions: forward (primary base, switch to tuned) "
                         "and/or reverse (primary tuned, switch to base)")
    eps: str = opt("0.02,0.05,0.1,0.2",
                   "comma-separated js thresholds (nats, 0..ln 2): a step switches to the "
                   "intervention model when js > eps")
    control: str = opt("random,entropy,untreated",
                       "comma-separated controls decoded beside each cross-sample: random "
                       "(positions drawn uniformly), entropy (drawn in proportion to the "
                       "primary's entropy at each step) and/or untreated (as entropy, only at "
                       "steps the cross-sample did not switch at); none: skip")
    match: str = opt("changed", "what a control matches per sample: changed (as many tokens "
                                "actually changed as its cross-sample; a switch that takes the "
                                "token the primary would have drawn changes nothing) or "
                                "decisions (as many switch decisions)",
                     choices=["changed", "decisions"])
    target_budget: float = opt(0.05, "the budget (share of tokens, 0..1) the caption reports, "
                                     "chosen before the sweep: its eps (the run's stored js "
                                     "exceeding it on that share of tokens) joins the grid "
                                     "(0 = none; the paper switched 3.9 and 5 percent)")
    endpoints: bool = opt(True, "also decode base alone and tuned alone (the curve's ends)")
    prompts: int = opt(0, "use the first N prompts of the run's prompt set (0 = as many as "
                          "the run used)")
    samples: int = opt(1, "samples K per prompt and setting")
    decoding: str = opt("run", "the decoding to sample with: run (the top-p and temperature "
                               "the run's traces were sampled with, from its manifest) or "
                               "paper (the paper's top-p 0.7, temperature 1); --top-p and "
                               "--temperature override it", choices=["run", "paper"])
    temperature: float | None = opt(None, "sampling temperature (0 = greedy); default: "
                                          "--decoding's")
    top_p: float | None = opt(None, "nucleus applied to both distributions before the js "
                                    "decision and before sampling (1 = full distributions); "
                                    "default: --decoding's (the paper's is 0.7)")
    max_new_tokens: int = opt(0, "cap on response length in tokens (0 = the run's cap)")
    seed: int = opt(0, "random seed (sampling, control positions, bootstrap)")
    batch_size: int = opt(32, "rows decoded together in lockstep")
    bootstrap: int = opt(1000, "bootstrap resamples of prompts for the 95 percent intervals")
    device: str = opt("auto", "auto (CUDA in bf16 if present, else CPU fp32), cpu or cuda")


@dataclass
class CrossSampleConfig(CrossSampleOptions):
    run: str = opt("", "run name under --cache, or a run folder: its pair and prompt set "
                       "are loaded from its manifest", required=True)

    def directions(self) -> list[str]:
        return split_list(self.direction)

    def eps_grid(self) -> list[float]:
        return split_list(self.eps, float)

    def controls(self) -> list[str]:
        kinds = split_list(self.control)
        return [] if kinds == ["none"] else kinds
