"""A sweep's rows summarised per setting, with bootstrap intervals over prompts and paired
tests that fit discrete, paired outcomes (core/experiments/cross_sampling/paired.py).

One summary row per (direction, eps, control_kind): both budgets (switch decisions and
changed tokens), accuracy with its 95% percentile-bootstrap interval over prompts, and on
each control row the paired difference reference - control (forward - control, reverse -
control) with its own interval: prompts are resampled once for both members of the pair,
which is what the claim "the divergent tokens matter more than these" needs (two separate
intervals can overlap while the paired one excludes 0).

Beside the bootstrap, each paired comparison (a control against its reference; forward
against base alone, reverse against tuned alone) has an exact test: with one sample per
prompt, McNemar's exact test on the discordant prompts and Tango's paired score interval
for the difference (which stays an interval with 0-2 discordant prompts, where the
percentile bootstrap gives [0, 0]); with several, a paired sign-flip permutation over prompts
beside the bootstrap interval (Tango's over the sample pairs where that interval is a
point). p_holm adjusts every p-value of the summary together (Holm), the family a sweep's
grid is read as. A control that decodes its treatment's own sequence cannot disagree with
it: same_as_ref is the share of a control's rows, among those whose cross-sample changed a
token, that decoded the identical sequence, and changed_overlap the mean Jaccard overlap of
the two rows' changed steps there. gap_moved (forward: share of the base-tuned gap
recovered, reverse: removed) has a bootstrap interval over the prompts all three settings
decoded.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from core.experiments.cross_sampling import paired

COLUMNS = ["direction", "eps", "control", "control_kind", "n", "n_prompts", "budget",
           "budget_changed", "token_share", "changed_share", "mean_tokens", "mean_switched",
           "mean_changed", "n_short", "accuracy", "ci_lo", "ci_hi", "diff", "diff_lo",
           "diff_hi", "test", "n_ref_only", "n_other_only", "p_value", "p_holm", "gap_moved",
           "gap_moved_lo", "gap_moved_hi", "same_as_ref", "changed_overlap"]


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
        row.update(test="", n_ref_only=math.nan, n_other_only=math.nan, p_value=math.nan,
                   gap_moved=math.nan, gap_moved_lo=math.nan, gap_moved_hi=math.nan,
                   same_as_ref=math.nan, changed_overlap=math.nan)
        if kind:
            row.update(_agreement(df, g, (d, e, "")))
        ref = per_prompt.get((d, e, ""))
        if kind and ref is not None:
            both = ref.index.intersection(per_prompt[d, e, kind].index)
            pair = ref[both] - per_prompt[d, e, kind][both]
            row["diff"], row["diff_lo"], row["diff_hi"] = bootstrap_ci(
                pair.to_numpy(), n_boot, seed)
            row.update(_paired_test(df, (d, e, ""), (d, e, kind), row, seed))
        end = _endpoint_key(per_prompt, {"forward": "base", "reverse": "tuned"}.get(d))
        if not kind and end is not None:
            row.update({k: v for k, v in _paired_test(df, (d, e, ""), end, {}, seed).items()
                        if k in ("test", "n_ref_only", "n_other_only", "p_value")})
            row.update(_gap_moved(per_prompt, d, (d, e, ""), n_boot, seed))
        out.append(row)
    res = pd.DataFrame(out, columns=COLUMNS)
    res["p_holm"] = paired.holm(res["p_value"].to_numpy(dtype=float))
    key = res["direction"].map(_direction_order)
    return (res.assign(_k=key).sort_values(["_k", "control_kind", "eps"])
            .drop(columns="_k").reset_index(drop=True))


def _endpoint_key(per_prompt: dict, direction: str | None):
    if direction is None:
        return None
    keys = [k for k in per_prompt if k[0] == direction and k[2] == ""]
    return keys[0] if keys else None


def _outcomes(df: pd.DataFrame, key) -> pd.Series:
    """Correct (0/1) per (prompt_id, sample_index) of one setting's rows."""
    d, e, kind = key
    g = df[(df["direction"] == d) & (df["control_kind"] == kind)]
    if not pd.isna(e):
        g = g[np.isclose(g["eps"].astype(float), float(e), equal_nan=True)]
    idx = ["prompt_id", "sample_index"] if "sample_index" in g else ["prompt_id"]
    return g.groupby(idx, sort=True)["correct"].mean()


