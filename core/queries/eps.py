"""The eps a target token budget maps to when the metric has ties: the stored value whose
realised budget (the share of the run's stored tokens above it) is closest to the target.

`analyses.eps_for_budget` reads the (1 - budget) quantile, which is right for a continuous
metric but not on ties: 97% of a run's js_top_p values can be exactly 0, so the quantile
for 5% is 0 while "js_top_p > 0" switches only 3%. Here every distinct stored value is a
candidate eps (the decision is "metric > eps", so the realised budget only changes at stored
values), and the one whose realised share is nearest the target wins (ties: the larger eps,
the smaller budget). The realised budget is returned beside it, for the caption.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.queries import sampler
from core.queries.sql import _filtered, _metric, _q


def eps_closest(con, budgets, metric="js", runs=None, sampled_from=None) -> pd.DataFrame:
    """budget, eps, realised (share of the non-NULL stored values > eps), quantile_eps
    (analyses.eps_for_budget's value) per target budget (shares 0..1) over the traces
    `sampled_from` chooses (default: tuned-sampled)."""
    col = _metric(metric, con)
    filt, by = sampler.apply(con, runs, sampled_from)
    if by:
        raise ValueError("eps_closest gives one eps per budget: choose sampled_from tuned, "
                         "base or pooled, not split")
    base, p = _filtered(runs, filt)
    v = _q(con, f"""SELECT {col}::DOUBLE AS x, count(*) AS c FROM ({base})
      WHERE {col} IS NOT NULL GROUP BY 1 ORDER BY 1""", p)
    x, c = v["x"].to_numpy(), v["c"].to_numpy(dtype=np.float64)
    total = c.sum()
    above = (total - np.cumsum(c)) / total if total else np.zeros(0)  # share > x[i]
    from core.queries.analyses import eps_for_budget
    q = eps_for_budget(con, budgets, metric=metric, runs=runs, sampled_from=sampled_from)
    rows = []
    for b, qe in zip(q["budget"], q["eps"], strict=True):
        if not len(x):
            rows.append((b, float("nan"), float("nan"), qe))
            continue
        gap = np.abs(above - b)
        i = int(np.flatnonzero(gap == gap.min())[-1])  # ties: the larger eps
        rows.append((b, float(x[i]), float(above[i]), qe))
    return pd.DataFrame(rows, columns=["budget", "eps", "realised", "quantile_eps"])
