"""Budgets chosen before a sweep: the eps at which a target share of a run's stored tokens
switches, read off the run's js distribution (core.queries.eps_for_budget).

The metric is the one the decoder's decision computes: `js_top_p` when the sweep's top-p is
the run's own js_top_p nucleus (< 1), else the full-vocabulary `js`. Cross-sampling decodes
mixed prefixes, not the stored traces, so the budget a sweep actually spends at that eps is
measured by the sweep itself (both its decisions and its changed tokens).

On ties (97% of a run's js_top_p values can be exactly 0) the quantile is not a budget: the
eps is the stored value whose realised share is closest to the target
(core.queries.eps.eps_closest), and the realised share is returned beside it (`realised`)
for the caption.
"""

from __future__ import annotations

from pathlib import Path

from core.store.run import Run


def budget_metric(js_top_p: float | None, top_p: float) -> str:
    """The decision metric at `top_p` for a run whose js_top_p nucleus is `js_top_p`."""
    nucleus = 0.7 if js_top_p is None else js_top_p
    return "js_top_p" if top_p < 1 and abs(top_p - nucleus) < 1e-9 else "js"


def eps_for_targets(run_dir: str | Path | Run, budgets: list[float], top_p: float,
                    con=None, run: str | None = None):
    """(metric, DataFrame budget, eps, realised, quantile_eps) for target `budgets` (shares
    0..1) on one run (a Run or its folder): eps is the stored value whose realised share is
    closest. `con`/`run`: an open collection and the run's name in it (the app's shared
    connection); default: the run folder opened on its own."""
    from core.queries import open_runs
    from core.queries.eps import eps_closest

    me = run_dir if isinstance(run_dir, Run) else Run.open(run_dir)
    metric = budget_metric(me.js_top_p, top_p)
    if con is None:
        name = me.name
        with open_runs([me.require()], names=[name]) as own:
            return metric, eps_closest(own, budgets, metric=metric, runs=[name])
    return metric, eps_closest(con, budgets, metric=metric, runs=[run])
