"""core.queries against independent pandas computations on small synthetic run folders."""

from __future__ import annotations

import inspect
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import queries as _queries
from core.store.schema import FLOAT_METRICS, MANIFEST_FILE, TOKENS_FILE, TOPK_FILE, TRACES_FILE
from core.store.storage import tokens_table, topk_table, traces_table, write_json, write_parquet

pytestmark = pytest.mark.unit


class _PooledByDefault:
    """core.queries with sampled_from="pooled" unless a test names another choice: these
    tests check each query against pandas over every row its other filters keep. The
    default (each run's tuned-sampled traces) is tested in tests/test_sampled_from.py."""

    def __getattr__(self, name):
        f = getattr(_queries, name)
        if not callable(f) or "sampled_from" not in inspect.signature(f).parameters:
            return f

        def pooled(*args, **kw):
            kw.setdefault("sampled_from", "pooled")
            return f(*args, **kw)
        return pooled


Q = _PooledByDefault()
HOSTILE = "x'; DROP TABLE tokens; --"
VOCAB = ["the", " 1", " 2", "+", "=", " answer", "\n", "", "The", " 12"]
LN2 = math.log(2)


# ----------------------------------------------------------------------------- fixtures


def make_tables(seed: int, n_traces: int = 14, dense: bool = False, js_override=None):
    """Synthetic (traces, tokens, topk) DataFrames; every third trace sampled from the base."""
    rng = np.random.default_rng(seed)
    lengths = np.random.default_rng(1).integers(8, 25, n_traces)  # same keys for any seed
    traces = pd.DataFrame({
        "trace_id": np.arange(n_traces, dtype=np.int32),
        "prompt_id": [f"p{i // 2}" for i in range(n_traces)],
        "prompt": [HOSTILE if i == 3 else f"What is {i} + {i}? Say It" for i in range(n_traces)],
        "response": ["..."] * n_traces, "reference": ["2"] * n_traces,
        "verifier": ["exact"] * n_traces,
        "extracted_answer": [None if i == 0 else "2" for i in range(n_traces)],
        "correct": rng.random(n_traces) < 0.6, "length": lengths.astype(np.int32),
        "sampled_from": ["base" if i % 3 == 2 else "tuned" for i in range(n_traces)],
        "sample_index": np.zeros(n_traces, np.int32), "seed": np.arange(n_traces),
        "finished": np.ones(n_traces, bool), "difficulty": [None] * n_traces,
    })
    tid = np.repeat(traces["trace_id"].to_numpy(), lengths)
    pos = np.concatenate([np.arange(n) for n in lengths]).astype(np.int32)
    n = len(pos)
    u = rng.random(n)
    if dense:
        js = np.where(u < 0.5, rng.uniform(0.02, 0.65, n), rng.uniform(0, 0.02, n))
    else:
        js = np.where(u < 0.12, rng.uniform(0.1, 0.65, n),
                      np.where(u < 0.85, rng.uniform(0, 0.0099, n), rng.uniform(0.01, 0.1, n)))
    if js_override is not None:
        js = js_override
    lb, lt = -rng.exponential(1, n), -rng.exponential(1, n)
    tokens = pd.DataFrame({
        "trace_id": tid, "pos": pos, "rel_pos": pos / lengths.repeat(lengths),
        "token_id": rng.integers(0, len(VOCAB), n).astype(np.int32)})
    tokens["token"] = [VOCAB[i] for i in tokens["token_id"]]
    metrics = {"js": js, "js_top_p": js * 0.9, "kl_tb": js * 2, "kl_bt": js * 2.1,
               "entropy_base": rng.uniform(0, 3, n), "entropy_tuned": rng.uniform(0, 3, n),
               "logp_base": lb, "logp_tuned": lt, "dlogp": lt - lb}
    # truncated js at fixed nuclei: exactly 0 on most rows (ties), noisy elsewhere (its own
    # generator, so the other columns' values do not depend on these)
    r2 = np.random.default_rng(seed + 1000)
    for name, keep in (("js_top_p90", 0.4), ("js_top_p95", 0.7)):
        metrics[name] = np.where(r2.random(n) < keep, js * r2.uniform(0.3, 1.5, n), 0.0)
    for m in FLOAT_METRICS:
        tokens[m] = metrics[m]
    tokens["rank_base"] = rng.geometric(0.45, n).astype(np.int32)
    tokens["rank_tuned"] = rng.geometric(0.6, n).astype(np.int32)
    tokens["top1_agree"] = rng.random(n) < 0.6
    k = 10
    base_ids = [rng.choice(20, k, replace=False).astype(np.int32) for _ in range(n)]
    tuned_ids = [rng.choice(20, k, replace=False).astype(np.int32) for _ in range(n)]
    probs = [np.sort(rng.dirichlet(np.ones(k)))[::-1].astype(np.float32) for _ in range(n)]
    topk = pd.DataFrame({
        "trace_id": tid, "pos": pos, "base_ids": base_ids,
        "base_tokens": [[str(i) for i in ids] for ids in base_ids], "base_probs": probs,
        "tuned_ids": tuned_ids, "tuned_tokens": [[str(i) for i in ids] for ids in tuned_ids],
        "tuned_probs": probs,
        "tuned_top1_rank_base": rng.geometric(0.35, n).astype(np.int32),
        "tuned_top1_prob_base": rng.uniform(0, 0.3, n)})
    return traces, tokens, topk


