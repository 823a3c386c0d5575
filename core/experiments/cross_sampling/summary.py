"""A sweep's rows summarised per setting, with bootstrap intervals over prompts.

One summary row per (direction, eps, control_kind): both budgets (switch decisions and
changed tokens), accuracy with its 95% percentile-bootstrap interval over prompts, and on
each control row the paired difference reference - control (forward - control, reverse -
control) with its own interval: prompts are resampled once for both members of the pair,
which is what the claim "the divergent tokens matter more than these" needs (two separate
intervals can overlap while the paired one excludes 0).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

COLUMNS = ["direction", "eps", "control", "control_kind", "n", "n_prompts", "budget",
           "budget_changed", "token_share", "changed_share", "mean_tokens", "mean_switched",
           "mean_changed", "n_short", "accuracy", "ci_lo", "ci_hi", "diff", "diff_lo",
           "diff_hi"]


def bootstrap_ci(per_prompt: Sequence[float], n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi): percentile bootstrap of the mean over prompts (resampled with
    replacement). `per_prompt` is one value per prompt, e.g. that prompt's accuracy, or
    the difference of two settings' accuracies on that prompt (a paired interval)."""
    a = np.asarray(per_prompt, dtype=np.float64)
    if a.size == 0:
        return math.nan, math.nan, math.nan
    est = float(a.mean())
    if a.size == 1 or n_boot <= 0:
        return est, est, est
    rng = np.random.default_rng(seed)
    means = a[rng.integers(0, a.size, size=(n_boot, a.size))].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return est, float(lo), float(hi)


def _direction_order(d: str) -> int:
    order = ["base", "tuned", "forward", "reverse"]
    return order.index(d) if d in order else len(order)


def _with_defaults(df: pd.DataFrame) -> pd.DataFrame:
    """Rows without the newer fields (a caller's own rows) get the decision-only values."""
    if "control_kind" not in df:
        df["control_kind"] = np.where(df["control"], "random", "")
    if "n_changed" not in df:
        df["n_changed"] = np.nan
    if "n_requested" not in df:
        df["n_requested"] = np.nan
    df["control_kind"] = df["control_kind"].fillna("")
    return df


def summarize(rows: pd.DataFrame | list[dict], n_boot: int = 1000, seed: int = 0,
              match: str = "changed") -> pd.DataFrame:
    """Per (direction, eps, control_kind), columns COLUMNS:
    n samples, n_prompts; budget / budget_changed: mean per-sample share of tokens switched
    / changed; token_share / changed_share: all switched / changed tokens over all tokens;
    mean_tokens, mean_switched, mean_changed per sample; n_short: control samples that made
    fewer switches (`match="decisions"`) or changes ("changed") than requested; accuracy
    (mean over prompts of each prompt's accuracy over its samples) and its bootstrap CI
    (ci_lo, ci_hi); diff, diff_lo, diff_hi on control rows: the reference setting's
    accuracy minus the control's, bootstrapped over the prompts both have (paired). Every
    group resamples prompts with the same seed."""
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    df = _with_defaults(df.copy())
    per_prompt = {key: g.groupby("prompt_id", sort=True)["correct"].mean()
                  for key, g in df.groupby(["direction", "eps", "control_kind"], sort=False)}
    done = "n_changed" if match == "changed" else "n_switched"
    out = []
    for (d, e, kind), g in df.groupby(["direction", "eps", "control_kind"], sort=False):
        acc, lo, hi = bootstrap_ci(per_prompt[d, e, kind].to_numpy(), n_boot, seed)
        row = {"direction": d, "eps": float(e), "control": bool(kind), "control_kind": kind,
               "n": len(g), "n_prompts": len(per_prompt[d, e, kind]),
               "budget": float(g["budget"].mean()),
               "budget_changed": float((g["n_changed"] / g["n_tokens"].clip(lower=1)).mean()),
               "token_share": float(g["n_switched"].sum() / max(1, g["n_tokens"].sum())),
               "changed_share": float(g["n_changed"].sum() / max(1, g["n_tokens"].sum())),
               "mean_tokens": float(g["n_tokens"].mean()),
               "mean_switched": float(g["n_switched"].mean()),
               "mean_changed": float(g["n_changed"].mean()),
               "n_short": int((g[done] < g["n_requested"]).sum()) if kind else 0,
               "accuracy": acc, "ci_lo": lo, "ci_hi": hi,
               "diff": math.nan, "diff_lo": math.nan, "diff_hi": math.nan}
        ref = per_prompt.get((d, e, ""))
        if kind and ref is not None:
            both = ref.index.intersection(per_prompt[d, e, kind].index)
            pair = ref[both] - per_prompt[d, e, kind][both]
            row["diff"], row["diff_lo"], row["diff_hi"] = bootstrap_ci(
                pair.to_numpy(), n_boot, seed)
        out.append(row)
    res = pd.DataFrame(out, columns=COLUMNS)
    key = res["direction"].map(_direction_order)
    return (res.assign(_k=key).sort_values(["_k", "control_kind", "eps"])
            .drop(columns="_k").reset_index(drop=True))