def _paired_test(df: pd.DataFrame, ref_key, other_key, row: dict, seed: int) -> dict:
    """The exact paired test of ref - other and, where it fits better, its interval."""
    a, b = _outcomes(df, ref_key), _outcomes(df, other_key)
    both = a.index.intersection(b.index)
    a, b = a[both].round().astype(int), b[both].round().astype(int)
    n_ref = int(((a == 1) & (b == 0)).sum())
    n_oth = int(((a == 0) & (b == 1)).sum())
    out = {"n_ref_only": n_ref, "n_other_only": n_oth}
    prompts = both.get_level_values(0) if isinstance(both, pd.MultiIndex) else both
    one_each = len(set(prompts)) == len(both)
    score = paired.tango_paired(n_ref, n_oth, len(both))
    if one_each:  # one sample per prompt: the pairs are the prompts
        out.update(test="mcnemar exact", p_value=paired.mcnemar_exact(n_ref, n_oth))
        if row:
            out.update(diff_lo=score[1], diff_hi=score[2])
        return out
    per = (a - b).groupby(level=0).mean()
    out.update(test="paired sign-flip", p_value=paired.sign_flip(per.to_numpy(), seed))
    if row and not row.get("diff_hi", math.nan) > row.get("diff_lo", math.nan):
        out.update(diff_lo=score[1], diff_hi=score[2])  # never a point interval
    return out


def _gap_moved(per_prompt: dict, direction: str, key, n_boot: int, seed: int) -> dict:
    """gap_moved with its interval: prompts resampled jointly for base, tuned, setting."""
    kb, kt = _endpoint_key(per_prompt, "base"), _endpoint_key(per_prompt, "tuned")
    if kb is None or kt is None:
        return {}
    b, t, x = per_prompt[kb], per_prompt[kt], per_prompt[key]
    common = b.index.intersection(t.index).intersection(x.index)
    if not len(common):
        return {}
    m = np.column_stack([b[common], t[common], x[common]]).astype(float)

    def moved(means):
        gap = means[..., 1] - means[..., 0]
        with np.errstate(all="ignore"):
            share = np.where(gap != 0, (means[..., 2] - means[..., 0]) / gap, np.nan)
        return share if direction == "forward" else 1 - share
    point = float(moved(m.mean(0)))
    rng = np.random.default_rng(seed)
    reps = moved(m[rng.integers(0, len(m), size=(max(n_boot, 1), len(m)))].mean(1))
    ok = reps[~np.isnan(reps)]
    lo, hi = (np.quantile(ok, [0.025, 0.975]) if ok.size else (math.nan, math.nan))
    return {"gap_moved": point, "gap_moved_lo": float(lo), "gap_moved_hi": float(hi)}


def _agreement(df: pd.DataFrame, ctl: pd.DataFrame, ref_key) -> dict:
    """same_as_ref and changed_overlap of one control's rows `ctl` against their reference
    rows (same prompt and sample), over the pairs whose reference changed a token."""
    if "tokens" not in df or "changed" not in df:
        return {}
    d, e, _ = ref_key
    ref = df[(df["direction"] == d) & (df["control_kind"] == "")
             & np.isclose(df["eps"].astype(float), float(e), equal_nan=True)]
    on = ["prompt_id", "sample_index"] if "sample_index" in df else ["prompt_id"]
    m = ctl[on + ["tokens", "changed"]].merge(ref[on + ["tokens", "changed"]], on=on,
                                                suffixes=("", "_ref"))
    m = m[[len(c) > 0 for c in m["changed_ref"]]]
    if m.empty:
        return {}
    same = [list(a) == list(b) for a, b in zip(m["tokens"], m["tokens_ref"], strict=True)]
    jac = []
    for a, b in zip(m["changed"], m["changed_ref"], strict=True):
        a, b = set(a), set(b)
        jac.append(len(a & b) / len(a | b))
    return {"same_as_ref": float(np.mean(same)), "changed_overlap": float(np.mean(jac))}
