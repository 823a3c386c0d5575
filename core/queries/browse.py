"""Per-run headline table and the trace browser (trace pages, counts, a trace's place, one
trace's tokens). No token search (search.py), no paper analyses (analyses.py) and no opening
of runs (connection.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.queries import cis, indexed, sampler
from core.queries.sql import TRACE_AGG_HIGH, TRACE_SORT, _filtered, _q


def headline(con, near_zero=0.01, high=0.1, runs=None, sampled_from=None) -> pd.DataFrame:
    """Per run (open order): run, kind, sampled_from (the label of the traces the row is on,
    e.g. tuned or base, or pooled; the default resolved per run as core/queries/sampler.py
    says; split: one row per sampler label of the run), n_traces, n_tokens,
    share_near_zero, share_high, mean_js, p95_js, top1_agree, mean_length (response tokens
    per trace) over those traces, and
    accuracy_tuned, accuracy_base over all the run's tuned- / base-sampled traces (NULL
    without such traces); last, the prompt-clustered 95% intervals share_near_zero_lo/hi,
    share_high_lo/hi and n_prompts (core/queries/cis.py)."""
    if sampler.check(sampled_from) != sampler.SPLIT:
        kept = sampler.labels_kept(con, runs, sampled_from)
        df = _headline(con, near_zero, high, runs, sampler.row_filter(kept))
        df.insert(2, "sampled_from", [kept.get(r) or sampler.POOLED for r in df["run"]])
        return df
    counts = sampler.trace_counts(con, runs)
    labels = dict.fromkeys(lab for c in counts.values() for lab in c if lab is not None)
    parts = [_headline(con, near_zero, high, runs, lab).assign(sampled_from=lab)
             for lab in labels]
    if not parts:
        return _headline(con, near_zero, high, runs, None).assign(sampled_from=None)
    df = pd.concat(parts, ignore_index=True)
    df = df[[c.get(lab, 0) > 0 for c, lab in zip(df["run"].map(counts), df["sampled_from"],
                                                  strict=True)]]
    order = {r: i for i, r in enumerate(counts)}
    df = df.iloc[sorted(range(len(df)), key=lambda i: (
        order[df["run"].iat[i]], sampler.label_rank(df["sampled_from"].iat[i])))]
    cols = list(df.columns[:2]) + ["sampled_from"] + [c for c in df.columns[2:]
                                                      if c != "sampled_from"]
    return df[cols].reset_index(drop=True)


def _headline(con, near_zero, high, runs, sampled_from) -> pd.DataFrame:
    """headline for one row filter (sql._filtered's `sampled_from`), without its
    sampled_from column."""
    base, p = _filtered(runs, sampled_from)
    trs, tp = _filtered(runs, sampled_from, src="traces")
    p = {**p, **tp}  # the same filter: equal names carry equal values
    t = f"""SELECT run, count(*) AS n_tokens, avg((js < $nz)::DOUBLE) AS
          share_near_zero, avg((js > $hi)::DOUBLE) AS share_high, avg(js) AS mean_js,
          quantile_cont(js, 0.95) AS p95_js, avg(top1_agree::DOUBLE) AS top1_agree
        FROM ({base}) GROUP BY run"""
    if indexed.active(con):  # the per-run numbers from the order index and cell counts
        st = indexed.run_stats(con, "js", runs, [0.95], near_zero, high,
                               sampled_from=sampled_from)

        def per(num, den):
            return [a / b if b else None for a, b in zip(st[num], st[den], strict=True)]

        t = """SELECT unnest($t_run::VARCHAR[]) AS run, unnest($t_n::BIGINT[]) AS n_tokens,
          unnest($t_nz::DOUBLE[]) AS share_near_zero, unnest($t_hi::DOUBLE[]) AS share_high,
          unnest($t_mean::DOUBLE[]) AS mean_js, unnest($t_p95::FLOAT[]) AS p95_js,
          unnest($t_top1::DOUBLE[]) AS top1_agree"""
        p = {**p, "t_run": st["run"].tolist(), "t_n": st["n_rows"].tolist(),
             "t_nz": per("n_lt", "n"), "t_hi": per("n_gt", "n"),
             "t_mean": [None if np.isnan(v) else v for v in st["mean"]],
             "t_p95": [None if np.isnan(q[0]) else q[0] for q in st["q"]],
             "t_top1": per("s_top1", "n_top1")}
    sql = f"""WITH t AS ({t}),
      tr AS (SELECT run, count(*) AS n_traces, avg(length) AS mean_length FROM ({trs})
          GROUP BY run),
      acc AS (SELECT run,
          avg(correct::DOUBLE) FILTER (WHERE sampled_from = 'tuned') AS accuracy_tuned,
          avg(correct::DOUBLE) FILTER (WHERE sampled_from = 'base') AS accuracy_base
          FROM traces GROUP BY run)
      SELECT r.run, r.kind, coalesce(tr.n_traces, 0) AS n_traces,
        coalesce(t.n_tokens, 0) AS n_tokens, t.* EXCLUDE (run, n_tokens),
        acc.* EXCLUDE (run), tr.mean_length
      FROM runs r LEFT JOIN t USING (run) LEFT JOIN tr USING (run) LEFT JOIN acc USING (run)
      WHERE $all_runs OR list_contains($f_runs::VARCHAR[], r.run) ORDER BY r.idx"""
    df = _q(con, sql, {**p, "nz": near_zero, "hi": high, "all_runs": runs is None,
                       "f_runs": p.get("f_runs", [])})
    return cis.headline(con, df, near_zero, high, runs, sampled_from)


def _trace_filters(run, search, correct, sampled_from) -> tuple[list[str], dict]:
    conds, params = ["tr.run = $run"], {"run": str(run)}
    if search is not None:
        conds.append("contains(lower(tr.prompt), lower($search))")
        params["search"] = str(search)
    if correct is not None:
        conds.append("tr.correct = $correct")
        params["correct"] = bool(correct)
    if sampled_from is not None:
        conds.append("tr.sampled_from = $sampled_from")
        params["sampled_from"] = sampled_from
    return conds, params


def _trace_rows(run, sort_by, descending, search, correct, high, sampled_from) -> tuple[str, dict]:
    """SQL of one run's filtered trace rows with their aggregates and `_rank` (0-based place
    in the requested order), and its parameters."""
    if sort_by not in TRACE_SORT:
        raise ValueError(f"sort_by must be one of {TRACE_SORT}, got {sort_by!r}")
    conds, params = _trace_filters(run, search, correct, sampled_from)
    params["hi"] = high
    direction = "DESC" if descending else "ASC"
    if high == TRACE_AGG_HIGH:  # the per-trace aggregates built once by open_runs
        a = "SELECT trace_id, max_js, mean_js, n_high FROM trace_agg WHERE run = $run"
    else:
        a = """SELECT trace_id, max(js) AS max_js, avg(js) AS mean_js,
          count(*) FILTER (WHERE js > $hi) AS n_high FROM tokens WHERE run = $run
          GROUP BY trace_id"""
    sql = f"""WITH a AS ({a})
      SELECT tr.trace_id, tr.prompt_id, tr.prompt, tr.correct, tr.length, tr.sampled_from,
        a.max_js, a.mean_js, coalesce(a.n_high, 0) AS n_high, tr.reference,
        tr.extracted_answer, tr.verifier, tr.finished,
        row_number() OVER (ORDER BY {sort_by} {direction} NULLS LAST, tr.trace_id) - 1 AS _rank
      FROM traces tr LEFT JOIN a USING (trace_id) WHERE {' AND '.join(conds)}"""
    return sql, params


def trace_list(con, run: str, sort_by="max_js", descending=True, search=None, correct=None,
               high=0.1, limit=100, offset=0, sampled_from=None) -> pd.DataFrame:
    """trace_id, prompt_id, prompt, correct, length, sampled_from, max_js, mean_js, n_high
    (tokens with js > high), reference, extracted_answer, verifier, finished (False: cut at
    the length cap; None: not known, e.g. given rollouts) for one run; `search` =
    case-insensitive substring of the prompt; sort_by one of TRACE_SORT (ties by trace_id),
    NULLs last; rows offset .. offset + limit of that order (a page)."""
    sampled_from = sampler.browse_filter(con, [run], sampled_from)
    sql, params = _trace_rows(run, sort_by, descending, search, correct, high, sampled_from)
    sql = f"""SELECT * EXCLUDE (_rank) FROM ({sql}) WHERE _rank >= $off ORDER BY _rank
      LIMIT $lim"""
    return _q(con, sql, {**params, "lim": limit, "off": offset})


def trace_count(con, run: str, search=None, correct=None, sampled_from=None) -> int:
    """How many traces of `run` trace_list's filters keep (for paging)."""
    conds, params = _trace_filters(run, search, correct,
                                   sampler.browse_filter(con, [run], sampled_from))
    return int(_q(con, f"SELECT count(*) AS n FROM traces tr WHERE {' AND '.join(conds)}",
                  params)["n"].iloc[0])


