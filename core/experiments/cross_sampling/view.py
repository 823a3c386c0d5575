"""Reading stored cross-samples back for display: filter them, and give each token of a
mixed trace its text and its source model."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from core.engine.detok import detokenizer_for
from core.store.cache import open_run
from core.store.cross import get_sweep

PRIMARY = {"forward": "base", "reverse": "tuned", "base": "base", "tuned": "tuned"}
OTHER = {"base": "tuned", "tuned": "base"}


def list_samples(run_dir: str | Path, direction: str | None = None, eps: float | None = None,
                 control: bool | str | None = None, limit: int = 500,
                 sweep: str | None = None) -> pd.DataFrame:
    """Stored cross-samples of sweep `sweep` of a run (default: the newest; parameterised
    DuckDB query over its samples.parquet): prompt_id, sample_index, direction, eps,
    control, control_kind, n_switched, n_changed, n_tokens, budget, budget_changed, correct,
    answer, text, tokens, switched, changed; most switches first. `control`: a control kind
    ('random', 'entropy'), True (any control), False or '' (no control) or None (all).
    A legacy sweep has no changed tokens (n_changed, changed null)."""
    info = get_sweep(run_dir, sweep)
    if info is None or not info.samples.is_file():
        return pd.DataFrame()
    path = info.samples
    with duckdb.connect() as con:
        have = {r[0] for r in con.execute("SELECT name FROM parquet_schema($p)",
                                          {"p": str(path)}).fetchall()}
    kind = "control_kind" if "control_kind" in have else \
        "CASE WHEN control THEN 'random' ELSE '' END"
    newer = {c: c if c in have else "NULL" for c in ("n_changed", "budget_changed", "changed")}
    conds, params = ["TRUE"], {"lim": limit, "path": str(path)}
    if isinstance(control, str):
        conds.append(f"{kind} = $kind")
        params["kind"] = control
    elif control is not None:
        conds.append("control = $ctl")
        params["ctl"] = bool(control)
    for cond, name, val in [("direction = $dir", "dir", direction), ("eps = $eps", "eps", eps)]:
        if val is not None:
            conds.append(cond)
            params[name] = val
    sql = f"""SELECT prompt_id, sample_index, direction, eps, control,
        {kind} AS control_kind, n_switched, {newer['n_changed']} AS n_changed, n_tokens,
        budget, {newer['budget_changed']} AS budget_changed, correct, answer, text, tokens,
        switched, {newer['changed']} AS changed FROM read_parquet($path)
        WHERE {' AND '.join(conds)} ORDER BY n_switched DESC, prompt_id, sample_index
        LIMIT $lim"""
    with duckdb.connect() as con:
        return con.execute(sql, params).df()


def sample_tokens(tokenizer, row: pd.Series) -> pd.DataFrame:
    """One row per token of a stored sample (`row`: a list_samples row; its direction,
    tokens, switched and changed are read): pos, token_id, token (text), source (the model
    that produced it: the primary, or the intervention model at switched positions),
    changed (the switch changed the token: the primary would have drawn another; null for a
    legacy sweep)."""
    ids = [int(t) for t in row["tokens"]]
    switched = {int(p) for p in row["switched"]}
    raw = row.get("changed")
    changed = None if raw is None or (isinstance(raw, float) and pd.isna(raw)) \
        else {int(p) for p in raw}
    primary = PRIMARY[row["direction"]]
    return pd.DataFrame({
        "pos": range(len(ids)), "token_id": ids,
        "token": detokenizer_for(tokenizer).response(ids),
        "source": [OTHER[primary] if i in switched else primary for i in range(len(ids))],
        "changed": [None if changed is None else i in changed for i in range(len(ids))],
    })


def tokenizer_of_run(run_dir: str | Path):
    return open_run(Path(run_dir).parent, run_dir).load_tokenizer()
