"""SQL building blocks and shared constants of the query layer.

Identifier whitelists (metric names, grouping and sort columns), quoting, the shared row
filter, parameter passing, binning and grid filling, and the constants the other modules
agree on (KOV, TRACE_AGG_HIGH, ...). Pure helpers: this module opens no connection, creates
no view or table and imports no other core.queries module.
"""

from __future__ import annotations

import math
import re

import pandas as pd

from core.store.schema import FLOAT_METRICS, INT_METRICS

LN2 = math.log(2)
# the metric columns a query may name: the registry's float32 then int32 metrics (core.metrics)
METRICS = tuple(FLOAT_METRICS + INT_METRICS)
BY_COLUMNS = (None, "run", "sampled_from")
SUBSET_HIGH, SUBSET_ALL = "js>threshold", "all"
TRACE_SORT = ("trace_id", "prompt_id", "correct", "length", "sampled_from",
              "max_js", "mean_js", "n_high")
KOV = 10               # top-k overlap sizes precomputed per row for k = 1..KOV (tokx.k_ovK)
TRACE_AGG_HIGH = 0.1   # the js threshold of trace_agg.n_high (trace_list's default `high`)


def _sql_str(s: str) -> str:
    """A SQL string literal (only used for file paths: table functions in views can't take
    parameters)."""
    return "'" + s.replace("'", "''") + "'"


def _ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def stored_columns(con, view: str = "tok") -> set[str]:
    """The columns of a view of this connection."""
    return {r[0] for r in con.execute(f"DESCRIBE {view}").fetchall()}


def _metric(name: str, con=None) -> str:
    """`name`, a metric a query may name; with `con`, also one that the opened runs store
    (runs written before a metric existed lack its column: one clear line, not DuckDB's
    binder error)."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; expected one of {METRICS}")
    if con is not None and name not in stored_columns(con):
        raise ValueError(f"metric {name!r} is not stored in the runs opened here: they were "
                         "written before it existed; precompute them again with --force to "
                         "add it")
    return name


def _group(by: str | None) -> str:
    """'' or 'col, ' for a whitelisted grouping column."""
    if by not in BY_COLUMNS:
        raise ValueError(f"by must be one of {BY_COLUMNS}, got {by!r}")
    return f"{by}, " if by else ""


def _filtered(runs=None, sampled_from=None, correct=None, src="tok") -> tuple[str, dict]:
    """SQL of the filtered `src` rows ("tok" or "tokx"; use as a CTE body) and its named
    parameters. sampled_from: None (every row), one label, or {run: label or None} (per-run
    choices, core/queries/sampler.py: runs left out of the dict keep no rows)."""
    conds, params = ["TRUE"], {}
    if runs is not None:
        conds.append("list_contains($f_runs::VARCHAR[], run)")
        params["f_runs"] = [str(r) for r in runs]
    if isinstance(sampled_from, dict):
        by_label: dict = {}
        for r, label in sampled_from.items():
            by_label.setdefault(label, []).append(str(r))
        alts = []
        for i, (label, rs) in enumerate(by_label.items()):
            params[f"f_sf_runs{i}"] = rs
            alt = f"list_contains($f_sf_runs{i}::VARCHAR[], run)"
            if label is not None:
                params[f"f_sf{i}"] = str(label)
                alt += f" AND sampled_from = $f_sf{i}"
            alts.append(f"({alt})")
        conds.append("(" + (" OR ".join(alts) or "FALSE") + ")")
    elif sampled_from is not None:
        conds.append("sampled_from = $f_sampled_from")
        params["f_sampled_from"] = sampled_from
    if correct is not None:
        conds.append("correct = $f_correct")
        params["f_correct"] = bool(correct)
    return f"SELECT * FROM {src} WHERE " + " AND ".join(conds), params


def _used(sql: str, params: dict) -> dict:
    """The named parameters the SQL uses (DuckDB rejects unused ones)."""
    used = set(re.findall(r"\$(\w+)", sql))
    return {k: v for k, v in params.items() if k in used}


def _q(con, sql: str, params: dict) -> pd.DataFrame:
    """Run with the named parameters the SQL uses (DuckDB rejects unused ones)."""
    return con.execute(sql, _used(sql, params)).df()


def overlap_sql(base: str, tuned: str, k: int) -> str:
    """SQL of the number of distinct ids shared by the first k of two id lists (UTINYINT):
    the top-k overlap size of one row (tokx.k_ovK; core/queries/run_index.py computes the
    same in numpy when the lists allow)."""
    return (f"len(list_intersect(list_slice({base}, 1, {int(k)}), "
            f"list_slice({tuned}, 1, {int(k)})))::UTINYINT")


def _order(by: str | None, *cols: str) -> str:
    keys = ([by] if by else []) + list(cols)
    return "ORDER BY " + ", ".join(keys) if keys else ""


def _bin(col: str, p: str) -> str:
    """Bin index of `col` for params $p_a (left), $p_w (width), $p_n (bins), clamped."""
    return f"least(greatest(floor(({col} - ${p}_a) / ${p}_w), 0), ${p}_n - 1)::INTEGER"


def _fill_grid(df: pd.DataFrame, keys: list[str], sizes: list[int]) -> pd.DataFrame:
    """Reindex a count table on keys (group col first if any) to the full grid, zeros filled."""
    levels = ([df[keys[0]].drop_duplicates().sort_values(na_position="last").tolist()]
              if len(keys) > len(sizes) else [])
    levels += [range(n) for n in sizes]
    idx = pd.MultiIndex.from_product(levels, names=keys)
    return df.set_index(keys)["count"].reindex(idx, fill_value=0).reset_index()