def write_run(folder: Path, tables, manifest: dict | None, parts: int = 0) -> Path:
    """Write a run folder through the production writers (core.store.storage); parts > 0
    splits tokens.parquet into a folder of part files."""
    folder.mkdir(parents=True)
    traces, tokens, topk = tables
    tids = traces["trace_id"].to_numpy()
    scores = {c: tokens[c].to_numpy() for c in tokens.columns
              if c not in ("trace_id", "pos", "rel_pos", "token")}
    scores["offsets"] = np.concatenate([[0], np.cumsum(traces["length"].to_numpy())])
    for side in ("base", "tuned"):
        scores[f"{side}_topk_ids"] = np.stack(topk[f"{side}_ids"].to_list())
        scores[f"{side}_topk_probs"] = np.stack(topk[f"{side}_probs"].to_list())
    for c in ("tuned_top1_rank_base", "tuned_top1_prob_base"):
        scores[c] = topk[c].to_numpy()
    tok_t = tokens_table(scores, tids, tokens["token"].to_list())
    topk_t = topk_table(scores, tids, lambda ids: [str(i) for i in ids])
    # the writers derive trace_id/pos/rel_pos and the top-k strings: the same as the frames'
    for t, df in ((tok_t, tokens), (topk_t, topk)):
        for c in ("trace_id", "pos"):
            np.testing.assert_array_equal(t[c].to_numpy(), df[c].to_numpy())
    np.testing.assert_array_equal(tok_t["rel_pos"].to_numpy(),
                                  tokens["rel_pos"].to_numpy().astype(np.float32))
    assert topk_t["base_tokens"].to_pylist() == topk["base_tokens"].to_list()
    rows = traces.astype(object).where(traces.notna(), None).to_dict("records")  # NaN: None
    write_parquet(traces_table(rows), folder / TRACES_FILE)
    write_parquet(topk_t, folder / TOPK_FILE)
    if parts:
        (folder / TOKENS_FILE).mkdir()
        for i, idx in enumerate(np.array_split(np.arange(len(tokens)), parts)):
            write_parquet(tok_t.take(idx), folder / TOKENS_FILE / f"part-{i:03d}.parquet")
    else:
        write_parquet(tok_t, folder / TOKENS_FILE)
    if manifest is not None:
        write_json(manifest, folder / MANIFEST_FILE)
    return folder


SERIES = ["s-1", "s-2", "s-3"]


