"""The synthetic runs behind the figure tests (tests/test_figures_export.py,
tests/test_figure_points.py): rl (both sources, hostile tokens), a dense sft named like markup
and a 3-step series, written by the production run writer, with pandas reference tables."""

from __future__ import annotations

import numpy as np

from core import queries as Q
from core.figures import overview
from tests.test_queries import make_tables, write_run

NZ, HI = 0.01, 0.1
SCRIPT, BOLD, DOLLAR = "<script>alert(1)</script>", "<b>x</b>", "$x$"
SERIES = ["s-1", "s-2", "s-3"]
SFT_NAME = "<i>sft</i>"  # a run name that Plotly would render as markup


def _hostile(tables):
    """Replace three vocabulary strings by hostile text; make them frequent and divergent."""
    traces, tokens, topk = tables
    tokens = tokens.copy()
    tokens["token"] = tokens["token"].replace({"the": BOLD, "+": SCRIPT, "=": DOLLAR})
    hostile = tokens["token"].isin([BOLD, SCRIPT, DOLLAR]).to_numpy()
    tokens.loc[hostile & (tokens["pos"] % 2 == 0).to_numpy(), "js"] = 0.5
    return traces, tokens, topk


def build_env(cache) -> dict:
    """cache/ with rl (both sources, hostile tokens), sft (tuned-sampled only, dense) and a
    3-step series; the connection and the pandas reference `tok` table per run."""
    tables = {"rl": _hostile(make_tables(0)), "sft": make_tables(1, dense=True)}
    tables["sft"][0]["sampled_from"] = "tuned"
    final = make_tables(2)[1]["js"].to_numpy()
    rng = np.random.default_rng(3)
    for step, name in enumerate(SERIES, start=1):
        js = np.clip(final + rng.normal(0, 0.08, len(final)) * (3 - step), 0, 0.69)
        tables[name] = make_tables(2, js_override=js)
    names = {"rl": "rl", "sft": SFT_NAME, **{s: s for s in SERIES}}
    dirs = {k: write_run(cache / k, t, {"name": names[k], "kind": k, "traces_from": None,
                                         "series_step": 10 * SERIES.index(k) if k in SERIES
                                         else None}) for k, t in tables.items()}
    con = Q.open_runs(list(dirs.values()))
    ref = {}
    for k, (traces, tokens, topk) in tables.items():
        t = tokens.merge(traces[["trace_id", "sampled_from"]], on="trace_id")
        for m in ("js", "entropy_base", "rel_pos"):  # stored as float32
            t[m] = t[m].astype(np.float32).astype(np.float64)
        topk = topk.assign(tuned_top1_prob_base=topk.tuned_top1_prob_base.astype(np.float32)
                           .astype(np.float64))
        ref[names[k]] = t.merge(topk, on=["trace_id", "pos"])
    return {"cache": cache, "dirs": dirs, "con": con, "ref": ref}


def tuned(env, run: str):
    """The reference rows of `run`'s tuned-sampled traces: what every figure uses by default
    (core.queries.sampler; every run here has them)."""
    t = env["ref"][run]
    return t[t.sampled_from == "tuned"]


def build_specs(env) -> dict:
    """The overview of rl with its defaults: tuned-sampled traces, not split."""
    s = overview(env["con"], "rl", series=SERIES, contrast_with=SFT_NAME)
    return {x.id: x for x in s}
