"""The fork explorer: at one token of a trace, continue with two chosen next tokens (by
default the base model's top-1 and the tuned model's top-1), K rollouts each, verify, and
compare the two branches.

When both models' top-1 is the same token the two default branches are one branch twice
(with one seed, identical rollouts): `branch_options` says so and proposes the most likely
token of either model's top-k that differs. Any token of either top-k can be forced.

Results are appended to `forks.parquet` in the run folder (atomically, under a lock so two
sessions forking at once lose nothing), one row per rollout, so every fork is on disk and
queryable like the other tables; `list_forks` and `load_fork` read them back.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from core.engine.pair import Pair
from core.engine.sampling import encode_prompts, sample
from core.inputs import verifiers
from core.inputs.text_limits import text_limits
from core.store.cache import one_writer, writing_into
from core.store.run import Run
from core.store.schema import FORKS_SCHEMA


def top1_pair(pair: Pair, ids: list[int]) -> tuple[int, int]:
    """(base argmax, tuned argmax) of the next token after `ids`."""
    (b1, _), (t1, _) = _top2(pair, ids)
    return b1, t1


def _top2(pair: Pair, ids: list[int]) -> list[tuple[int, int]]:
    """[(base top-1, base top-2), (tuned top-1, tuned top-2)] of the next token."""
    with torch.no_grad():
        out = []
        for m in (pair.base.model, pair.tuned.model):
            dev = next(m.parameters()).device
            logits = m(input_ids=torch.tensor([ids], device=dev), logits_to_keep=1).logits
            top = logits[0, -1].topk(2).indices.tolist()  # only the last position's logits
            out.append((int(top[0]), int(top[1])))
    return out


@dataclass(frozen=True)
class BranchOptions:
    """The tokens a fork at one position can branch on, from both models' stored top-k."""
    tokens: list[int]        # every token in either top-k, most likely (under either) first
    labels: dict[int, str]   # token -> "'x' · base #1 0.62 · tuned #2 0.21"
    base_top1: int
    tuned_top1: int
    default: tuple[int, int]  # (first branch, second branch)
    same_top1: bool           # both models' top-1 is one token: the defaults differ from it


def branch_options(base_ids, base_probs, tuned_ids, tuned_probs, text_of) -> BranchOptions:
    """Branch choices from the stored top-k lists at a position (`text_of(id)` shows a
    token). The default branches are the two top-1s; when they coincide the second default
    is the most likely token of either list that differs from it (tuned's list first)."""
    rank = {}
    for who, ids, probs in (("base", base_ids, base_probs), ("tuned", tuned_ids, tuned_probs)):
        for r, (i, pr) in enumerate(zip(ids, probs), start=1):
            rank.setdefault(int(i), {})[who] = (r, float(pr))
    order = sorted(rank, key=lambda i: -max(pr for _, pr in rank[i].values()))
    labels = {i: " · ".join([repr(text_of(i))] + [
        f"{who} #{rank[i][who][0]} {rank[i][who][1]:.2f}" for who in ("base", "tuned")
        if who in rank[i]]) for i in order}
    b1, t1 = int(base_ids[0]), int(tuned_ids[0])
    second = t1
    if b1 == t1:
        second = next((int(i) for i in (*tuned_ids, *base_ids) if int(i) != b1), b1)
    return BranchOptions(order, labels, b1, t1, (b1, second), b1 == t1)


def _branch_label(token: int, b1: int, t1: int, t2: int, text: str) -> str:
    if token == b1 == t1:
        return "both top-1"
    if token == b1:
        return "base top-1"
    if token == t1:
        return "tuned top-1"
    if token == t2 and b1 == t1:
        return "tuned top-2"
    return f"forced {text!r} (id {token})"