def trace_position(con, run: str, trace_id: int, sort_by="max_js", descending=True,
                   search=None, correct=None, high=0.1, sampled_from=None) -> int | None:
    """0-based place of `trace_id` in trace_list's order with these filters (its page is
    place // page size), or None when the filters leave it out."""
    sampled_from = sampler.browse_filter(con, [run], sampled_from)
    sql, params = _trace_rows(run, sort_by, descending, search, correct, high, sampled_from)
    df = _q(con, f"SELECT _rank FROM ({sql}) WHERE trace_id = $tid",
            {**params, "tid": int(trace_id)})
    return int(df["_rank"].iloc[0]) if len(df) else None


def trace_tokens(con, run: str, trace_id: int) -> pd.DataFrame:
    """One row per token of one trace, ordered by pos: run plus the tokens.parquet columns
    (trace_id, pos, rel_pos, token_id, token, every metric of core.metrics), then the topk
    columns (base_ids/tokens/probs, tuned_ids/tokens/probs, tuned_top1_rank_base,
    tuned_top1_prob_base; NULL when the run stored no top-k)."""
    sql = """SELECT t.*, k.* EXCLUDE (run, trace_id, pos) FROM tokens t
      LEFT JOIN (SELECT * FROM topk WHERE run = $run AND trace_id = $tid) k
        USING (run, trace_id, pos)
      WHERE t.run = $run AND t.trace_id = $tid ORDER BY t.pos"""
    return _q(con, sql, {"run": str(run), "tid": int(trace_id)})
