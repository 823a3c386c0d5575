"""The figures of the paper's analysis 5, probability-mass reallocation (docs/paper.md), and
of the URIAL categories: query (core.queries.ranking) -> Plotly figure + caption, one
FigureSpec each, like the builders of the other analyses (builders.py, whose conventions
these follow: `sampled_from`, `by`, plain-text captions that end with the traces used).
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core import queries as Q
from core.figures.spec import (
    CI_NOTE,
    FigureSpec,
    _colour,
    _gk,
    _keys,
    _name,
    _part,
    _per_group,
    _sources,
    _spec,
    with_ci,
)
from core.figures.style import SUBSET_COLOURS, esc, pct, source_label

__all__ = ["topk_overlap", "tuned_top1_rank", "urial"]


def _vocab_size(con, run) -> int | None:
    """The run's tokenizer vocabulary size (as its manifest records it), or None."""
    from core.queries.robustness import run_of

    me = run_of(con, run)
    return me.vocab_size if me is not None else None


def topk_overlap(con, run, *, sampled_from=None, by=None, high=0.1, k_max=10) -> FigureSpec:
    sf, by, traces = _sources(con, run, sampled_from, by)
    params = dict(threshold=high, k_max=k_max, runs=[run], sampled_from=sf, by=by)
    df = Q.topk_overlap(con, **params)
    keys, fig, summ, cis = _keys(df, by), go.Figure(), {}, {}
    for i, k in enumerate(keys):
        d = _part(df, by, k)
        for subset, dash in [(Q.SUBSET_HIGH, "solid"), (Q.SUBSET_ALL, "dash")]:
            s = d[d.subset == subset]
            label = f"js > {high:g}" if subset == Q.SUBSET_HIGH else "all tokens"
            colour = SUBSET_COLOURS[subset] if k is None else _colour(k, i)
            fig.add_scatter(x=s.k, y=s.overlap, mode="lines+markers", line=dict(
                color=colour, dash=dash, width=2), name=esc(label) + (
                    "" if k is None else f", {source_label(k)}"), customdata=s.n,
                hovertemplate="k %{x}: overlap %{y:.1%} (n %{customdata})")
            summ.setdefault(_gk(k), {})[subset] = {
                int(r.k): float(r.overlap) for r in s.itertuples() if r.k in (1, k_max)}
            cis.setdefault(_gk(k), {})[subset] = {
                int(r.k): with_ci(pct, r.overlap, r.overlap_lo, r.overlap_hi)
                for r in s.itertuples() if r.k in (1, k_max)}
    fig.update_layout(xaxis=dict(title="k", dtick=1), yaxis=dict(
        title="|top-k base & top-k tuned| / k", tickformat=".0%", range=[0, 1.02]))

    def at(subset, kk):
        return {k: cis.get(_gk(k), {}).get(subset, {}).get(kk, "n/a") for k in keys}
    hi1, all1 = _per_group(at(Q.SUBSET_HIGH, 1), str), _per_group(at(Q.SUBSET_ALL, 1), str)
    cap = (f"Top-k overlap of the two models' candidates: top-1 {hi1} at js > {high:g} vs "
           f"{all1} overall; top-{k_max} {_per_group(at(Q.SUBSET_HIGH, k_max), str)} at js > "
           f"{high:g} (full-vocabulary js; {CI_NOTE})")
    vocab = _vocab_size(con, run)
    if vocab is not None and vocab <= 4 * k_max:
        cap += (f". Not meaningful here: the vocabulary has {vocab} tokens, so top-{k_max} "
                "lists cover much of it and overlap whatever the models do")
    return _spec("topk_overlap", "Reallocation: overlap of the top-k candidates", cap, fig, df,
                 "topk_overlap", params, {"overlap": summ}, traces=traces)