@pytest.fixture(scope="module", params=["lazy", "materialised"])
def env(request, tmp_path_factory):
    """Runs rl, sft (dense), a 3-step series s-1..s-3; plus the pandas reference tables.
    Every test runs twice: on lazy Parquet views (the SQL paths) and on a materialised
    connection (in-memory tables and the order-index paths of core/queries/indexed.py)."""
    root = tmp_path_factory.mktemp("runs")
    tables = {"rl": make_tables(0), "sft": make_tables(1, dense=True)}
    final = make_tables(2)[1]["js"].to_numpy()
    rng = np.random.default_rng(3)
    for step, name in enumerate(SERIES, start=1):  # drifts towards the final js
        js = np.clip(final + rng.normal(0, 0.08, len(final)) * (3 - step), 0, 0.69)
        tables[name] = make_tables(2, js_override=js)
    dirs = []
    for name, t in tables.items():
        man = {"name": name, "kind": "series" if name in SERIES else name,
               "series_step": 100 * SERIES.index(name) if name in SERIES else None,
               "traces_from": None}
        dirs.append(write_run(root / f"dir-{name}", t, man))
    con = Q.open_runs(dirs, materialize=request.param == "materialised")
    ref = {}
    for key, i in [("traces", 0), ("tokens", 1), ("topk", 2)]:
        ref[key] = pd.concat([t[i].assign(run=name) for name, t in tables.items()],
                             ignore_index=True)
    ref["tok"] = ref["tokens"].merge(ref["traces"][["run", "trace_id", "correct",
                                                    "sampled_from", "length"]],
                                     on=["run", "trace_id"])
    # the stored values are float32: compare against them, widened to float64
    for m in FLOAT_METRICS + ["rel_pos"]:
        ref["tok"][m] = ref["tok"][m].astype(np.float32).astype(np.float64)
    ref["topk"]["tuned_top1_prob_base"] = ref["topk"]["tuned_top1_prob_base"].astype(
        np.float32).astype(np.float64)
    return con, ref


def close(a, b):
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-5,
                               atol=1e-7)


# ----------------------------------------------------------------------------- tests


def test_views_and_runs(env):
    con, ref = env
    got = con.execute("SELECT run, count(*) n FROM tok GROUP BY run ORDER BY run").df()
    exp = ref["tok"].groupby("run").size().sort_index()
    assert got["run"].tolist() == exp.index.tolist() and got["n"].tolist() == exp.tolist()
    for view in ("tokens", "topk", "traces"):
        assert con.execute(f"SELECT count(*) FROM {view}").fetchone()[0] == len(ref[view])
    runs = Q.opened_runs(con)
    assert runs["run"].tolist() == ["rl", "sft"] + SERIES
    assert runs["series_step"].tolist()[2:] == [0, 100, 200]


@pytest.mark.parametrize("kw", [{}, {"runs": ["rl"], "sampled_from": "base"},
                                {"correct": True, "by": "run"}, {"by": "sampled_from"}])
def test_sparsity_summary(env, kw):
    con, ref = env
    got = Q.sparsity_summary(con, near_zero=0.01, high=0.1, **kw)
    t = ref["tok"]
    if "runs" in kw:
        t = t[t["run"].isin(kw["runs"])]
    if "sampled_from" in kw:
        t = t[t["sampled_from"] == kw["sampled_from"]]
    if "correct" in kw:
        t = t[t["correct"] == kw["correct"]]
    groups = t.groupby(kw["by"]) if kw.get("by") else [(None, t)]
    rows = [(g, len(d), (d.js < 0.01).mean(), (d.js > 0.1).mean(), d.js.mean(),
             *np.quantile(d.js, [0.5, 0.95, 0.99]), d.js.max()) for g, d in groups]
    assert len(got) == len(rows)
    cols = ["n_tokens", "share_near_zero", "share_high", "mean", "p50", "p95", "p99", "max"]
    close(got[cols].to_numpy(), np.array([r[1:] for r in rows]))
    if kw.get("by"):
        assert got[kw["by"]].tolist() == [r[0] for r in rows]


def test_sft_denser_than_rl(env):
    con, _ = env
    got = Q.contrast(con, "sft", "rl")
    assert got["run"].tolist() == ["sft", "rl"]
    assert got["share_near_zero"][1] > got["share_near_zero"][0]
    single = Q.sparsity_summary(con, runs=["rl"])
    close(got.iloc[1][single.columns].to_numpy(float), single.iloc[0].to_numpy(float))


