"""The paper's evolution analysis (docs/paper.md, 7) as a query over the `tok` view: how
the shift grows over a series of checkpoints (quantiles of js, the high-js set's size and
its overlap with the final checkpoint's, accuracy), with prompt-clustered intervals
(cis.evolution). SQL on lazy connections, the order-index and pre-aggregate paths on
materialised ones."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.queries import aggregated, cis, indexed, sampler
from core.queries.sql import _filtered, _q
from core.store.samplers import series_accuracy_of


def evolution(con, series_runs: list[str], high=0.1, sampled_from=None,
              correct=None) -> pd.DataFrame:
    """[sampled_from (split only),] run, step (manifest series_step, else the list index),
    p50, p90, p95, p99 of js, n_high and jaccard_final: Jaccard overlap of the run's high-js
    positions (trace_id, pos with js > high) with those of the last run in `series_runs`,
    each run on the traces `sampled_from` chooses for it (default: its tuned-sampled ones;
    NULL for a run that sampled its own traces, --series-sampling own: its positions are not
    the final's), and accuracy, accuracy_source: the checkpoint's own accuracy, from one
    source for every checkpoint where one covers them all (core.store.samplers.
    series_accuracy: own samples, else model cards; NULL with "not measured"); with
    prompt-clustered intervals (cis.evolution): share_high (js > high) and its _lo/_hi,
    diff_final (share_high minus the final's) and its _lo/_hi, jaccard_final_lo/hi."""
    series_runs = [str(r) for r in series_runs]
    if not series_runs:
        raise ValueError("series_runs is empty")
    if sampler.check(sampled_from) != sampler.SPLIT:
        filt = sampler.row_filter(sampler.labels_kept(con, series_runs, sampled_from))
        return _evolution(con, series_runs, high, filt, correct)
    return _evolution_split(con, series_runs, high, correct)


def _evolution_split(con, series_runs, high, correct) -> pd.DataFrame:
    counts = sampler.trace_counts(con, series_runs)
    parts = [_evolution(con, series_runs, high, sampler.row_filter(
                 sampler.labels_kept(con, series_runs, s)), correct).assign(sampled_from=s)
             for s in sampler.SOURCES
             if any(sampler.label_for(c, s) for c in counts.values())]
    cols = ["sampled_from", "run", "step", "p50", "p90", "p95", "p99", "n_high",
            "jaccard_final", "accuracy", "accuracy_source", *cis.EVOLUTION_COLS]
    return (pd.concat(parts, ignore_index=True)[cols] if parts
            else pd.DataFrame(columns=cols))


def _evolution(con, series_runs, high, sampled_from, correct) -> pd.DataFrame:
    """evolution for one row filter (sql._filtered's `sampled_from`)."""
    base, p = _filtered(series_runs, sampled_from, correct)
    s = "SELECT run, quantile_cont(js, [0.5, 0.9, 0.95, 0.99]) AS q FROM f GROUP BY run"
    hfin = "(SELECT count(*) FROM fin)"
    i = """SELECT h.run, count(*) AS n_high, count(fin.pos) AS n_inter
            FROM h LEFT JOIN fin USING (trace_id, pos) GROUP BY h.run"""
    if indexed.active(con):  # quantiles from the order index, high-set sizes per cell
        st = indexed.run_stats(con, "js", series_runs, [0.5, 0.9, 0.95, 0.99],
                               sampled_from=sampled_from, correct=correct)
        s = "SELECT unnest($s_run::VARCHAR[]) AS run, unnest($s_q::FLOAT[][]) AS q"
        n_high, n_inter, n_fin = aggregated.evolution_counts(con, series_runs, high,
                                                             sampled_from, correct)
        i = """SELECT unnest($i_run::VARCHAR[]) AS run, unnest($i_h::BIGINT[]) AS n_high,
            unnest($i_i::BIGINT[]) AS n_inter"""
        hfin = "$n_fin::BIGINT"
        p = {**p, "s_run": st["run"].tolist(),
             "s_q": [[None if np.isnan(v) else v for v in q] for q in st["q"]],
             "i_run": list(n_high), "i_h": list(n_high.values()),
             "i_i": [n_inter.get(r, 0) for r in n_high], "n_fin": n_fin}
    sql = f"""WITH f AS ({base}),
      h AS (SELECT run, trace_id, pos FROM f WHERE js > $hi),
      fin AS (SELECT trace_id, pos FROM h WHERE run = $last),
      s AS ({s}),
      i AS ({i})
      SELECT s.run, r.series_step, s.q[1] AS p50, s.q[2] AS p90, s.q[3] AS p95, s.q[4] AS p99,
        coalesce(i.n_high, 0) AS n_high,
        CASE WHEN r.series_sampling = 'own' AND s.run <> $last THEN NULL  -- own positions
          ELSE coalesce(i.n_inter, 0) / nullif(coalesce(i.n_high, 0) + {hfin}
            - coalesce(i.n_inter, 0), 0) END AS jaccard_final,
        r.accuracy, coalesce(r.accuracy_source, 'not measured') AS accuracy_source
      FROM s LEFT JOIN i USING (run) LEFT JOIN runs r USING (run)"""
    df = _q(con, sql, {**p, "hi": high, "last": series_runs[-1]})
    order = {r: k for k, r in enumerate(series_runs)}
    df = df.assign(_o=df["run"].map(order)).sort_values("_o").reset_index(drop=True)
    df["step"] = [int(s) if pd.notna(s) else int(o)
                  for s, o in zip(df["series_step"], df["_o"], strict=True)]
    df = df[["run", "step", "p50", "p90", "p95", "p99", "n_high", "jaccard_final",
             "accuracy", "accuracy_source"]]
    paths = dict(con.execute("SELECT run, path FROM runs").fetchall())
    got = series_accuracy_of([paths.get(r) for r in df["run"]])
    df["accuracy"] = [a for a, _ in got]
    df["accuracy_source"] = [src for _, src in got]
    return cis.evolution(con, df, series_runs, high, sampled_from, correct)
