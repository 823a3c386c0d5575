"""DuckDB query layer over one or several run folders (the analyses of docs/paper.md).

`open_runs` returns an in-memory connection with lazy views over the run tables:
  runs    run, kind, series_step, traces_from, path, idx   (a small table, from manifest.json)
  tokens  tokens.parquet rows of all runs + `run`
  topk    topk.parquet rows + `run`
  traces  traces.parquet rows + `run`
  tok     tokens + traces' correct, sampled_from, length, joined on (run, trace_id)

Every query takes the connection first and returns a pandas DataFrame. User values are
always DuckDB parameters; identifiers (metric names, grouping, sort columns) are whitelisted.
Shared filters: `runs` (run names), `sampled_from` ("tuned"/"base"), `correct` (bool) and
`by` (None, "run" or "sampled_from": adds that column as the leading grouping column).

  connection.py   open_runs, table_files, opened_runs: the runs table and the lazy views
  materialize.py  tokx and trace_agg (views, or in-memory tables) and the numpy top-k facts
  sql.py          SQL helpers (whitelists, filters, binning) and the shared constants
  analyses.py     the paper's analyses: sparsity .. evolution, contrast
  browse.py       headline table, trace list (pages, counts, a trace's place), one trace's
                  tokens, token search
  indexed.py      the analyses answered from order indexes on materialised connections
  order_index.py  exact order statistics over sorted segments (numpy only)
"""

from core.queries.analyses import (
    URIAL_CATEGORIES,
    contrast,
    entropy_by_js_bin,
    eps_for_budget,
    evolution,
    histogram,
    js_entropy_hist2d,
    position_profile,
    reallocation,
    sparsity_summary,
    token_identity,
    topk_overlap,
    tuned_top1_base_rank_hist,
    urial_categories,
)
from core.queries.browse import (
    headline,
    token_search,
    trace_count,
    trace_list,
    trace_position,
    trace_tokens,
)
from core.queries.connection import open_runs, opened_runs, table_files
from core.queries.sql import (
    BY_COLUMNS,
    METRICS,
    SUBSET_ALL,
    SUBSET_HIGH,
    TRACE_SORT,
)

__all__ = [
    "BY_COLUMNS",
    "METRICS",
    "SUBSET_ALL",
    "SUBSET_HIGH",
    "TRACE_SORT",
    "URIAL_CATEGORIES",
    "contrast",
    "entropy_by_js_bin",
    "eps_for_budget",
    "evolution",
    "headline",
    "histogram",
    "js_entropy_hist2d",
    "open_runs",
    "opened_runs",
    "position_profile",
    "reallocation",
    "sparsity_summary",
    "table_files",
    "token_identity",
    "token_search",
    "topk_overlap",
    "trace_count",
    "trace_list",
    "trace_position",
    "trace_tokens",
    "tuned_top1_base_rank_hist",
    "urial_categories",
]