def test_histogram(env):
    con, ref = env
    js = ref["tok"].js.to_numpy()
    got = Q.histogram(con, bins=20)
    exp, edges = np.histogram(js, bins=20, range=(0, LN2))
    assert got["count"].tolist() == exp.tolist()
    close(got["bin_left"], edges[:-1])
    close(got["cdf"], np.cumsum(exp) / len(js))
    # by run, another metric over its data range, all bins kept
    got = Q.histogram(con, metric="entropy_base", bins=7, by="run")
    for run, d in ref["tok"].groupby("run"):
        e = d.entropy_base.to_numpy()
        exp, _ = np.histogram(e, bins=7, range=(ref["tok"].entropy_base.min(),
                                                 ref["tok"].entropy_base.max()))
        assert got[got.run == run]["count"].tolist() == exp.tolist()
    # log bins, values below lo clamped into the first bin
    got = Q.histogram(con, bins=10, lo=1e-3, hi=LN2, log=True, runs=["sft"])
    e = ref["tok"].query("run == 'sft'").js.clip(lower=1e-3)
    exp, _ = np.histogram(e, bins=np.geomspace(1e-3, LN2, 11))
    assert got["count"].tolist() == exp.tolist() and got["cdf"].iloc[-1] == pytest.approx(1)


def test_entropy_by_js_bin(env):
    con, ref = env
    edges = (0, 0.01, 0.05, 0.1, 0.2, 0.3, LN2 + 1e-6)
    got = Q.entropy_by_js_bin(con, edges=edges, correct=False)
    t = ref["tok"][~ref["tok"].correct]
    b = pd.cut(t.js, edges, right=False)
    exp = t.groupby(b, observed=False).agg(n=("js", "size"), eb=("entropy_base", "mean"),
                                           et=("entropy_tuned", "mean"))
    assert got["n"].tolist() == exp["n"].tolist()
    close(got["mean_entropy_base"], exp["eb"])
    close(got["mean_entropy_tuned"], exp["et"])
    assert got["bin"][0] == "[0, 0.01)"
    got = Q.entropy_by_js_bin(con, edges=edges, by="run")
    assert len(got) == 5 * (len(edges) - 1)


def test_js_entropy_hist2d(env):
    con, ref = env
    got = Q.js_entropy_hist2d(con, js_bins=6, entropy_bins=5, entropy_max=3.0, runs=["rl"])
    t = ref["tok"].query("run == 'rl'")
    exp, _, _ = np.histogram2d(t.js, t.entropy_base, bins=[6, 5], range=[[0, LN2], [0, 3]])
    assert len(got) == 30
    assert got["count"].to_numpy().reshape(6, 5).tolist() == exp.astype(int).tolist()
    close(got["js_bin_left"].unique(), np.linspace(0, LN2, 7)[:-1])


def test_position_profile(env):
    con, ref = env
    got = Q.position_profile(con, bins=4, high=0.1, by="run")
    t = ref["tok"].assign(b=np.minimum(np.floor(ref["tok"].rel_pos * 4), 3))
    exp = t.groupby(["run", "b"]).js.agg(["mean", lambda s: s.quantile(0.5),
                                          lambda s: s.quantile(0.9),
                                          lambda s: (s > 0.1).mean(), "size"]).reset_index()
    close(got[["bin_left", "mean", "p50", "p90", "share_high", "n"]].to_numpy(),
          np.column_stack([exp["b"] / 4, exp.iloc[:, 2:].to_numpy()]))
    assert got["run"].tolist() == exp["run"].tolist()


def test_token_identity(env):
    con, ref = env
    got = Q.token_identity(con, high=0.1, min_count=5, limit=4, runs=["rl", "sft"])
    t = ref["tok"][ref["tok"].run.isin(["rl", "sft"])]
    exp = t.groupby("token").agg(n_total=("js", "size"), n_high=("js", lambda s: (s > .1).sum()),
                                 mean_js=("js", "mean")).reset_index()
    exp["share_high"] = exp.n_high / exp.n_total
    exp = exp[(exp.n_total >= 5) & (exp.n_high > 0)].sort_values(
        ["n_high", "share_high", "token"], ascending=[False, False, True]).head(4)
    assert got["token"].tolist() == exp["token"].tolist()
    assert got["n_high"].tolist() == exp["n_high"].tolist()
    assert (got.n_low == got.n_total - got.n_high).all()
    close(got["mean_js"], exp["mean_js"])
    by = Q.token_identity(con, limit=2, by="run")
    assert by.groupby("run").size().max() == 2


