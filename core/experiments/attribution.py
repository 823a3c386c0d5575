"""Component attribution: which attention or MLP block closes the gap between the two
models of a run's pair at each token of a trace.

For every component c (core.engine.patching: embed, each layer's attn and mlp, readout),
teacher-forced on the trace (one forward per component covers every position):
  direction "base<-tuned": the base model with c's output taken from the tuned model;
      share = 1 - js(patched, tuned) / js(base, tuned)
  direction "tuned<-base": the tuned model with c's output taken from the base model;
      share = 1 - js(patched, base) / js(base, tuned)
Share 1 means that component alone closes the token's js, 0 that it does nothing,
negative that it widens the gap; NaN where the token's js is below MIN_JS (no gap to
close). Beside each component its relative weight change |dW| / |W|.

`attribute` stores its rows in the run (core.store.extras table "attribution");
`attribution_table` makes the layer x component table of one token or the mean over the
tokens with js >= `high` (mean of per-token shares).

Does not: draw (core.figures.layers); cost grows as 2 + 2 x (2L + 2) forwards per trace.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core.engine.lens import js_rows, residuals
from core.engine.patching import (
    component_outputs,
    components,
    patched_residual,
    reader,
    weight_change,
)
from core.errors import RunsError
from core.experiments.run_trace import chat_template, load_trace, pair_for
from core.store import extras

MIN_JS = 1e-6
DIRECTIONS = ("base<-tuned", "tuned<-base")


def attribute(run_dir: str | Path, trace_id: int, *, pair=None, device: str | None = None,
              save: bool = True) -> pd.DataFrame:
    """Rows per (pos, component, direction) of trace `trace_id`: trace_id, pos, layer,
    component (embed, attn, mlp, readout), label, direction, js (base vs tuned), js_patched
    (patched vs the donor), share, weight_change."""
    tr = load_trace(run_dir, trace_id)
    pair = pair_for(run_dir, pair, device)
    tr.encode(pair.tokenizer, chat_template(run_dir))
    pos = [p for p in range(len(tr.response_ids)) if tr.row(p) >= 0]
    if not pos:
        raise RunsError(f"trace {trace_id}: no response token to attribute")
    rows, ids = [tr.row(p) for p in pos], tr.ids
    base, tuned = pair.base.model, pair.tuned.model
    hb, ht = residuals(base, ids, rows)[-1], residuals(tuned, ids, rows)[-1]
    js = js_rows(base, hb, tuned, ht)
    dw = weight_change(base, tuned)
    out = []
    for direction, rec, don, target in (("base<-tuned", base, tuned, ht),
                                        ("tuned<-base", tuned, base, hb)):
        cache = component_outputs(don, ids)
        for c in components(rec):
            h = patched_residual(rec, cache, ids, rows, [c])
            jp = js_rows(reader(rec, don, [c]), h, don, target)
            with np.errstate(divide="ignore", invalid="ignore"):
                share = np.where(js >= MIN_JS, 1.0 - jp / js, np.nan)
            out.append(pd.DataFrame({
                "trace_id": tr.trace_id, "pos": pos, "layer": c.layer, "component": c.kind,
                "label": c.label, "direction": direction, "js": js, "js_patched": jp,
                "share": share, "weight_change": dw[c]}))
        del cache
    df = pd.concat(out, ignore_index=True)
    if save:
        extras.write_table(run_dir, "attribution", df)
    return df


def read_attribution(run_dir: str | Path, trace_id: int | None = None) -> pd.DataFrame:
    """Stored attribution rows (of one trace when `trace_id`)."""
    return extras.read_table(run_dir, "attribution", trace_id)


def attribution_table(df: pd.DataFrame, *, pos: int | None = None, high: float = 0.1,
                      direction: str = "base<-tuned") -> pd.DataFrame:
    """Layer x component table from `attribute` rows of one direction: at response token
    `pos` (of the rows' single trace), else the mean over tokens with js >= `high`.
    Columns: layer, component, label, share (mean), n (tokens), weight_change."""
    if direction not in DIRECTIONS:
        raise RunsError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
    d = df[df.direction == direction]
    if pos is not None:
        if d.trace_id.nunique() > 1:
            raise RunsError("a token's table needs the rows of one trace")
        d = d[d.pos == int(pos)]
        if d.empty:
            raise RunsError(f"no attribution rows at position {pos}")
    else:
        d = d[d.js >= high]
    cols = ["layer", "component", "label", "share", "n", "weight_change"]
    if d.empty:
        return pd.DataFrame(columns=cols)
    g = d.groupby(["layer", "component", "label"], sort=True)
    out = g.agg(share=("share", "mean"), n=("share", "count"),
                weight_change=("weight_change", "first")).reset_index()
    return out[cols]
