"""The critical-token scan: which of a trace's divergent tokens decide its answer, and is
js (or entropy) a good predictor of that?

For each trace, positions are chosen three ways: its `top` highest-js tokens ("top"), and
as controls `top` positions drawn at random from the rest ("random") and the `top` of
highest entropy of the model that sampled the trace ("entropy"); a position may be in
several groups. At each, the prefix is continued with the base model's top-1 and with the
tuned model's top-1 (core.experiments.fork.fork: K rollouts per branch, both branches with
one seed, so they share random numbers), sampled by the model that sampled the trace (its
sampled_from) at the run's temperature, top-p and max_new_tokens, and verified with the
trace's verifier. effect = accuracy(tuned choice) - accuracy(base choice), with a 95%
Newcombe (Wilson score) interval. Where both top-1s are one token, the effect is 0 by
definition and no rollout is drawn (same_choice).

Seeds: position `pos` of trace `t` uses seed + 7919 * t + pos, so a scan is reproducible
and hand-countable (tests/test_critical.py recounts it). `criticality` then gives the
Spearman rank correlation of effect with js and with entropy over the scanned positions,
with a bootstrap interval over positions. Rollouts are stored in the run (table
"critical", core.store.extras).

`estimate` bounds the cost before a scan runs; `CriticalConfig` + core.jobs.queue
.submit_critical run it as a queue job (progress per trace, cancel, resume: a resumed job
reuses the traces already stored). `marks` is what the trace browser
lists under a scanned trace.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from core.errors import RunsError
from core.experiments.fork import fork, top1_pair
from core.experiments.run_trace import (
    chat_template,
    check_traces,
    load_trace,
    open_run,
    pair_for,
    trace_ids,
)
from core.store import extras

GROUPS = ("top", "random", "entropy")
MAX_ROLLOUTS = 1024


def position_seed(seed: int, trace_id: int, pos: int) -> int:
    return int(seed) + 7919 * int(trace_id) + int(pos)


def choose_positions(js: np.ndarray, entropy: np.ndarray, top: int, seed: int,
                     trace_id: int) -> dict[int, list[str]]:
    """{pos: groups} for one trace: the `top` highest-js positions (ties: earlier first),
    `top` drawn at random from the others, the `top` of highest entropy."""
    n = len(js)
    order = sorted(range(n), key=lambda p: (-float(js[p]), p))
    chosen = {p: ["top"] for p in order[:top]}
    rest = [p for p in range(n) if p not in chosen]
    rng = np.random.default_rng([int(seed), int(trace_id)])
    for p in rng.choice(rest, size=min(top, len(rest)), replace=False).tolist() if rest else []:
        chosen.setdefault(int(p), []).append("random")
    for p in sorted(range(n), key=lambda p: (-float(entropy[p]), p))[:top]:
        chosen.setdefault(p, []).append("entropy")
    return dict(sorted(chosen.items()))


def _check(run_dir: Path, traces, top, rollouts, max_traces) -> list[int]:
    """The traces to scan, after refusing (RunsError) bad settings; no model is loaded."""
    open_run(run_dir)
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise RunsError(f"--top must be a positive number of positions, not {top!r}")
    if isinstance(rollouts, bool) or not isinstance(rollouts, int) \
            or not 1 <= rollouts <= MAX_ROLLOUTS:
        raise RunsError(f"--rollouts must be 1..{MAX_ROLLOUTS}, not {rollouts!r}")
    if isinstance(max_traces, bool) or not isinstance(max_traces, int) or max_traces < 1:
        raise RunsError(f"--max-traces must be a positive number, not {max_traces!r}")
    return (check_traces(run_dir, traces) if traces is not None
            else trace_ids(run_dir)[:max_traces])


def estimate(run_dir: str | Path, traces: list[int] | None = None, *, top: int = 4,
             rollouts: int = 8, max_traces: int = 8) -> dict:
    """What a scan will cost at most, before it runs (reads only the run's tables): traces,
    positions (<= 3 x top per trace), rollouts (2 x `rollouts` per position where the two
    top-1s differ: at most all of them) and generated tokens (rollouts x max_new_tokens)."""
    run_dir = Path(run_dir)
    traces = _check(run_dir, traces, top, rollouts, max_traces)
    me = open_run(run_dir)
    lengths = pq.read_table([str(p) for p in me.table_files("traces")],
                            columns=["trace_id", "length"]).to_pandas()
    lengths = lengths.set_index("trace_id").length
    positions = int(sum(min(3 * top, int(lengths[t])) for t in traces))
    max_new = me.max_new_tokens
    return dict(traces=len(traces), positions=positions, rollouts=2 * rollouts * positions,
                tokens=2 * rollouts * positions * max_new)


SETTINGS = ("top", "rollouts", "base_seed", "temperature", "top_p", "max_new_tokens")


def scan(run_dir: str | Path, traces: list[int] | None = None, *, top: int = 4,
         rollouts: int = 8, seed: int = 0, max_traces: int = 8, pair=None,
         device: str | None = None, save: bool = True, resume: bool = False,
         progress=None) -> pd.DataFrame:
    """Rollout rows of the scan over `traces` (default: the run's first `max_traces`):
    trace_id, pos, groups ("top,entropy"), js, entropy, base_token_id, tuned_token_id,
    same_choice, continued_by, branch ("base top-1" / "tuned top-1"; null when same_choice),
    rollout, correct, seed, and the SETTINGS. Each trace's rows are stored as soon as it is
    done (`save`); `resume` takes the stored rows of traces already scanned with the same
    SETTINGS instead of scanning them again. `progress(done, total)` after each trace.
    Refused (RunsError) before any model loads for bad arguments."""
    run_dir = Path(run_dir)
    traces = _check(run_dir, traces, top, rollouts, max_traces)
    me = open_run(run_dir)
    settings = dict(top=top, rollouts=rollouts, base_seed=int(seed),
                    temperature=me.sampling_temperature, top_p=me.sampling_top_p,
                    max_new_tokens=me.max_new_tokens)
    done = _stored(run_dir, traces, settings) if resume else {}
    todo = [t for t in traces if t not in done]
    pair = pair_for(run_dir, pair, device) if todo else None
    chat = chat_template(run_dir)
    parts = []
    for i, tid in enumerate(traces):
        if tid in done:
            parts.append(done[tid])
        else:
            rows = pd.DataFrame(_scan_trace(run_dir, pair, chat, tid, settings))
            rows = rows.assign(**settings)
            if save and len(rows):
                extras.write_table(run_dir, "critical", rows)
            parts.append(rows)
        if progress is not None:
            progress(i + 1, len(traces))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _stored(run_dir, traces, settings) -> dict[int, pd.DataFrame]:
    """{trace: its stored rows} for traces scanned before with exactly `settings`."""
    old = read_scan(run_dir)
    out = {}
    if old.empty or not set(SETTINGS) <= set(old.columns):
        return out
    for tid, g in old[old.trace_id.isin(traces)].groupby("trace_id"):
        if all(g[k].iloc[0] == v for k, v in settings.items()):
            out[int(tid)] = g.reset_index(drop=True)
    return out


def _scan_trace(run_dir, pair, chat, tid, st) -> list[dict]:
    tr = load_trace(run_dir, tid).encode(pair.tokenizer, chat)
    ent = tr.entropy_tuned if tr.sampled_from == "tuned" else tr.entropy_base
    out = []
    for pos, groups in choose_positions(tr.js, ent, st["top"], st["base_seed"], tid).items():
        s = position_seed(st["base_seed"], tid, pos)
        b1, t1 = top1_pair(pair, tr.ids[:tr.row(pos) + 1])
        head = dict(trace_id=tid, pos=pos, groups=",".join(groups), js=float(tr.js[pos]),
                    entropy=float(ent[pos]), base_token_id=b1, tuned_token_id=t1,
                    same_choice=b1 == t1, continued_by=tr.sampled_from)
        if b1 == t1:
            out.append(dict(head, branch=None, rollout=-1, correct=None, seed=s))
            continue
        got = fork(pair, tr.prompt, tr.response_ids, pos, tr.reference, verifier=tr.verifier,
                   continue_with=tr.sampled_from, k=st["rollouts"],
                   temperature=st["temperature"], top_p=st["top_p"],
                   max_new_tokens=st["max_new_tokens"], seed=s, chat_template=chat,
                   tokens=(b1, t1))
        for r in got.itertuples():
            out.append(dict(head, branch=r.branch, rollout=int(r.rollout),
                            correct=bool(r.correct), seed=s))
    return out


@dataclass
class CriticalConfig:
    """A scan as a queue job (core.jobs.queue.submit_critical): the arguments of `scan`."""
    run: str = ""
    cache: str = ""  # "" = the default cache (core.paths.cache_dir)
    traces: list[int] | None = None
    top: int = 4
    rollouts: int = 8
    seed: int = 0
    max_traces: int = 8
    device: str | None = None

    def folder(self) -> Path:
        from core.paths import cache_dir
        from core.store.cache import resolve_run

        return resolve_run(cache_dir(self.cache), self.run)


def run_config(cfg: CriticalConfig, progress=None) -> pd.DataFrame:
    """The job's work: `scan` with resume (a resumed job skips the traces already stored)."""
    return scan(cfg.folder(), cfg.traces, top=cfg.top, rollouts=cfg.rollouts, seed=cfg.seed,
                max_traces=cfg.max_traces, device=cfg.device, resume=True,
                progress=progress)


def read_scan(run_dir: str | Path, trace_id: int | None = None) -> pd.DataFrame:
    """Stored scan rollouts (of one trace when `trace_id`)."""
    return extras.read_table(run_dir, "critical", trace_id)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return c - h, c + h


def effect_interval(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float, float]:
    """(p1 - p2, lo, hi): Newcombe's hybrid score interval (95%) of a difference."""
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1)
    l2, u2 = wilson(k2, n2)
    d = p1 - p2
    return d, d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), \
        d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def positions(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per scanned (trace_id, pos): groups, js, entropy, same_choice, k (rollouts
    per branch), acc_tuned, acc_base, effect, effect_lo, effect_hi."""
    out = []
    for (tid, pos), g in rows.groupby(["trace_id", "pos"], sort=True):
        h = g.iloc[0]
        rec = dict(trace_id=int(tid), pos=int(pos), groups=h.groups, js=h.js,
                   entropy=h.entropy, same_choice=bool(h.same_choice))
        if h.same_choice:
            rec.update(k=0, acc_tuned=np.nan, acc_base=np.nan, effect=0.0, effect_lo=0.0,
                       effect_hi=0.0)
        else:
            t = g[g.branch == "tuned top-1"].correct.astype(bool)
            b = g[g.branch == "base top-1"].correct.astype(bool)
            d, lo, hi = effect_interval(int(t.sum()), len(t), int(b.sum()), len(b))
            rec.update(k=len(t), acc_tuned=t.mean(), acc_base=b.mean(), effect=d,
                       effect_lo=lo, effect_hi=hi)
        out.append(rec)
    return pd.DataFrame(out)


def marks(run_dir: str | Path, trace_id: int) -> pd.DataFrame:
    """The stored scan of one trace, one row per scanned position (`positions` columns) plus
    `critical`: the effect's interval excludes 0. Empty when the trace was never scanned."""
    rows = read_scan(run_dir, trace_id)
    if rows.empty:
        return pd.DataFrame()
    pos = positions(rows)
    pos["critical"] = (pos.effect_lo > 0) | (pos.effect_hi < 0)
    return pos


def spearman(x, y) -> float:
    x, y = pd.Series(x, dtype=float).rank(), pd.Series(y, dtype=float).rank()
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def criticality(pos: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0,
                target: str = "effect") -> pd.DataFrame:
    """Spearman rank correlation of |effect| (`target` column, absolute) with js and with
    entropy over scanned positions, with a 95% percentile bootstrap interval over
    positions: columns predictor, spearman, lo, hi, n."""
    y = pos[target].abs().to_numpy(float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(pos), size=(n_boot, len(pos))) if len(pos) else None
    rows = []
    for pred in ("js", "entropy"):
        x = pos[pred].to_numpy(float)
        rho = spearman(x, y)
        boots = [spearman(x[i], y[i]) for i in idx] if idx is not None else []
        boots = np.array([b for b in boots if b == b])
        lo, hi = (np.percentile(boots, [2.5, 97.5]) if len(boots) else (np.nan, np.nan))
        rows.append(dict(predictor=pred, spearman=rho, lo=float(lo), hi=float(hi),
                         n=len(pos)))
    return pd.DataFrame(rows)