def test_topk_overlap(env):
    con, ref = env
    got = Q.topk_overlap(con, threshold=0.1, k_max=4, runs=["rl"])
    j = ref["tok"].query("run == 'rl'").merge(ref["topk"], on=["run", "trace_id", "pos"])
    assert got["subset"].tolist() == ["js>threshold"] * 4 + ["all"] * 4
    for subset, d in [("js>threshold", j[j.js > 0.1]), ("all", j)]:
        for k in range(1, 5):
            ov = [len(set(b[:k]) & set(t[:k])) / k
                  for b, t in zip(d.base_ids, d.tuned_ids, strict=True)]
            row = got[(got.subset == subset) & (got.k == k)].iloc[0]
            assert row.n == len(d)
            assert row.overlap == pytest.approx(np.mean(ov))
    by = Q.topk_overlap(con, threshold=0.1, k_max=4, by="run")
    assert set(by.run) == {"rl", "sft", *SERIES}
    pd.testing.assert_frame_equal(by[by.run == "rl"].drop(columns="run").reset_index(drop=True),
                                  got)


def test_reallocation_and_rank_hist(env):
    con, ref = env
    j = ref["tok"].merge(ref["topk"], on=["run", "trace_id", "pos"])
    got = Q.reallocation(con, threshold=0.1, low_prob=0.05, by="run")
    for (run, subset), row in got.set_index(["run", "subset"]).iterrows():
        d = j[j.run == run]
        d = d[d.js > 0.1] if subset == "js>threshold" else d
        r = d.tuned_top1_rank_base
        close([row.share_same_top1, row.share_in_base_top3, row.share_low_prob, row.n],
              [(r == 1).mean(), (r <= 3).mean(), (d.tuned_top1_prob_base < 0.05).mean(), len(d)])
    h = Q.tuned_top1_base_rank_hist(con, threshold=0.1, max_rank=5)
    for subset, d in [("js>threshold", j[j.js > 0.1]), ("all", j)]:
        exp = d.tuned_top1_rank_base.clip(upper=6).value_counts().sort_index()
        hs = h[h.subset == subset]
        assert hs["rank"].tolist() == exp.index.tolist() and hs["n"].tolist() == exp.tolist()
        assert hs["bucket"].iloc[-1] == ">5" and hs["share"].sum() == pytest.approx(1)


def test_urial_categories(env):
    con, ref = env
    got = Q.urial_categories(con, sampled_from="tuned")
    r = ref["tok"].query("sampled_from == 'tuned'").rank_base
    exp = [(r == 1).sum(), r.between(2, 3).sum(), (r > 3).sum()]
    assert got["category"].tolist() == ["unshifted", "marginal", "shifted"]
    assert got["n"].tolist() == exp
    close(got["share"], np.array(exp) / len(r))
    assert len(Q.urial_categories(con, by="run")) == 15


def test_evolution(env):
    con, ref = env
    got = Q.evolution(con, SERIES, high=0.1)
    assert got["run"].tolist() == SERIES and got["step"].tolist() == [0, 100, 200]
    t = ref["tok"]
    sets = {r: set(map(tuple, t[(t.run == r) & (t.js > 0.1)][["trace_id", "pos"]].values))
            for r in SERIES}
    for _, row in got.iterrows():
        d = t[t.run == row.run].js
        close([row.p50, row.p90, row.p95, row.p99], np.quantile(d, [.5, .9, .95, .99]))
        a, f = sets[row.run], sets[SERIES[-1]]
        assert row.jaccard_final == pytest.approx(len(a & f) / len(a | f))
    assert got["jaccard_final"].iloc[-1] == 1.0
    assert got["jaccard_final"].iloc[0] < got["jaccard_final"].iloc[1]


