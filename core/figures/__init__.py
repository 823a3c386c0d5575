"""Plotly figures of the paper's analyses (docs/paper.md), one FigureSpec each.

  builders.py  one builder per analysis of a run: (con, run, ...) -> FigureSpec (analyses
               1-4)
  ranking.py   the builders of analysis 5 (reallocation) and the URIAL categories
  runs.py      the figures across runs: evolution over a series, contrast of two runs
  spec.py      the FigureSpec and what the builders share (grouping, axes, line styles)
  style.py     the template, the colour-blind-safe palette, escaping of data text

`overview(con, run, ...)` builds every figure that applies to a run, by default on the run's
tuned-sampled traces (the paper's setting; `sampled_from`, core.queries.sampler). A
FigureSpec carries the figure, its caption (plain text, with the key number computed from
the data and the traces used), the DataFrame behind it and the core.queries call (name and
parameters) that produced it; core.figures.export writes them to files. Never imports a UI toolkit.
"""

from __future__ import annotations

from core.figures.builders import (
    FigureSpec,
    entropy_by_js,
    js_cdf,
    js_entropy_heatmap,
    js_histogram,
    position,
    token_identity,
)
from core.figures.ranking import topk_overlap, tuned_top1_rank, urial
from core.figures.robustness import position_absolute, truncation
from core.figures.runs import contrast, evolution
from core.figures.style import TEMPLATE, esc, token_label
from core.queries import opened_runs, sampler

FIGURE_IDS = ("js_hist", "js_cdf", "entropy_by_js", "js_entropy_2d", "position_profile",
              "position_profile_abs",
              "token_identity", "topk_overlap", "tuned_top1_base_rank", "urial_categories",
              "truncation", "evolution", "contrast")


def _count(con, sql: str, run: str) -> int:
    return int(con.execute(sql, [run]).fetchone()[0] or 0)


def has_both_sources(con, run: str) -> bool:
    """Whether the run has traces sampled from more than one model."""
    return _count(con, "SELECT count(DISTINCT sampled_from) FROM traces WHERE run = ?", run) > 1


def overview(con, run: str, *, series=None, contrast_with=None, sampled_from=None,
             split_by_source=None, near_zero=0.01, high=0.1) -> list[FigureSpec]:
    """Every figure that applies to `run` (a run opened in `con`), in FIGURE_IDS order.

    series: run names of a checkpoint series (oldest first, the last = final) -> evolution.
    contrast_with: another run (e.g. the SFT pair) -> the side-by-side contrast.
    sampled_from: which traces (core.queries.sampler): None = the paper's setting, each run
    on its tuned-sampled traces when it has them; "tuned", "base", "pooled" or "split" (one
    set per sampler, side by side). Every caption names the traces it used.
    split_by_source: True is sampled_from="split" (kept for older callers).
    Figures whose table is empty (e.g. no top-k table) are left out.
    """
    run = str(run)
    opened = set(opened_runs(con)["run"])
    missing = [r for r in [*(series or []), *([contrast_with] if contrast_with is not None
                                               else [])] if str(r) not in opened]
    if missing:
        raise ValueError(f"runs not opened in this connection: {missing}")
    if split_by_source and sampled_from is None:
        sampled_from = "split"
    sampler.check(sampled_from)
    one = dict(sampled_from=sampled_from)
    has_tokens = _count(con, "SELECT count(js) FROM tokens WHERE run = ?", run) > 0
    has_topk = _count(con, "SELECT count(*) FROM topk WHERE run = ?", run) > 0
    specs = []
    if has_tokens:
        specs += [js_histogram(con, run, near_zero=near_zero, high=high, **one),
                  js_cdf(con, run, near_zero=near_zero, high=high, **one),
                  entropy_by_js(con, run, near_zero=near_zero, high=high, **one),
                  js_entropy_heatmap(con, run, **one),
                  position(con, run, high=high, **one),
                  position_absolute(con, run, high=high, **one),
                  token_identity(con, run, high=high, **one)]
        if has_topk:
            specs += [topk_overlap(con, run, high=high, **one),
                      tuned_top1_rank(con, run, high=high, **one)]
        specs.append(urial(con, run, **one))
        specs.append(truncation(con, run, high=high, **one))
    if series:
        specs.append(evolution(con, [str(s) for s in series], high=high, **one))
    if contrast_with is not None and str(contrast_with) != run:
        specs.append(contrast(con, run, str(contrast_with), near_zero=near_zero, high=high,
                              **one))
    for s in specs:  # evolution and contrast are named after the run whose overview they are
        s.run = run
    return [s for s in specs if not s.data.empty and not _all_zero(s)]


def _all_zero(spec: FigureSpec) -> bool:
    """Grid-shaped tables (zeros filled in) with no token at all."""
    for col in ("count", "n"):
        if col in spec.data and spec.data[col].sum() == 0:
            return True
    return False


__all__ = [
    "FIGURE_IDS",
    "TEMPLATE",
    "FigureSpec",
    "contrast",
    "entropy_by_js",
    "esc",
    "evolution",
    "has_both_sources",
    "js_cdf",
    "js_entropy_heatmap",
    "js_histogram",
    "overview",
    "position",
    "position_absolute",
    "token_identity",
    "token_label",
    "topk_overlap",
    "tuned_top1_rank",
    "truncation",
    "urial",
]
