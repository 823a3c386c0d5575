"""The fork explorer: at one token of a trace, continue with the base model's top-1 and with
the tuned model's top-1, K rollouts each, verify, and compare the two branches.

Results are appended to `forks.parquet` in the run folder (atomically), one row per
rollout, so every fork is on disk and queryable like the other tables.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from core import verifiers
from core.engine.pair import Pair
from core.engine.sampling import encode_prompts, sample
from core.store.cache import writing_into
from core.store.manifest import read_manifest
from core.store.schema import FORKS_FILE, FORKS_SCHEMA
from core.store.storage import write_parquet


def top1_pair(pair: Pair, ids: list[int]) -> tuple[int, int]:
    """(base argmax, tuned argmax) of the next token after `ids`."""
    with torch.no_grad():
        out = []
        for m in (pair.base.model, pair.tuned.model):
            dev = next(m.parameters()).device
            logits = m(input_ids=torch.tensor([ids], device=dev), logits_to_keep=1).logits
            out.append(int(logits[0, -1].argmax()))  # only the last position's logits
    return out[0], out[1]


def fork(pair: Pair, prompt: str, response_ids: list[int], pos: int, reference: str, *,
         verifier: str = "exact", continue_with: str = "tuned", k: int = 8,
         temperature: float = 1.0, top_p: float = 1.0, max_new_tokens: int = 128,
         seed: int = 0, chat_template: bool = True) -> pd.DataFrame:
    """Rollouts from `response_ids[:pos]` + each model's top-1 at `pos`, continued by the
    `continue_with` model ("base" or "tuned"). One row per rollout, with the FORKS_SCHEMA
    columns less fork_id, trace_id and pos (save_fork adds them): branch, branch_token_id,
    continued_by, rollout, text, answer, correct, temperature, top_p, seed, created."""
    if continue_with not in ("base", "tuned"):
        raise ValueError("continue_with must be 'base' or 'tuned'")
    if not 0 <= pos <= len(response_ids):
        raise ValueError(f"pos {pos} is outside the response (0..{len(response_ids)})")
    tok = pair.tokenizer
    prompt_ids = encode_prompts(tok, [prompt], chat_template)[0]
    prefix = prompt_ids + list(response_ids[:pos])
    b1, t1 = top1_pair(pair, prefix)
    model = (pair.tuned if continue_with == "tuned" else pair.base).model
    check = verifiers.get(verifier)
    rows = []
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    for branch, first in (("base top-1", b1), ("tuned top-1", t1)):
        head = list(response_ids[:pos]) + [first]
        if first == tok.eos_token_id:  # the branch ends here: one deterministic "rollout"
            conts = [[]] * k
        else:
            got = sample(model, tok, [prefix + [first]], n=k, temperature=temperature,
                         top_p=top_p, max_new_tokens=max_new_tokens, seed=seed)
            conts = [s.response_ids for s in got]
        for r, cont in enumerate(conts):
            text = tok.decode(head + cont, skip_special_tokens=True)
            answer, ok = check(text, reference)
            rows.append({"branch": branch, "branch_token_id": first,
                         "continued_by": continue_with, "rollout": r, "text": text,
                         "answer": answer, "correct": ok, "temperature": temperature,
                         "top_p": top_p, "seed": seed, "created": stamp})
    return pd.DataFrame(rows)


def save_fork(run_dir: str | Path, trace_id: int, pos: int, rollouts: pd.DataFrame) -> str:
    """Append a fork's rollouts (the DataFrame `fork` returns) to the run's forks.parquet
    (atomic); returns its fork_id. Holds the run's lock, shared, meanwhile: refused
    (RunsError) while the run is renamed, deleted or recomputed, and those are refused
    while it writes."""
    run_dir = Path(run_dir)
    path = run_dir / FORKS_FILE
    with writing_into(run_dir):
        old = pq.read_table(path).to_pandas() if path.exists() else None
        n = 0 if old is None else old["fork_id"].nunique()
        fork_id = f"fork-{n:05d}"
        new = rollouts.assign(fork_id=fork_id, trace_id=trace_id, pos=pos)
        both = new if old is None else pd.concat([old, new], ignore_index=True)
        table = pa.Table.from_pandas(both[FORKS_SCHEMA.names], schema=FORKS_SCHEMA,
                                     preserve_index=False)
        write_parquet(table, path, metadata=read_manifest(run_dir))
    return fork_id
