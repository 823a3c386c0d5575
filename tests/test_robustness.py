"""core.queries.robustness and its figures against independent pandas computations on small
synthetic runs (written by the production writers, as tests/test_queries.py does): full vs
truncated js, the evolution's Jaccard with its size bound and equal-size sets, js by
absolute position; a run written before js_top_p90/js_top_p95 existed still opens."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from core import queries as Q
from core.figures import robustness as FR
from core.metrics import TRUNCATED_JS
from core.store.schema import MANIFEST_FILE, TOKENS_FILE
from tests.test_queries import SERIES, make_tables, write_run

pytestmark = pytest.mark.unit

HI = 0.1


@pytest.fixture(scope="module", params=["lazy", "materialised"])
def env(request, tmp_path_factory):
    """rl (js_top_p at 0.7 in its manifest), a 3-step series, and `old`: rl's tables written
    without the js_top_p90/js_top_p95 columns (a run from before they existed)."""
    root = tmp_path_factory.mktemp("robust")
    tables = {"rl": make_tables(0)}
    final = make_tables(2)[1]["js"].to_numpy()
    rng = np.random.default_rng(3)
    for step, name in enumerate(SERIES, start=1):  # drifts towards the final js
        js = np.clip(final + rng.normal(0, 0.08, len(final)) * (3 - step), 0, 0.69)
        tables[name] = make_tables(2, js_override=js)
    dirs = [write_run(root / n, t, {"name": n, "kind": "x", "series_step": None,
                                    "traces_from": None, "config": {"js_top_p": 0.7}})
            for n, t in tables.items()]
    old = root / "old"
    shutil.copytree(root / "rl", old)
    t = pq.read_table(old / TOKENS_FILE).drop(list(TRUNCATED_JS))
    pq.write_table(t, old / TOKENS_FILE)
    man = json.loads((old / MANIFEST_FILE).read_text()) | {"name": "old"}
    (old / MANIFEST_FILE).write_text(json.dumps(man))
    con = Q.open_runs([*dirs, old], materialize=request.param == "materialised")
    ref = {}
    for name, (traces, tokens, _) in tables.items():
        tok = tokens.merge(traces[["trace_id", "sampled_from"]], on="trace_id")
        for m in ("js", "js_top_p", *TRUNCATED_JS):  # stored as float32
            tok[m] = tok[m].astype(np.float32).astype(np.float64)
        ref[name] = tok
    return con, ref, old


def _top(d: pd.DataFrame, col: str, n: int) -> set:
    """The n rows of d with the largest `col`, ties by trace_id then pos."""
    s = d.sort_values([col, "trace_id", "pos"], ascending=[False, True, True]).head(n)
    return set(zip(s.trace_id, s.pos, strict=True))


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else float("nan")


def _expected_truncation(d: pd.DataFrame) -> dict:
    high_js = set(zip(d.trace_id[d.js > HI], d.pos[d.js > HI], strict=True))
    n = len(high_js)
    out = {}
    for m in ("js", "js_top_p", *TRUNCATED_JS):
        high = set(zip(d.trace_id[d[m] > HI], d.pos[d[m] > HI], strict=True))
        out[m] = {"n": len(d), "n_high": len(high), "share_high": (d[m] > HI).mean(),
                  # Spearman: Pearson on average ranks (ties share their mean rank)
                  "spearman": d.js.rank().corr(d[m].rank()),
                  "jaccard_high": _jaccard(high_js, high), "top_n": n,
                  "jaccard_top_n": _jaccard(_top(d, "js", n), _top(d, m, n))}
    return out


@pytest.mark.parametrize("sampled_from", [None, "base", "pooled"])
def test_truncation_agreement(env, sampled_from):
    con, ref, _ = env
    got = Q.truncation_agreement(con, "rl", high=HI, sampled_from=sampled_from)
    d = ref["rl"]
    if sampled_from != "pooled":  # default: the tuned-sampled traces
        d = d[d.sampled_from == (sampled_from or "tuned")]
    want = _expected_truncation(d)
    assert got.metric.tolist() == list(want)
    assert got.top_p.tolist() == [1.0, 0.7, *TRUNCATED_JS.values()]
    assert got.stored.all()
    for m, w in want.items():
        row = got.set_index("metric").loc[m]
        for c, v in w.items():
            assert float(row[c]) == pytest.approx(v, rel=1e-9, abs=1e-12), (m, c)
    # the fixture's truncated columns disagree with js: the figure has something to show
    assert (got.set_index("metric").loc[list(TRUNCATED_JS), "spearman"] < 0.9).all()


def test_truncation_agreement_split(env):
    con, ref, _ = env
    got = Q.truncation_agreement(con, "rl", high=HI, sampled_from="split")
    for label in ("tuned", "base"):
        d = ref["rl"][ref["rl"].sampled_from == label]
        want = _expected_truncation(d)
        part = got[got.sampled_from == label].set_index("metric")
        for m, w in want.items():
            for c in ("share_high", "spearman", "jaccard_high", "jaccard_top_n", "top_n"):
                assert float(part.loc[m, c]) == pytest.approx(w[c], rel=1e-9), (label, m, c)


def test_old_run_without_the_new_columns(env):
    """A run written before js_top_p90/js_top_p95: reported as not stored, its other
    numbers those of the same tables with the columns (old is a copy of rl)."""
    con, _, old = env
    got = Q.truncation_agreement(con, "old", high=HI).set_index("metric")
    new = Q.truncation_agreement(con, "rl", high=HI).set_index("metric")
    assert got.stored.tolist() == [True, True, False, False]
    assert got.loc[list(TRUNCATED_JS), ["share_high", "spearman", "n"]].isna().all().all()
    cols = ["share_high", "spearman", "jaccard_high", "jaccard_top_n"]
    np.testing.assert_allclose(got.loc[["js", "js_top_p"], cols].to_numpy(float),
                               new.loc[["js", "js_top_p"], cols].to_numpy(float))
    alone = Q.open_runs([old])  # no opened run has the columns at all
    assert Q.truncation_agreement(alone, "old").stored.tolist() == [True, True, False, False]
    spec = FR.truncation(alone, "old")
    assert "js_top_p90, js_top_p95 not stored in this run" in spec.caption
    assert spec.caption.endswith("on 10 tuned-sampled traces")
    assert sum(a.text == "not stored in this run" for a in spec.figure.layout.annotations) == 8


@pytest.mark.parametrize("query", ["sparsity_summary", "histogram", "position_profile",
                                   "eps_for_budget", "position_profile_abs"])
def test_a_metric_no_opened_run_stores_is_one_line(env, query):
    """Asked of runs written before js_top_p90 existed, the metric queries say so (was
    DuckDB's 'Referenced column not found' binder error); the other metrics still answer."""
    _, _, old = env
    alone = Q.open_runs([old])
    call = getattr(Q, query)
    args = ([0.1],) if query == "eps_for_budget" else ()
    with pytest.raises(ValueError, match=r"^metric 'js_top_p90' is not stored in the runs "
                                         r"opened here: .* --force"):
        call(alone, *args, metric="js_top_p90")
    assert len(call(alone, *args, metric="js_top_p"))


def test_evolution_overlap(env):
    con, ref, _ = env
    got = Q.evolution_overlap(con, SERIES, high=HI)
    tuned = {n: ref[n][ref[n].sampled_from == "tuned"] for n in SERIES}

    def high(d):
        return set(zip(d.trace_id[d.js > HI], d.pos[d.js > HI], strict=True))

    fin = high(tuned[SERIES[-1]])
    n = len(fin)
    assert got.run.tolist() == SERIES and got.step.tolist() == [0, 1, 2]
    for row in got.itertuples():
        h = high(tuned[row.run])
        assert row.n_high == len(h) and row.n_final == n and row.top_n == n
        assert row.jaccard_final == pytest.approx(_jaccard(h, fin))
        assert row.jaccard_bound == pytest.approx(min(len(h), n) / max(len(h), n))
        assert row.jaccard_final <= row.jaccard_bound + 1e-12
        want = _jaccard(_top(tuned[row.run], "js", n), _top(tuned[SERIES[-1]], "js", n))
        assert row.jaccard_top_n == pytest.approx(want)
    # the fixture's early checkpoints have more high tokens than the final: the bound bites
    assert got.jaccard_bound.iloc[0] < 1
    # the thresholded Jaccard agrees with analyses.evolution's
    ev = Q.evolution(con, SERIES, high=HI)
    np.testing.assert_allclose(ev.jaccard_final, got.jaccard_final)
    split = Q.evolution_overlap(con, SERIES, high=HI, sampled_from="split")
    assert set(split.sampled_from) == {"tuned", "base"}
    np.testing.assert_allclose(split[split.sampled_from == "tuned"].jaccard_top_n,
                               got.jaccard_top_n)


@pytest.mark.parametrize("kw", [{}, {"width": 4, "sampled_from": "pooled"},
                                {"by": "sampled_from"}])
def test_position_profile_abs(env, kw):
    con, ref, _ = env
    got = Q.position_profile_abs(con, bins=5, high=HI, runs=["rl"], **kw)
    d = ref["rl"]
    if kw.get("sampled_from") != "pooled" and not kw.get("by"):
        d = d[d.sampled_from == "tuned"]
    w = kw.get("width") or int(np.ceil((d.pos.max() + 1) / 5))
    d = d.assign(bin=d.pos // w * w)
    keys = [kw["by"], "bin"] if kw.get("by") else ["bin"]
    want = d.groupby(keys).agg(mean=("js", "mean"), p50=("js", "median"),
                               p90=("js", lambda x: np.quantile(x, 0.9)),
                               share_high=("js", lambda x: (x > HI).mean()),
                               n=("js", "size")).reset_index()
    assert got.bin_left.tolist() == want.bin.tolist()
    assert (got.bin_right - got.bin_left == w).all()
    for c in ("mean", "p50", "p90", "share_high", "n"):  # quantiles interpolate in float32
        np.testing.assert_allclose(got[c].to_numpy(float), want[c].to_numpy(float),
                                   rtol=1e-6 if c in ("p50", "p90") else 1e-9, err_msg=c)
    if kw.get("by"):
        assert got[kw["by"]].tolist() == want[kw["by"]].tolist()


def test_figures_name_their_numbers(env):
    con, ref, _ = env
    t = FR.truncation(con, "rl", high=HI)
    want = _expected_truncation(ref["rl"][ref["rl"].sampled_from == "tuned"])
    assert t.summary["all"]["js_top_p90"]["spearman"] == pytest.approx(
        want["js_top_p90"]["spearman"])
    assert f"rank correlation {want['js_top_p95']['spearman']:.3g}" in t.caption
    assert "not stored" not in t.caption and t.run == "rl"
    p = FR.position_absolute(con, "rl", high=HI, sampled_from="split")
    assert p.params["by"] == "sampled_from" and "tuned-sampled:" in p.caption
    assert p.caption.endswith("side by side")


def test_evolution_figure_draws_the_bound_and_equal_size_sets(env):
    from core.figures import evolution

    con, _, _ = env
    spec = evolution(con, SERIES, high=HI)
    ov = Q.evolution_overlap(con, SERIES, high=HI)
    names = [t.name for t in spec.figure.data]
    assert "largest Jaccard the two set sizes allow" in names
    bound = next(t for t in spec.figure.data if t.name.startswith("largest Jaccard"))
    np.testing.assert_allclose(list(bound.y), ov.jaccard_bound)
    top = next(t for t in spec.figure.data if t.name.startswith("Jaccard of equal-size"))
    np.testing.assert_allclose(list(top.y), ov.jaccard_top_n)
    a = ov.iloc[0]
    assert (f"(at most {a.jaccard_bound:.3g} for {a.n_high} high-js tokens against the "
            f"final's {a.n_final}); of equal-size sets, its top-{a.top_n} by js: "
            f"{a.jaccard_top_n:.3g}") in spec.caption
    assert {"jaccard_bound", "jaccard_top_n"} <= set(spec.data.columns)
