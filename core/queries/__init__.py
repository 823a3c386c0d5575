"""DuckDB query layer over one or several run folders (the analyses of docs/paper.md).

`open_runs` returns an in-memory connection with lazy views over the run tables:
  runs    run, kind, series_step, traces_from, path, idx, accuracy, accuracy_source,
          series_sampling   (a small table, from manifest.json; accuracy is the tuned
          checkpoint's own, core.store.samplers.checkpoint_accuracy)
  tokens  tokens.parquet rows of all runs + `run`
  topk    topk.parquet rows + `run`
  traces  traces.parquet rows + `run`
  tok     tokens + traces' correct, sampled_from, length, joined on (run, trace_id)

Every query takes the connection first and returns a pandas DataFrame. User values are
always DuckDB parameters; identifiers (metric names, grouping, sort columns) are whitelisted.
Shared filters: `runs` (run names), `sampled_from` (which traces: "tuned", "base", "pooled"
or "split"; None = the paper's setting, tuned-sampled where a run has them, see sampler.py),
`correct` (bool) and `by` (None, "run" or "sampled_from": adds that column as the leading
grouping column).

  connection.py   open_runs, table_files, opened_runs, prepare: the runs table and the lazy
                  views
  run_index.py    a run's on-disk query index (DuckDB file, built once per run): token rows
                  with trace columns and top-k facts, a js-sorted copy, cells, vocab codes
  materialize.py  tokx and trace_agg: views over the lazy views, or over the attached run
                  indexes (materialised)
  sql.py          SQL helpers (whitelists, filters, binning) and the shared constants
  sampler.py      the sampled_from choice: validation, the per-run default, captions' words
  analyses.py     the paper's analyses 1-4 and 7: sparsity, entropy, position, token
                  identity, contrast
  ranking.py      analysis 5, probability-mass reallocation (top-k overlap, the tuned
                  top-1's base rank), and the URIAL categories
  evolution.py    the evolution over a series of checkpoints, with intervals
  robustness.py   how much an answer moves: full vs truncated js, the evolution's Jaccard
                  beside its size bound and equal-size sets, js by absolute position
  browse.py       headline table, trace list (pages, counts, a trace's place), one trace's
                  tokens
  pairs.py        the same prompt, both samplers: a trace beside the other sampler's trace
                  of its prompt, verdicts, where they part
  search.py       token search: conditions incl. regex (RE2) and n-grams, pages, counts,
                  CSV/Parquet export of every hit
  indexed.py      the analyses answered from order indexes on materialised connections
  aggregated.py   the row-scanning analyses answered from per-cell pre-aggregates and the
                  order index on materialised connections
  order_index.py  exact order statistics over sorted segments (numpy only), and the
                  per-connection caches
"""

from core.queries.analyses import (
    contrast,
    entropy_by_js_bin,
    eps_for_budget,
    histogram,
    js_entropy_hist2d,
    position_profile,
    sparsity_summary,
    token_identity,
)
from core.queries.browse import (
    headline,
    trace_count,
    trace_list,
    trace_position,
    trace_tokens,
)
from core.queries.connection import (
    open_runs,
    opened_runs,
    prepare,
    run_gone,
    session,
)
from core.queries.evolution import evolution
from core.queries.pairs import pair_choices, parting, same_prompt, sampler_pair
from core.queries.ranking import (
    URIAL_CATEGORIES,
    reallocation,
    topk_overlap,
    tuned_top1_base_rank_hist,
    urial_categories,
)
from core.queries.robustness import (
    evolution_overlap,
    position_profile_abs,
    truncation_agreement,
)
from core.queries.sampler import SAMPLED_FROM
from core.queries.sampler import choices as sampled_from_choices
from core.queries.sampler import describe as describe_traces
from core.queries.sampler import resolve as resolve_sampled_from
from core.queries.search import (
    parse_ngram,
    token_search,
    token_search_bytes,
    token_search_count,
    token_search_export,
)
from core.queries.sql import (
    BY_COLUMNS,
    METRICS,
    SUBSET_ALL,
    SUBSET_HIGH,
    TRACE_SORT,
)
from core.store.validate import table_files

__all__ = [
    "pair_choices",
    "parting",
    "sampler_pair",
    "same_prompt",
    "run_gone",
    "BY_COLUMNS",
    "METRICS",
    "SAMPLED_FROM",
    "SUBSET_ALL",
    "SUBSET_HIGH",
    "TRACE_SORT",
    "URIAL_CATEGORIES",
    "contrast",
    "describe_traces",
    "entropy_by_js_bin",
    "eps_for_budget",
    "evolution",
    "evolution_overlap",
    "headline",
    "histogram",
    "js_entropy_hist2d",
    "open_runs",
    "opened_runs",
    "position_profile",
    "position_profile_abs",
    "prepare",
    "reallocation",
    "resolve_sampled_from",
    "sampled_from_choices",
    "session",
    "sparsity_summary",
    "table_files",
    "token_identity",
    "parse_ngram",
    "token_search",
    "token_search_bytes",
    "token_search_count",
    "token_search_export",
    "topk_overlap",
    "trace_count",
    "trace_list",
    "trace_position",
    "trace_tokens",
    "truncation_agreement",
    "tuned_top1_base_rank_hist",
    "urial_categories",
]
