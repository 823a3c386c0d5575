"""Run and Trace: a run of the cache opened for Python use (DataFrames, Plotly figures, the
trace view). Lookups that cannot be done (no such run, trace or figure) raise
core.errors.RunsError with one line that names what exists; nothing is written anywhere."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core import api
from core.errors import RunsError
from core.figures import FIGURE_IDS, overview
from core.figures.trace import trace_payload


def _cache(cache) -> Path:
    return Path(cache) if cache not in (None, "") else Path(api.default_cache())


def runs(cache=None) -> list[str]:
    """Names of the complete runs in `cache` (default: $SHIFTLENS_CACHE, else cache/)."""
    return [r.name for r in api.list_runs(_cache(cache))]


def open(name: str, cache=None) -> Run:  # noqa: A001 - shiftlens.open reads as intended
    """The run `name` of `cache`, opened with its checkpoint series and contrast partners
    (what the overview's evolution and contrast figures need)."""
    folder = _cache(cache)
    infos = api.list_runs(folder)
    by_name = {r.name: r for r in infos}
    if name not in by_name:
        have = ", ".join(sorted(by_name)) or "none"
        raise RunsError(f"no run named {str(name)[:80]!r} in {folder} (runs there: {have})")
    info = by_name[name].require()  # a damaged run: its one line
    infos = [r for r in infos if not r.damaged]
    series = api.series_of(infos, info)
    partners = api.contrast_candidates(infos, info)
    wanted = [info.name, *[s for s in series if s != info.name], *partners]
    con = api.open_runs([by_name[n].path for n in wanted], names=wanted)
    return Run(info, con, series=series, contrast_with=partners[0] if partners else None)


class Run:
    """One run: `name`, `path`, `manifest`; traces(), trace(id), figure(id), overview()."""

    def __init__(self, info, con, series=None, contrast_with=None):
        self.info, self.con = info, con
        self.name, self.path = info.name, Path(info.path)
        self.manifest = info.provenance()  # a copy, for provenance
        self.series = list(series or [])
        self.contrast_with = contrast_with
        self._overviews: dict = {}

    def __repr__(self) -> str:
        return (f"<shiftlens.Run {self.name!r}: {self.info.pair}, {self.info.n_traces:,} traces, "
                f"{self.info.n_tokens:,} tokens>")

    @property
    def special_ids(self) -> list[int]:
        return sorted(int(i) for i in self.info.special_ids)

    def traces(self, sort_by="max_js", descending=True, limit=100, **kw) -> pd.DataFrame:
        """The trace browser's table (core.queries.trace_list: trace_id, prompt, correct,
        length, sampled_from, max_js, mean_js, n_high, ...), most divergent first."""
        return api.trace_list(self.con, self.name, sort_by=sort_by, descending=descending,
                              limit=limit, **kw)

    def trace(self, trace_id: int) -> Trace:
        """One trace of this run; refused when the run has no trace of that id."""
        try:
            tid = int(trace_id)
        except (TypeError, ValueError):
            raise RunsError(f"a trace id is an integer, not {str(trace_id)[:40]!r}") from None
        toks = api.trace_tokens(self.con, self.name, tid)
        if toks.empty:
            n = api.trace_count(self.con, self.name)
            raise RunsError(f"run {self.name!r} has no trace {tid} ({n:,} traces; "
                            f"run.traces() lists them)")
        return Trace(self, tid, toks)

    def overview(self, sampled_from=None, contrast_with="default") -> list:
        """Every figure that applies to the run, as the overview page builds them
        (core.figures.overview: FigureSpec with .figure, .caption, .data), on the run's
        series and, by default, its first contrast partner."""
        partner = self.contrast_with if contrast_with == "default" else contrast_with
        key = (sampled_from, partner)
        if key not in self._overviews:
            self._overviews[key] = overview(self.con, self.name, series=self.series or None,
                                            contrast_with=partner, sampled_from=sampled_from)
        return self._overviews[key]

    def figure(self, figure_id: str, **kw):
        """The overview's figure `figure_id` (one of core.figures.FIGURE_IDS) as a Plotly
        go.Figure; keywords as for overview()."""
        if figure_id not in FIGURE_IDS:
            raise RunsError(f"unknown figure {str(figure_id)[:40]!r}; one of: "
                            + ", ".join(FIGURE_IDS))
        specs = {s.id: s for s in self.overview(**kw)}
        if figure_id not in specs:
            raise RunsError(f"figure {figure_id!r} does not apply to run {self.name!r}; "
                            f"it has: {', '.join(specs)}")
        return specs[figure_id].figure


class Trace:
    """One trace: `tokens` (core.queries.trace_tokens: one row per token, every metric and
    both models' top-k); show() draws it as the app's trace view."""

    def __init__(self, run: Run, trace_id: int, tokens: pd.DataFrame):
        self.run, self.trace_id, self.tokens = run, trace_id, tokens

    def __repr__(self) -> str:
        return f"<shiftlens.Trace {self.trace_id} of {self.run.name!r}: {len(self.tokens)} tokens>"

    def payload(self, metric="js", threshold=None, fold=False, pos=None,
                lanes=False) -> dict:
        """The trace component's data (core.figures.trace.trace_payload) with the top-k panel,
        and with `lanes` both models' probability and rank of each token under it (the
        Traces page's "Probability lanes")."""
        if pos is not None and not (isinstance(pos, int) and 0 <= pos < len(self.tokens)):
            raise RunsError(f"pos must be a token position 0..{len(self.tokens) - 1}, "
                            f"not {str(pos)[:40]!r}")
        return trace_payload(self.tokens, metric, threshold, collapse=fold,
                             special_ids=self.run.special_ids, selected=pos, with_topk=True,
                             with_lanes=bool(lanes))

    def show(self, metric="js", threshold=None, fold=False, pos=None, lanes=False):
        """The trace view widget (anywidget): divergence strip, tokens highlighted by `metric`
        from `threshold` up (default: the app's), calm spans folded when `fold`, the clicked
        token's top-k panel, and with `lanes` both models' probability and rank lanes under
        the tokens. Its `selected` holds the clicked position. (No keyboard walk: in a
        notebook j/k already move between cells.)"""
        data = self.payload(metric, threshold, fold, pos, lanes)
        try:
            from shiftlens.widget import TraceWidget
        except ImportError as e:
            raise ImportError(f"the trace widget needs anywidget (pip install "
                              f"anywidget==0.11.0): {e}") from None
        return TraceWidget(data=data, selected=data["selected"])

    def to_html(self, path=None, metric="js", threshold=None, fold=False, pos=None,
                lanes=False) -> str:
        """A self-contained HTML page of the trace view (the widget's own front end with its
        data, no kernel, no network); written to `path` when given. Returns the HTML."""
        from shiftlens.front import standalone_html

        page = standalone_html(self.payload(metric, threshold, fold, pos, lanes),
                               title=f"{self.run.name} · trace {self.trace_id}")
        if path is not None:
            Path(path).write_text(page, encoding="utf-8")
        return page