def fork(pair: Pair, prompt: str, response_ids: list[int], pos: int, reference: str, *,
         verifier: str = "exact", continue_with: str = "tuned", k: int = 8,
         temperature: float = 1.0, top_p: float = 1.0, max_new_tokens: int = 128,
         seed: int = 0, chat_template: bool = True,
         tokens: tuple[int, int] | None = None) -> pd.DataFrame:
    """Rollouts from `response_ids[:pos]` + each branch token at `pos`, continued by the
    `continue_with` model ("base" or "tuned"). The branch tokens are `tokens` (any two
    token ids, e.g. from `branch_options`), by default each model's top-1, or, when both
    models' top-1 is one token, that token and the tuned model's top-2. One row per
    rollout, with the FORKS_SCHEMA columns less fork_id, trace_id and pos (save_fork adds
    them): branch ("base top-1", "tuned top-1", "both top-1" or "forced 'x'"),
    branch_token_id, continued_by, rollout, text, answer, correct, temperature, top_p, seed,
    created."""
    if continue_with not in ("base", "tuned"):
        raise ValueError("continue_with must be 'base' or 'tuned'")
    if not 0 <= pos <= len(response_ids):
        raise ValueError(f"pos {pos} is outside the response (0..{len(response_ids)})")
    tok = pair.tokenizer
    if tokens is not None:
        vocab = len(tok)
        if len(tokens) != 2 or any(not 0 <= int(t) < vocab for t in tokens):
            raise ValueError(f"give two token ids in 0..{vocab - 1} to branch on")
        if int(tokens[0]) == int(tokens[1]):
            raise ValueError("the two branches must start with different tokens")
    # the chat template renders in a child process under the template limits (a server's
    # fork, like live scoring, must not hang on a hostile template)
    prompt_ids = encode_prompts(tok, [prompt], chat_template, limits=text_limits())[0]
    prefix = prompt_ids + list(response_ids[:pos])
    (b1, _), (t1, t2) = _top2(pair, prefix)
    if tokens is not None:
        firsts = [int(t) for t in tokens]
    else:  # the two top-1s; when they coincide, the tuned model's runner-up (see above)
        firsts = [b1, t1] if b1 != t1 else [b1, t2]
    model = (pair.tuned if continue_with == "tuned" else pair.base).model
    check = verifiers.get(verifier)
    rows = []
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    for first in firsts:
        branch = _branch_label(first, b1, t1, t2, tok.decode([first]))
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


def _run(run: str | Path | Run) -> Run:
    return run if isinstance(run, Run) else Run.open(run)


def save_fork(run: str | Path | Run, trace_id: int, pos: int, rollouts: pd.DataFrame) -> str:
    """Append a fork's rollouts (the DataFrame `fork` returns) to the run's forks.parquet
    (atomic); returns its fork_id. Holds the run's lock, shared, meanwhile: refused
    (RunsError) while the run is renamed, deleted or recomputed, and those are refused
    while it writes; two saves into one run take turns (the fork lock), so none is lost."""
    run_dir = _run(run).path
    with writing_into(run_dir), one_writer(run_dir, "forks", "fork"):  # one at a time
        run = Run.open(run_dir).require(tables=False)  # forks never read the run's tables
        path = run.forks_file
        old = pq.read_table(path).to_pandas() if path.exists() else None
        n = 0 if old is None else old["fork_id"].nunique()
        fork_id = f"fork-{n:05d}"
        new = rollouts.assign(fork_id=fork_id, trace_id=trace_id, pos=pos)
        both = new if old is None else pd.concat([old, new], ignore_index=True)
        table = pa.Table.from_pandas(both[FORKS_SCHEMA.names], schema=FORKS_SCHEMA,
                                     preserve_index=False)
        run.write_forks(table)
    return fork_id


def list_forks(run: str | Path | Run, trace_id: int | None = None) -> pd.DataFrame:
    """One row per saved fork of the run (of one trace if `trace_id`), newest first:
    fork_id, trace_id, pos, continued_by, rollouts (per branch), the two branches with
    their accuracy ("branches"), created. Empty when the run has no forks."""
    path = _run(run).forks_file
    cols = ["fork_id", "trace_id", "pos", "continued_by", "rollouts", "branches", "created"]
    if not path.exists():
        return pd.DataFrame(columns=cols)
    df = pq.read_table(path).to_pandas()
    if trace_id is not None:
        df = df[df.trace_id == int(trace_id)]
    out = []
    for fid, g in df.groupby("fork_id", sort=False):
        acc = g.groupby("branch", sort=False).correct.mean()
        out.append({"fork_id": fid, "trace_id": int(g.trace_id.iloc[0]),
                    "pos": int(g.pos.iloc[0]), "continued_by": g.continued_by.iloc[0],
                    "rollouts": int(g.groupby("branch").size().max()),
                    "branches": " vs ".join(f"{b} {100 * a:.0f}%" for b, a in acc.items()),
                    "created": g.created.iloc[0]})
    return pd.DataFrame(out, columns=cols).sort_values("fork_id", ascending=False,
                                                        ignore_index=True)


def load_fork(run: str | Path | Run, fork_id: str) -> pd.DataFrame:
    """A saved fork's rollouts (the rows `fork` returned, with fork_id, trace_id, pos)."""
    run = _run(run)
    path = run.forks_file
    df = pq.read_table(path).to_pandas() if path.exists() else pd.DataFrame()
    got = df[df.fork_id == fork_id] if len(df) else df
    if got.empty:
        raise KeyError(f"no fork {fork_id!r} in {run.name}")
    return got.reset_index(drop=True)
