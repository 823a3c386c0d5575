"""Reading stored cross-samples back for display: filter them, and give each token of a
mixed trace its text and its source model."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from core.engine.detok import detokenizer_for
from core.errors import RunsError
from core.store.cross import SAMPLES_FILE
from core.store.manifest import Manifest

PRIMARY = {"forward": "base", "reverse": "tuned", "base": "base", "tuned": "tuned"}
OTHER = {"base": "tuned", "tuned": "base"}


def list_samples(run_dir: str | Path, direction: str | None = None, eps: float | None = None,
                 control: bool | None = None, limit: int = 500) -> pd.DataFrame:
    """Stored cross-samples of a run (parameterised DuckDB query over cross_samples.parquet):
    prompt_id, sample_index, direction, eps, control, n_switched, n_tokens, budget, correct,
    answer, text, tokens, switched; most switches first."""
    path = Path(run_dir) / SAMPLES_FILE
    if not path.exists():
        return pd.DataFrame()
    conds, params = ["TRUE"], {"lim": limit, "path": str(path)}
    for cond, name, val in [("direction = $dir", "dir", direction), ("eps = $eps", "eps", eps),
                            ("control = $ctl", "ctl", control)]:
        if val is not None:
            conds.append(cond)
            params[name] = val
    sql = f"""SELECT prompt_id, sample_index, direction, eps, control, n_switched, n_tokens,
        budget, correct, answer, text, tokens, switched FROM read_parquet($path)
        WHERE {' AND '.join(conds)} ORDER BY n_switched DESC, prompt_id, sample_index
        LIMIT $lim"""
    with duckdb.connect() as con:
        return con.execute(sql, params).df()


def sample_tokens(tokenizer, row: pd.Series) -> pd.DataFrame:
    """One row per token of a stored sample (`row`: a list_samples row; its direction,
    tokens and switched are read): pos, token_id, token (text), source (the model that
    produced it: the primary, or the intervention model at switched positions)."""
    ids = [int(t) for t in row["tokens"]]
    switched = {int(p) for p in row["switched"]}
    primary = PRIMARY[row["direction"]]
    return pd.DataFrame({
        "pos": range(len(ids)), "token_id": ids,
        "token": detokenizer_for(tokenizer).response(ids),
        "source": [OTHER[primary] if i in switched else primary for i in range(len(ids))],
    })


def tokenizer_of_run(run_dir: str | Path):
    m = Manifest.load(run_dir)
    if m is None:
        raise RunsError(f"{run_dir}: no complete run")
    return m.load_tokenizer()
