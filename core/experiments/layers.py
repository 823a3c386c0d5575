"""The layer view: where inside the network two models of a run's pair part, at one token
and on average over a run's high-js tokens against its low-js ones.

`layer_view(run, trace, pos)`: one row per layer (0 = embedding, 1..L = after each decoder
layer; layer L is the models' output distribution) with the js between the two models'
logit lenses, each model's KL(final || lens) and js to its own final distribution, entropy
and top-1 token; stored in the run (core.store.extras table "lens").
`layer_profile(run, ...)`: the same columns' means per layer over the tokens of some traces
whose stored js is >= `high` against those with js < `low` (one forward per model and
trace covers every token). Not stored: it is a mean over the stored tokens' lenses.

Does not: draw (core.figures.layers), patch components (core.experiments.attribution).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core.engine.lens import compare
from core.errors import RunsError
from core.experiments.run_trace import (
    chat_template,
    check_pos,
    check_traces,
    load_trace,
    open_run,
    pair_for,
    trace_ids,
)
from core.store import extras

METRICS = ("js", "base_kl_final", "tuned_kl_final", "base_js_final", "tuned_js_final",
           "base_entropy", "tuned_entropy", "base_top1_prob", "tuned_top1_prob")


def _frame(cmp: dict) -> pd.DataFrame:
    """(L+1, P) arrays -> long rows: layer, col (P-major order: col varies slowest)."""
    n_layers, n_rows = cmp["js"].shape
    out = {"col": np.repeat(np.arange(n_rows), n_layers),
           "layer": np.tile(np.arange(n_layers), n_rows)}
    for k, v in cmp.items():
        out[k] = v.T.reshape(-1)
    return pd.DataFrame(out)


def layer_view(run_dir: str | Path, trace_id: int, pos: int, *, pair=None,
               device: str | None = None, save: bool = True) -> pd.DataFrame:
    """The logit lens of both models at response token `pos` of trace `trace_id`: one row
    per layer with trace_id, pos, layer, n_layers, METRICS, base_top1 / tuned_top1 (ids and
    _token text) and stored_js (the run's js at that token: equal to js at the last
    layer). Refuses (RunsError, PairError) before loading when the trace, the position or
    the architecture cannot be used."""
    tr = load_trace(run_dir, trace_id)
    pos = check_pos(tr, pos)
    pair = pair_for(run_dir, pair, device)
    tok = pair.tokenizer
    tr.encode(tok, chat_template(run_dir))
    if tr.row(pos) < 0:
        raise RunsError(f"trace {trace_id}: no context before position {pos}")
    df = _frame(compare(pair.base.model, pair.tuned.model, tr.ids, [tr.row(pos)])).drop(
        columns="col")
    for m in ("base", "tuned"):
        df[f"{m}_top1_token"] = [tok.decode([int(i)]) for i in df[f"{m}_top1"]]
    df.insert(0, "pos", pos)
    df.insert(0, "trace_id", tr.trace_id)
    df["n_layers"] = int(df.layer.max())
    df["stored_js"] = float(tr.js[pos])
    first = ["trace_id", "pos", "layer", "n_layers", "js", "stored_js"]
    df = df[first + [c for c in df.columns if c not in first]]
    if save:
        extras.write_table(run_dir, "lens", df)
    return df


def read_layer_view(run_dir: str | Path, trace_id: int | None = None) -> pd.DataFrame:
    """Stored layer views (of one trace when `trace_id`)."""
    return extras.read_table(run_dir, "lens", trace_id)


def layer_profile(run_dir: str | Path, traces: list[int] | None = None, *, high: float = 0.1,
                  low: float = 0.01, max_traces: int = 16, pair=None,
                  device: str | None = None) -> pd.DataFrame:
    """Per layer, the mean of METRICS over the tokens of `traces` (default: the run's first
    `max_traces`) with stored js >= `high` ("high") and < `low` ("low"): columns group,
    layer, n (tokens), METRICS. A group with no token has no rows."""
    if not 0 <= low <= high:
        raise RunsError(f"need 0 <= low <= high (got low={low}, high={high})")
    run_dir = Path(run_dir)
    open_run(run_dir)
    traces = (check_traces(run_dir, traces) if traces is not None
              else trace_ids(run_dir)[:max_traces])
    pair = pair_for(run_dir, pair, device)
    chat = chat_template(run_dir)
    parts = []
    for tid in traces:
        tr = load_trace(run_dir, tid).encode(pair.tokenizer, chat)
        cls = np.where(tr.js >= high, "high", np.where(tr.js < low, "low", ""))
        keep = [p for p in range(len(tr.response_ids)) if cls[p] and tr.row(p) >= 0]
        if not keep:
            continue
        d = _frame(compare(pair.base.model, pair.tuned.model, tr.ids,
                           [tr.row(p) for p in keep]))
        d["group"] = cls[np.asarray(keep)][d.col.to_numpy()]
        parts.append(d)
    cols = ["group", "layer", "n", *METRICS]
    if not parts:
        return pd.DataFrame(columns=cols)
    d = pd.concat(parts, ignore_index=True)
    g = d.groupby(["group", "layer"], sort=True)
    out = g[list(METRICS)].mean()
    out.insert(0, "n", g.size())
    return out.reset_index()[cols]
