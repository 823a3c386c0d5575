"""The prompt-clustered bootstrap intervals of core.queries against an independent
implementation: pandas over the raw rows, one replicate at a time, following the recipe the
module documents (prompts sorted by id; replicate b draws `rng.integers(0, P, P)` from
`numpy.random.default_rng(SEED)`; percentile interval)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core import queries as Q
from core.queries import intervals as I
from tests.test_queries import make_tables, write_run

pytestmark = pytest.mark.unit
SERIES = ["s-1", "s-2", "s-3"]


@pytest.fixture(scope="module", params=["lazy", "materialised"])
def env(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("ci_runs")
    tables = {"rl": make_tables(0, n_traces=30), "sft": make_tables(1, n_traces=30, dense=True)}
    final = make_tables(2, n_traces=30)[1]["js"].to_numpy()
    rng = np.random.default_rng(3)
    for step, name in enumerate(SERIES, start=1):
        js = np.clip(final + rng.normal(0, 0.08, len(final)) * (3 - step), 0, 0.69)
        tables[name] = make_tables(2, n_traces=30, js_override=js)
    dirs = []
    for name, t in tables.items():
        man = {"name": name, "kind": "series" if name in SERIES else name,
               "series_step": 100 * SERIES.index(name) if name in SERIES else None}
        dirs.append(write_run(root / name, t, man))
    con = Q.open_runs(dirs, materialize=request.param == "materialised")
    rows = []
    for name, (traces, tokens, topk) in tables.items():
        t = tokens.merge(traces[["trace_id", "prompt_id"]], on="trace_id")
        t = t.merge(topk[["trace_id", "pos", "base_ids", "tuned_ids"]], on=["trace_id", "pos"])
        for c in ("js", "js_top_p90"):
            t[c] = t[c].astype(np.float32).astype(np.float64)
        rows.append(t.assign(run=name))
    return con, pd.concat(rows, ignore_index=True)


def replicate_weights(prompts: list[str]):
    """Per replicate: {prompt: times drawn}, the documented recipe, one draw at a time."""
    order = sorted(set(prompts))
    rng = np.random.default_rng(I.SEED)
    for _ in range(I.N_RESAMPLES):
        drawn = rng.integers(0, len(order), len(order))
        yield pd.Series(np.bincount(drawn, minlength=len(order)), index=order)


def interval(values):
    return tuple(np.quantile(np.asarray(values, float), [0.025, 0.975]))


def close(a, b):
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-9,
                               atol=1e-12)


def test_share_above_threshold(env):
    con, t = env
    d = t[t.run == "rl"]
    got = Q.sparsity_summary(con, runs=["rl"], sampled_from="pooled")
    reps = []
    for w in replicate_weights(d.prompt_id.tolist()):
        rw = d.prompt_id.map(w).to_numpy()
        reps.append((rw * (d.js > 0.1)).sum() / rw.sum())
    close([got.share_high_lo[0], got.share_high_hi[0]], interval(reps))
    assert got.n_prompts[0] == d.prompt_id.nunique()
    assert got.share_high_lo[0] <= got.share_high[0] <= got.share_high_hi[0]
    # by run: each run resampled on its own prompts, the same interval as alone
    by = Q.sparsity_summary(con, runs=["rl", "sft"], sampled_from="pooled", by="run")
    close(by.loc[by.run == "rl", ["share_high_lo", "share_high_hi"]].to_numpy()[0],
          interval(reps))


def test_contrast_ratio_joint(env):
    con, t = env
    d = t[t.run.isin(["rl", "sft"])]
    got = Q.contrast(con, "rl", "sft", sampled_from="pooled")
    reps = []
    for w in replicate_weights(d.prompt_id.tolist()):
        share = {}
        for r in ("rl", "sft"):
            x = d[d.run == r]
            rw = x.prompt_id.map(w).to_numpy()
            share[r] = (rw * (x.js > 0.1)).sum() / rw.sum()
        reps.append(share["rl"] / share["sft"])
    a = got.iloc[0]
    close([a.high_ratio_lo, a.high_ratio_hi], interval(reps))
    close(a.high_ratio, a.share_high / got.iloc[1].share_high)
    assert np.isnan(got.iloc[1].high_ratio)


def test_evolution_against_final(env):
    con, t = env
    got = Q.evolution(con, SERIES, sampled_from="pooled").set_index("run")
    d = t[t.run.isin(SERIES)]
    fin = d[(d.run == SERIES[-1]) & (d.js > 0.1)][["trace_id", "pos"]].assign(f=True)
    d = d.merge(fin, on=["trace_id", "pos"], how="left")
    d["i"] = d.f.fillna(False).astype(bool) & (d.js > 0.1)
    diff, jac = [], []
    for w in replicate_weights(d.prompt_id.tolist()):
        s = {}
        for r in (SERIES[0], SERIES[-1]):
            x = d[d.run == r]
            rw = x.prompt_id.map(w).to_numpy()
            s[r] = ((rw * (x.js > 0.1)).sum(), rw.sum(), (rw * x.i).sum())
        diff.append(s[SERIES[0]][0] / s[SERIES[0]][1] - s[SERIES[-1]][0] / s[SERIES[-1]][1])
        jac.append(s[SERIES[0]][2] / (s[SERIES[0]][0] + s[SERIES[-1]][0] - s[SERIES[0]][2]))
    row = got.loc[SERIES[0]]
    close([row.diff_final_lo, row.diff_final_hi], interval(diff))
    close([row.jaccard_final_lo, row.jaccard_final_hi], interval(jac))
    assert row.jaccard_final_lo <= row.jaccard_final <= row.jaccard_final_hi
    assert got.loc[SERIES[-1], "diff_final"] == 0


def test_position_topk_truncation(env):
    con, t = env
    d = t[t.run == "rl"].copy()
    got = Q.position_profile(con, bins=4, runs=["rl"], sampled_from="pooled")
    d["bin"] = np.minimum(np.floor(d.rel_pos.astype(np.float32).astype(float) / 0.25), 3)
    k = 3
    d["ov"] = [len(set(a[:k]) & set(b[:k])) / k for a, b in zip(d.base_ids, d.tuned_ids,
                                                                strict=True)]
    pos, ov, tr = [], [], []
    for w in replicate_weights(d.prompt_id.tolist()):
        rw = d.prompt_id.map(w).to_numpy()
        b0 = (d.bin == 0).to_numpy()
        pos.append((rw * d.js)[b0].sum() / rw[b0].sum())
        hi = (d.js > 0.1).to_numpy()
        ov.append((rw * d.ov)[hi].sum() / rw[hi].sum())
        tr.append((rw * (d.js_top_p90 > 0.1)).sum() / rw.sum())
    close(got.loc[0, ["mean_lo", "mean_hi"]].to_numpy(float), interval(pos))
    top = Q.topk_overlap(con, runs=["rl"], sampled_from="pooled", k_max=5)
    row = top[(top.subset == "js>threshold") & (top.k == k)].iloc[0]
    close([row.overlap_lo, row.overlap_hi], interval(ov))
    agr = Q.truncation_agreement(con, "rl", sampled_from="pooled").set_index("metric")
    close(agr.loc["js_top_p90", ["share_high_lo", "share_high_hi"]].to_numpy(float),
          interval(tr))


def test_fixed_seed_and_chunking():
    """The chunked weight matrices are the documented per-replicate draws, whatever the
    chunk size; the same call gives the same replicates."""
    m = np.arange(12.0).reshape(6, 2)
    a = I.resampled(m, 50)
    old, I._CELLS = I._CELLS, 7
    try:
        b = I.resampled(m, 50)
    finally:
        I._CELLS = old
    np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(I.SEED)
    exp = [np.bincount(rng.integers(0, 6, 6), minlength=6) @ m for _ in range(50)]
    np.testing.assert_array_equal(a, np.array(exp))


def test_equal_size_overlap(env):
    """evolution_overlap's jaccard_top_n interval: each run's top-N by js (N = the final's
    count above 0.1, ties by trace_id, pos) fixed on the full data, then per replicate the
    weighted intersection over the weighted union with the final's top-N."""
    con, t = env
    got = Q.evolution_overlap(con, SERIES, sampled_from="pooled").set_index("run")
    d = t[t.run.isin(SERIES)]
    n = int((d[d.run == SERIES[-1]].js > 0.1).sum())

    def top(x):
        return x.sort_values(["js", "trace_id", "pos"], ascending=[False, True, True]).head(n)

    tops = {r: top(d[d.run == r]) for r in SERIES}
    fin = set(zip(tops[SERIES[-1]].trace_id, tops[SERIES[-1]].pos, strict=True))
    for r in SERIES[:-1]:
        x = tops[r].assign(i=[(a, b) in fin for a, b in zip(tops[r].trace_id, tops[r].pos,
                                                            strict=True)])
        reps = []
        for w in replicate_weights(d.prompt_id.tolist()):
            rw, fw = x.prompt_id.map(w).to_numpy(), tops[SERIES[-1]].prompt_id.map(w)
            inter = (rw * x.i).sum()
            reps.append(inter / (rw.sum() + fw.sum() - inter))
        row = got.loc[r]
        close([row.jaccard_top_n_lo, row.jaccard_top_n_hi], interval(reps))
        assert row.jaccard_top_n_lo <= row.jaccard_top_n <= row.jaccard_top_n_hi
    assert got.loc[SERIES[-1], "jaccard_top_n"] == 1