def test_headline(env):
    con, ref = env
    got = Q.headline(con).set_index("run")
    for run, d in ref["tok"].groupby("run"):
        tr = ref["traces"][ref["traces"].run == run]
        row = got.loc[run]
        assert row.n_traces == len(tr) and row.n_tokens == len(d)
        close([row.share_near_zero, row.share_high, row.mean_js, row.p95_js, row.top1_agree,
               row.accuracy_tuned, row.accuracy_base, row.mean_length],
              [(d.js < .01).mean(), (d.js > .1).mean(), d.js.mean(), d.js.quantile(.95),
               d.top1_agree.mean(), tr[tr.sampled_from == "tuned"].correct.mean(),
               tr[tr.sampled_from == "base"].correct.mean(), tr.length.mean()])
    assert Q.headline(con, runs=["sft"])["run"].tolist() == ["sft"]


def test_trace_list(env):
    con, ref = env
    t = ref["tok"].query("run == 'rl'")
    agg = t.groupby("trace_id").js.agg(max_js="max", n_high=lambda s: (s > 0.1).sum())
    got = Q.trace_list(con, "rl", sort_by="max_js", limit=5)
    assert got["trace_id"].tolist() == agg.sort_values("max_js", ascending=False).index[:5].tolist()
    got = Q.trace_list(con, "rl", sort_by="n_high", descending=False, limit=100, offset=2)
    exp = agg.reset_index().sort_values(["n_high", "trace_id"]).trace_id.tolist()[2:]
    assert got["trace_id"].tolist() == exp
    got = Q.trace_list(con, "rl", search="say it", correct=True, sort_by="trace_id",
                         descending=False)
    tr = ref["traces"].query("run == 'rl'")
    exp = tr[tr.prompt.str.lower().str.contains("say it") & tr.correct].trace_id.tolist()
    assert got["trace_id"].tolist() == exp and len(exp) > 0
    assert Q.trace_list(con, "rl", search="100%")["trace_id"].tolist() == []


@pytest.mark.parametrize("kw", [dict(), dict(sort_by="length", descending=False),
                                dict(correct=False, sort_by="mean_js"),
                                dict(search="say it", sampled_from="tuned", sort_by="n_high")])
