"""The trace view's data and front-end files, shared by the Streamlit app and the notebook widget.

`assets()` is the component's JavaScript and CSS (trace_view.js/.css beside this file): the
app's custom component (app/ui/trace_view.py) and the notebook widget (shiftlens.widget)
load these same two files. `payload(...)` is the one dict the JavaScript draws (tokens,
colours per theme, strengths, titles, folds, the selected position, optional top-k rows,
lanes, a parting mark and keyboard use); `trace_payload(toks, metric, ...)` builds it from a
`core.queries.trace_tokens` table the way the trace browser highlights a trace
(core.figures.colours); `metric_choices(toks)` lists the registered metrics a trace can be
highlighted by; `lanes(toks)` is both models' probability and rank of each emitted token,
the two lanes drawn under the text. Pure data: no UI toolkit, no rendering, no I/O beyond
reading the two asset files.
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

from core.errors import InputError
from core.figures.colours import METRICS, colour_tokens, folds, text_colours
from core.metrics import METRICS as REGISTRY

HERE = Path(__file__).parent
METRIC_COLUMNS = (*REGISTRY, "rel_pos")  # every registered metric, then the position
DEFAULT_THRESHOLD = {"diverging": 0.5, "sequential": 0.01,  # a faint highlight floor
                     "descending": 0.1, "categorical": 2.0, "flag": 0.5}


@cache
def assets() -> tuple[str, str]:
    """(JavaScript, CSS) of the trace component. The JavaScript ends with
    `export default draw;` (draw(component) with component = {data, parentElement,
    setTriggerValue}), the custom components v2 contract."""
    return ((HERE / "trace_view.js").read_text(encoding="utf-8"),
            (HERE / "trace_view.css").read_text(encoding="utf-8"))


def payload(tokens: list[str], colours: list[str], strength: list[float], titles: list[str],
            special: list[bool], selected: int | None, folds: list[tuple[int, int]],
            scroll: bool = True, dark_colours: list[str] | None = None,
            topk: list | None = None, lanes: dict | None = None,
            part: int | None = None, keys: bool = False) -> dict:
    """The data trace_view.js draws. `colours`: css colours on a light page; `dark_colours`
    the same highlights on a dark one (default: `colours`); the text colour of each token is
    chosen per theme for contrast. `topk` (see topk_rows): per position the row of the
    click-for-top-k panel the JavaScript draws; None leaves the panel to the host. `lanes`
    (see lanes()): both models' probability and rank lanes under each token. `part`: a
    position marked as where this trace parts from another. `keys`: this view answers the
    keyboard (j/k, n/p, Enter; one view per page)."""
    dark = colours if dark_colours is None else dark_colours
    out = {"tokens": tokens, "colours": colours, "strength": strength, "titles": titles,
           "text": text_colours(colours, "light"), "colours_dark": dark,
           "text_dark": text_colours(dark, "dark"),
           "special": special, "selected": -1 if selected is None else int(selected),
           "folds": [list(f) for f in folds], "scroll": scroll}
    if topk is not None:
        out["topk"] = topk
    if lanes is not None:
        out["lanes"] = lanes
    if part is not None:
        out["part"] = int(part)
    if keys:
        out["keys"] = True
    return out


LANES = ("base", "tuned")  # top lane first


def lanes(toks) -> dict:
    """Both models' lanes of a `core.queries.trace_tokens` table: {"base": {"prob": [...],
    "rank": [...]}, "tuned": {...}}, per token the probability the model gave the emitted
    token (exp of the stored logp_base / logp_tuned) and its stored rank (rank_base /
    rank_tuned, 1 = the model's most likely token). A value the run did not store is None."""
    out = {}
    for who in LANES:
        logp, rank = toks[f"logp_{who}"].tolist(), toks[f"rank_{who}"].tolist()
        out[who] = {"prob": [math.exp(v) if _finite(v) else None for v in logp],
                    "rank": [int(r) if _finite(r) else None for r in rank]}
    return out


def _finite(v) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def default_threshold(metric: str) -> float:
    """The highlight floor the trace browser starts a metric at."""
    return DEFAULT_THRESHOLD[METRICS[metric][1]]


def metric_choices(toks) -> list[str]:
    """The metrics a trace can be highlighted by: every registered metric (core.metrics, in
    its order) of which `toks` (a core.queries.trace_tokens table) holds values; a run
    written before a metric existed lacks its column, or has only NULLs in it."""
    return [m for m in METRICS if m in toks and not toks[m].isna().all()]


def titles_of(toks, metric: str) -> list[str]:
    """Each token's hover title: position, the metric's value, the base model's rank."""
    return [f"pos {i} · {metric} {v:.4g} · rank_base {rb}" for i, (v, rb) in
            enumerate(zip(toks[metric].tolist(), toks["rank_base"].tolist()))]


def _num(v) -> str:
    try:
        return f"{float(v):.4g}"
    except (TypeError, ValueError):
        return str(v)


def _side(ids, tokens, probs, token_id) -> list:
    return [[repr(str(t)), round(float(p), 4), int(i) == token_id]  # the panel shows 3 digits
            for i, t, p in zip(ids, tokens, probs)]


def topk_rows(toks) -> list | None:
    """Per position, what the top-k panel shows: {"token": repr of the trace's token, "base"
    and "tuned": [[repr of token, prob to 4 decimals, is the trace's token], ...] best
    first, "metrics": [[name, formatted value], ...]}; None for a position without stored
    lists. None when the run stored no top-k at all."""
    if "base_ids" not in toks or toks["base_ids"].isna().all():
        return None
    col = {c: toks[c].tolist() for c in ("token", "token_id", "base_ids", "base_tokens",
                                         "base_probs", "tuned_ids", "tuned_tokens",
                                         "tuned_probs")}
    metrics = [(k, [_num(v) for v in toks[k].tolist()]) for k in METRIC_COLUMNS if k in toks]
    rows = []
    for i, tid in enumerate(col["token_id"]):
        if col["base_ids"][i] is None:
            rows.append(None)
            continue
        tid = int(tid)
        rows.append({"token": repr(str(col["token"][i])),
                     "base": _side(col["base_ids"][i], col["base_tokens"][i],
                                   col["base_probs"][i], tid),
                     "tuned": _side(col["tuned_ids"][i], col["tuned_tokens"][i],
                                    col["tuned_probs"][i], tid),
                     "metrics": [[k, values[i]] for k, values in metrics]})
    return rows


def open_folds(strength, pos: int | None) -> list[tuple[int, int]]:
    """The calm spans to fold: every one but the span holding the selected token (a token
    clicked inside an expanded fold stays visible on the rerun its click causes)."""
    return [(a, b) for a, b in folds(strength) if pos is None or not a <= pos < b]


def trace_payload(toks, metric: str = "js", threshold: float | None = None, *,
                  collapse: bool = False, special_ids=(), selected: int | None = None,
                  with_topk: bool = False, scroll: bool = True, with_lanes: bool = False,
                  part: int | None = None, keys: bool = False) -> dict:
    """payload() for one trace highlighted as the trace browser does it: `toks` a
    core.queries.trace_tokens table, tokens coloured by `metric` from `threshold` up (default:
    default_threshold), calm spans folded when `collapse`, `special_ids` (token ids) drawn as
    special tokens; `with_topk` adds the top-k panel's rows, `with_lanes` the probability and
    rank lanes (lanes()); `part` and `keys` as payload()."""
    if metric not in METRICS:
        raise InputError(f"unknown metric {metric!r}; one of: {', '.join(METRICS)}")
    threshold = default_threshold(metric) if threshold is None else float(threshold)
    values = toks[metric].tolist()
    colours, strength = colour_tokens(values, metric, threshold)
    dark = colour_tokens(values, metric, threshold, theme="dark")[0]
    special = {int(i) for i in special_ids}
    return payload(toks["token"].tolist(), colours, strength, titles_of(toks, metric),
                   [int(t) in special for t in toks["token_id"]], selected,
                   open_folds(strength, selected) if collapse else [], scroll=scroll,
                   dark_colours=dark,
                   topk=topk_rows(toks) if with_topk else None,
                   lanes=lanes(toks) if with_lanes else None, part=part, keys=keys)
