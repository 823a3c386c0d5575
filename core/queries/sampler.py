"""Which traces an analysis uses: the one definition of the `sampled_from` parameter.

    tuned   the traces the tuned model sampled (the paper's setting: it measures on the tuned
            model's own trajectories)
    base    the traces the base model sampled
    pooled  every trace of the run, whichever model sampled it
    split   one result per sampler, side by side (a `sampled_from` column or facet)

None (the default of every analysis) is resolved per run: "tuned" when the run has
tuned-sampled traces, else "base" when it has only base-sampled ones, else "pooled" (e.g. a
rollout file with other or unknown labels). An explicit value is used as given, also on a run
that lacks such traces (its result is then empty, not silently another set). Captions name
the resolved choice (`describe`). This module validates, resolves and describes; it builds no
analysis and imports no core.queries module but sql.py and order_index.py.

In a run that re-scored another run's traces (a checkpoint series), "tuned" selects the traces
the series' tuned model sampled, labelled "reused" there (core.store.samplers), so each
checkpoint of the evolution is measured on the same traces as the final run.
"""

from __future__ import annotations

from core.queries import order_index
from core.queries.sql import _q

SAMPLED_FROM = ("tuned", "base", "pooled", "split")
TUNED, BASE, POOLED, SPLIT = SAMPLED_FROM
SOURCES = (TUNED, BASE)  # the two samplers a sampled run can have, the paper's first
# the labels a choice selects, first present wins: its own, else the same sampler's traces
# reused from another run (core.store.samplers: REUSED, REUSED_BASE)
ALIASES = {TUNED: (TUNED, "reused"), BASE: (BASE, "reused-base")}


def check(sampled_from) -> str | None:
    """None (the default: resolved per run) or one of SAMPLED_FROM; else a ValueError."""
    if sampled_from is None or sampled_from in SAMPLED_FROM:
        return sampled_from
    raise ValueError(f"sampled_from must be one of {SAMPLED_FROM} (or None for the default: "
                     f"tuned when a run has tuned-sampled traces), got {sampled_from!r}")


def trace_counts(con, runs=None) -> dict[str, dict]:
    """Per opened run (open order; a run without traces maps to {}): {label: traces} of its
    traces' sampled_from labels (None for a missing label), tuned first, then base, then the
    others sorted."""
    def build():
        df = _q(con, """SELECT r.run, tr.sampled_from, count(tr.run) AS n FROM runs r
            LEFT JOIN traces tr USING (run) GROUP BY ALL ORDER BY min(r.idx)""", {})
        out: dict[str, dict] = {}
        for run, label, n in zip(df["run"], df["sampled_from"], df["n"], strict=True):
            got = out.setdefault(str(run), {})
            if n:
                got[None if label is None or label != label else str(label)] = int(n)
        return {r: dict(sorted(c.items(), key=lambda kv: label_rank(kv[0])))
                for r, c in out.items()}

    # materialised connections cache it (their runs do not change); lazy ones read traces
    counts = (order_index.get(con, ("sampler_counts",), build) if order_index.enabled(con)
              else build())
    if runs is None:
        return dict(counts)
    return {str(r): counts.get(str(r), {}) for r in runs}


def label_rank(label) -> tuple:
    """Sort key of sampled_from labels: tuned (and its reused form) first, then base, then
    any other label by name."""
    rank = {lab: i for i, lab in enumerate(ALIASES[TUNED] + ALIASES[BASE])}
    return (rank[label], "") if label in rank else (len(rank), str(label))


def label_for(labels, choice: str) -> str | None:
    """The traces' label that `choice` (tuned or base) keeps in a run with these labels, or
    None when the run has no such traces."""
    return next((a for a in ALIASES[choice] if a in labels), None)


def default_for(labels) -> str:
    """The default choice for a run whose traces carry these sampled_from labels."""
    labels = set(labels)
    if label_for(labels, TUNED):
        return TUNED
    if labels and labels <= set(ALIASES[BASE]):
        return BASE
    return POOLED


def resolve(con, runs=None, sampled_from=None) -> dict[str, str]:
    """Per run (the given ones, else every opened run): the choice an analysis uses."""
    check(sampled_from)
    counts = trace_counts(con, runs)
    return {r: sampled_from or default_for(c) for r, c in counts.items()}