def tuned_top1_rank(con, run, *, sampled_from=None, by=None,
                    high=0.1, max_rank=10, low_prob=0.01) -> FigureSpec:
    sf, by, traces = _sources(con, run, sampled_from, by)
    params = dict(threshold=high, max_rank=max_rank, runs=[run], sampled_from=sf, by=by)
    df = Q.tuned_top1_base_rank_hist(con, **params)
    keys = _keys(df, by)
    order = [str(r) for r in range(1, max_rank + 1)] + [f">{max_rank}"]
    subsets = [(Q.SUBSET_HIGH, f"js > {high:g}"), (Q.SUBSET_ALL, "all tokens")]
    fig = make_subplots(rows=1, cols=1) if by is None else make_subplots(
        rows=1, cols=2, shared_yaxes=True, subplot_titles=[esc(t) for _, t in subsets])
    for c, (subset, label) in enumerate(subsets, start=1):
        for i, k in enumerate(keys):
            d = _part(df, by, k)
            d = d[d.subset == subset]
            fig.add_bar(x=d.bucket, y=d.share, name=esc(label) if k is None else _name(k),
                        marker_color=SUBSET_COLOURS[subset] if k is None else _colour(k, i),
                        legendgroup=subset if k is None else k,
                        showlegend=k is None or c == 1, customdata=d.n,
                        hovertemplate="rank %{x}: %{y:.1%} (n %{customdata})",
                        row=1, col=1 if by is None else c)
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=order,
                     title_text="rank of the tuned top-1 token under the base model")
    fig.update_layout(barmode="group", yaxis=dict(title="share of positions", tickformat=".0%"))
    hi = df[df.subset == Q.SUBSET_HIGH]
    r1 = {k: float(_part(hi[hi["rank"] == 1], by, k).share.sum()) for k in keys}
    r3 = {k: float(_part(hi[hi["rank"] <= 3], by, k).share.sum()) for k in keys}
    re = Q.reallocation(con, threshold=high, low_prob=low_prob, runs=[run], sampled_from=sf, by=by)
    re = re[re.subset == Q.SUBSET_HIGH]
    lp = {k: _part(re, by, k).share_low_prob.iloc[0] if len(_part(re, by, k)) else None
          for k in keys}
    cap = (f"At js > {high:g} the tuned top-1 is the base top-1 for {_per_group(r1, pct)} and "
           f"within the base top-3 for {_per_group(r3, pct)}; base probability < {low_prob:g} "
           f"for {_per_group(lp, pct)}")
    summ = {"share_rank1": r1, "share_top3": r3, "share_low_prob": lp,
            "low_prob_source": "reallocation", "low_prob": low_prob}
    return _spec("tuned_top1_base_rank", "Reallocation: where the tuned top-1 sits under the base",
                 cap, fig, df, "tuned_top1_base_rank_hist", params,
                 {k: ({_gk(g): x for g, x in v.items()} if isinstance(v, dict) else v)
                  for k, v in summ.items()}, traces=traces)


def urial(con, run, *, sampled_from=None, by=None) -> FigureSpec:
    sf, by, traces = _sources(con, run, sampled_from, by)
    params = dict(runs=[run], sampled_from=sf, by=by)
    df = Q.urial_categories(con, **params)
    keys, fig = _keys(df, by), go.Figure()
    for i, k in enumerate(keys):
        d = _part(df, by, k)
        fig.add_bar(x=d.category, y=d.share, name=_name(k), marker_color=_colour(k, i),
                    customdata=d.n, text=[pct(v) for v in d.share], textposition="outside",
                    hovertemplate="%{x}: %{y:.1%} (n %{customdata})")
    fig.update_layout(barmode="group", showlegend=bool(by), xaxis_title=(
        "category of the sampled token: unshifted = base rank 1, marginal = 2-3, shifted > 3"),
        yaxis=dict(title="share of tokens", tickformat=".0%", range=[0, 1.1]))
    sh = {c: {k: _part(df[df.category == c], by, k).share.sum() for k in keys}
          for c in Q.URIAL_CATEGORIES}
    cap = ("URIAL categories (rank of the sampled token under the base model): "
           + ", ".join(f"{_per_group(sh[c], pct)} {c}" for c in Q.URIAL_CATEGORIES))
    return _spec("urial_categories", "URIAL categories of the sampled tokens", cap, fig, df,
                 "urial_categories", params,
                 {c: {_gk(k): float(v) for k, v in d.items()} for c, d in sh.items()},
                 traces=traces)