def test_trace_pages_count_and_position(env, kw):
    """Pages of 4 tile the whole list; trace_count is its length; trace_position finds
    every trace on its page, and is None for one the filters leave out."""
    con, ref = env
    filt = {k: v for k, v in kw.items() if k in ("search", "correct", "sampled_from")}
    whole = Q.trace_list(con, "rl", limit=1000, **kw)["trace_id"].tolist()
    pages = [Q.trace_list(con, "rl", limit=4, offset=o, **kw)["trace_id"].tolist()
             for o in range(0, len(whole) + 4, 4)]
    assert sum(pages, []) == whole and pages[-1] == []
    assert Q.trace_count(con, "rl", **filt) == len(whole) > 0
    for i, tid in enumerate(whole):
        assert Q.trace_position(con, "rl", tid, **kw) == i
        assert tid in pages[i // 4]
    left_out = set(ref["traces"].query("run == 'rl'").trace_id) - set(whole)
    for tid in left_out:
        assert Q.trace_position(con, "rl", tid, **kw) is None
    assert bool(left_out) == bool(filt)


def test_trace_tokens(env):
    con, ref = env
    got = Q.trace_tokens(con, "sft", 4)
    t = ref["tokens"].query("run == 'sft' and trace_id == 4")
    assert got["pos"].tolist() == sorted(t.pos) and got["token"].tolist() == t.token.tolist()
    k = ref["topk"].query("run == 'sft' and trace_id == 4")
    assert [list(x) for x in got["base_ids"]] == [list(x) for x in k.base_ids]


def test_token_search(env):
    con, ref = env
    got = Q.token_search(con, js_min=0.2, rank_base_min=2, dlogp_max=0.5, text_contains="THE",
                         rel_pos_range=(0.1, 0.9), correct_only=True, runs=["rl", "sft"])
    t = ref["tok"]
    m = t[(t.js >= 0.2) & (t.rank_base >= 2) & (t.dlogp <= 0.5) & t.token.str.lower()
          .str.contains("the") & t.rel_pos.between(0.1, 0.9) & t.correct
          & t.run.isin(["rl", "sft"])].sort_values("js", ascending=False)
    assert len(m) > 0 and got[["run", "trace_id", "pos"]].values.tolist() == \
        m[["run", "trace_id", "pos"]].values.tolist()
    for _, row in got.iterrows():
        d = t[(t.run == row.run) & (t.trace_id == row.trace_id)].sort_values("pos")
        win = d[d.pos.between(row.pos - 5, row.pos + 5)]
        assert row.context == "".join(win.token)
        assert row.before + row.token + row.after == row.context
    assert len(Q.token_search(con, limit=7)) == 7


def test_validation(env):
    con, _ = env
    with pytest.raises(ValueError):
        Q.sparsity_summary(con, metric="js; DROP TABLE tokens")
    with pytest.raises(ValueError):
        Q.histogram(con, by="prompt")
    with pytest.raises(ValueError):
        Q.trace_list(con, "rl", sort_by="prompt; --")


def test_hostile_names_and_search(tmp_path):
    """A run folder whose path holds a quote, a hostile run name and hostile search text."""
    folder = write_run(tmp_path / "o'brien" / HOSTILE, make_tables(5), {"name": HOSTILE})
    plain = write_run(tmp_path / "plain's", make_tables(6), None)  # no manifest: folder name
    con = Q.open_runs([folder, plain])
    assert Q.opened_runs(con)["run"].tolist() == [HOSTILE, "plain's"]
    got = Q.trace_list(con, HOSTILE, search=HOSTILE)
    assert got["trace_id"].tolist() == [3] and got["prompt"][0] == HOSTILE
    assert Q.trace_list(con, "plain's", search="'; drop")["trace_id"].tolist() == [3]
    assert Q.token_search(con, text_contains=HOSTILE).empty
    s = Q.sparsity_summary(con, runs=[HOSTILE])
    assert s["n_tokens"][0] == len(make_tables(5)[1])
    assert con.execute("SELECT count(*) FROM tokens").fetchone()[0] == \
        len(make_tables(5)[1]) + len(make_tables(6)[1])


def test_part_files(tmp_path):
    tables = make_tables(7)
    split = write_run(tmp_path / "split", tables, {"name": "split"}, parts=3)
    whole = write_run(tmp_path / "whole", tables, {"name": "whole"})
    assert len(Q.table_files(split, TOKENS_FILE)) == 3
    assert Q.table_files(split, "missing.parquet") == []
    con = Q.open_runs([split, whole])
    s = Q.sparsity_summary(con, by="run")
    assert s["n_tokens"].tolist() == [len(tables[1])] * 2
    close(s.iloc[0, 1:].to_numpy(float), s.iloc[1, 1:].to_numpy(float))


def test_missing_tables(tmp_path):
    folder = tmp_path / "only-tokens"
    write_run(folder, make_tables(8), {"name": "t"})
    (folder / TOPK_FILE).unlink()
    (folder / TRACES_FILE).unlink()
    con = Q.open_runs([folder])
    assert Q.topk_overlap(con).empty
    h = Q.headline(con)
    assert h["n_tokens"][0] == len(make_tables(8)[1]) and h["n_traces"][0] == 0
    assert len(Q.trace_tokens(con, "t", 0)) > 0


def test_eps_for_budget_is_the_js_quantile(env):
    con, ref = env
    t = ref["tok"].query("run == 'rl'")
    got = Q.eps_for_budget(con, [0.01, 0.1, 0.5], runs=["rl"])
    want = np.quantile(t.js.astype(np.float32).astype(np.float64), [0.99, 0.9, 0.5])
    np.testing.assert_allclose(got.eps, want, rtol=1e-5)
    for b, e in zip(got.budget, got.eps):  # that share of tokens lies above the threshold
        assert abs((t.js > e).mean() - b) <= 2 / len(t)


def test_names_override_the_manifest(tmp_path):
    """A copied run folder repeats its manifest's name; the app names runs by folder."""
    a = write_run(tmp_path / "orig", make_tables(7), {"name": "same", "kind": "rl"})
    b = tmp_path / "copy"
    shutil.copytree(a, b)
    with pytest.raises(ValueError, match="duplicate run names"):
        Q.open_runs([a, b])
    con = Q.open_runs([a, b], names=["orig", "copy"])
    assert Q.opened_runs(con)["run"].tolist() == ["orig", "copy"]
    assert len(Q.trace_list(con, "copy")) == 14
    with pytest.raises(ValueError, match="1 names for 2"):
        Q.open_runs([a, b], names=["x"])