def labels_kept(con, runs=None, sampled_from=None) -> dict:
    """Per run: the sampled_from label an analysis keeps (None: every trace, pooled or
    split); a choice the run has no traces for keeps its own name, so no rows."""
    counts = trace_counts(con, runs)
    return {r: (label_for(counts[r], c) or c) if c in SOURCES else None
            for r, c in resolve(con, runs, sampled_from).items()}


def row_filter(labels: dict):
    """sql._filtered's `sampled_from` for per-run labels (labels_kept): None (no filter),
    one label for every run, or {run: label or None}."""
    values = set(labels.values())
    if len(values) <= 1:
        return next(iter(values), None)
    return labels


def apply(con, runs, sampled_from, by=None):
    """(row filter for sql._filtered, by) of an analysis call: the default resolved per run;
    "split" groups by sampled_from (it cannot be combined with by="run"); by="sampled_from"
    with the default is "split", as it always was."""
    check(sampled_from)
    if sampled_from is None and by == "sampled_from":
        sampled_from = SPLIT
    if sampled_from == SPLIT:
        if by == "run":
            raise ValueError("sampled_from='split' groups by sampled_from; with by='run' "
                             "choose tuned, base or pooled")
        return None, "sampled_from"
    return row_filter(labels_kept(con, runs, sampled_from)), by


def _traces(n: int, label, source=None) -> str:
    traces = f"{n:,} trace{'s' if n != 1 else ''}"
    if label in (ALIASES[TUNED][1], ALIASES[BASE][1]):
        model = "tuned" if label == ALIASES[TUNED][1] else "base"
        return f"{traces} reused from {source or 'another run'} (its {model} model's samples)"
    return f"{n:,} {'unlabelled' if label is None else f'{label}-sampled'} " + traces.split()[1]


def _used(counts: dict, choice: str, source=None) -> str:
    """One run's traces under `choice`, in words, with the preposition."""
    if choice in SOURCES:
        label = label_for(counts, choice)
        return (f"on {_traces(counts[label], label, source)}" if label
                else f"on no {choice}-sampled traces (the run has none)")
    if not counts:
        return "on no traces"
    parts = [_traces(n, lab, source) for lab, n in counts.items()]
    if choice == SPLIT:
        return "on " + " and ".join(parts) + (", side by side" if len(parts) > 1 else "")
    if len(parts) == 1:
        return "on " + parts[0]
    each = [f"{n:,} {'unlabelled' if lab is None else lab}-" for lab, n in counts.items()]
    return "pooled over " + ", ".join(each[:-1]) + f" and {each[-1]}sampled traces"


def describe(con, runs, sampled_from=None) -> str:
    """Which traces an analysis of `runs` with this `sampled_from` used, for a caption:
    'on 800 tuned-sampled traces', 'pooled over 800 tuned- and 800 base-sampled traces',
    'on 800 tuned-sampled traces and 800 base-sampled traces, side by side'; several runs:
    'demo-rl on 800 tuned-sampled traces; demo-sft on 16 tuned-sampled traces'."""
    runs = [str(r) for r in runs]
    counts = trace_counts(con, runs)
    choices = resolve(con, runs, sampled_from)
    src = dict(_q(con, "SELECT run, traces_from FROM runs", {}).itertuples(index=False))
    used = {r: _used(counts[r], choices[r], src.get(r)) for r in runs}
    if len(runs) == 1:
        return used[runs[0]]
    return "; ".join(f"{r} {u}" for r, u in used.items())


def choices(con, run) -> list[str]:
    """The sampled_from values that select something in `run`, default first: tuned / base
    where it has such traces, pooled, and split where it has more than one label."""
    counts = trace_counts(con, [run])[str(run)]
    out = [c for c in SOURCES if label_for(counts, c)] + [POOLED]
    out += [SPLIT] if len(counts) > 1 else []
    first = default_for(counts)
    return [first] + [c for c in out if c != first]


def browse_filter(con, runs, sampled_from):
    """sql._filtered's `sampled_from` for the trace and token browsers, whose default is
    every trace: None, pooled and split keep every trace; tuned and base keep what an
    analysis keeps; any other text is a sampled_from label as stored (e.g. a rollout's)."""
    if sampled_from in (None, POOLED, SPLIT):
        return None
    if sampled_from in SOURCES:
        return row_filter(labels_kept(con, runs, sampled_from))
    return str(sampled_from)
