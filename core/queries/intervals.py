"""Prompt-clustered bootstrap intervals: the one implementation behind every interval the
queries return (shares, ratios of shares, differences against a reference, overlaps).

Tokens are not independent: the tokens of one response, and the responses to one prompt,
move together (the high-js tokens of a run come from a few prompts). The unit resampled is
therefore the prompt (traces.prompt_id; a trace without one is its own unit): each of
N_RESAMPLES replicates draws as many prompts as there are, with replacement, and every
statistic is recomputed from the drawn prompts' sums. The interval is the replicates'
percentile interval at LEVEL.

Reproducible by construction: prompts are sorted by id, and replicate b's draw is the b-th
`rng.integers(0, P, P)` of `numpy.random.default_rng(SEED)`; the replicates share their draws
across groups (runs, bins, metrics), so a ratio or a difference between two groups is
resampled jointly, prompt by prompt. tests/test_intervals.py reproduces the intervals from
the raw Parquet rows with that recipe.

Every statistic here is a ratio of sums (a share = count above / count; a mean = sum / count;
an overlap = intersection / union), so one grouped SQL pass per query gives the per-prompt
sums (`prompt_sums`) and the replicates are one integer weight matrix times those sums. This
module computes no point estimate of its own: the queries keep theirs (unchanged) and add
`<col>_lo`, `<col>_hi` beside them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.queries.sql import _filtered, _q

N_RESAMPLES = 1000  # replicates per interval (percentile bootstrap)
SEED = 26           # numpy.random.default_rng seed of the replicates' draws
LEVEL = 0.95        # coverage of the percentile interval
PROMPT = "_prompt"  # the cluster column of prompt_sums' frames
_CELLS = 4_000_000  # weight-matrix entries per chunk of replicates (memory bound)


def prompt_sums(con, sums: dict[str, str], keys: dict[str, str] | None = None, runs=None,
                sampled_from=None, correct=None, where: str = "TRUE", params: dict | None = None,
                src: str = "tok", join: str = "") -> pd.DataFrame:
    """[keys..,] _prompt, <sums..>: SQL aggregates (`sums`: name -> aggregate over the
    filtered `src` rows) per prompt and key (`keys`: name -> expression), rows kept by the
    shared filter (sql._filtered) and `where` (`join`: an extra join clause after FROM f).
    Keys and aggregates are whitelisted SQL built by the queries, never user text; user
    values arrive as `params`."""
    base, p = _filtered(runs, sampled_from, correct, src=src)
    keys = keys or {}
    ksel = "".join(f"{expr} AS {name}, " for name, expr in keys.items())
    ssel = ", ".join(f"coalesce({agg}, 0)::DOUBLE AS {name}" for name, agg in sums.items())
    sql = f"""WITH f AS (SELECT f0.*, coalesce(tr.prompt_id,
          'trace:' || f0.run || ':' || f0.trace_id::VARCHAR) AS {PROMPT}
        FROM ({base}) f0 LEFT JOIN (SELECT run AS _r, trace_id AS _t, prompt_id FROM traces) tr
          ON f0.run = tr._r AND f0.trace_id = tr._t)
      SELECT {ksel}{PROMPT}, {ssel} FROM f {join} WHERE {where} GROUP BY ALL"""
    return _q(con, sql, {**p, **(params or {})})


def draws(n_prompts: int, n_resamples: int = N_RESAMPLES, seed: int = SEED):
    """Chunks of the replicates' weights: integer arrays (c, n_prompts), row b = how often
    replicate b drew each prompt (the module docstring's recipe), chunks in replicate order."""
    rng = np.random.default_rng(seed)
    chunk = max(1, _CELLS // max(n_prompts, 1))
    for start in range(0, n_resamples, chunk):
        c = min(chunk, n_resamples - start)
        if n_prompts == 0:
            yield np.zeros((c, 0), dtype=np.int64)
            continue
        idx = rng.integers(0, n_prompts, size=(c, n_prompts))
        flat = (idx + np.arange(c)[:, None] * n_prompts).ravel()
        yield np.bincount(flat, minlength=c * n_prompts).reshape(c, n_prompts)


def resampled(matrix: np.ndarray, n_resamples: int = N_RESAMPLES,
              seed: int = SEED) -> np.ndarray:
    """(n_resamples, S) resampled sums of a (P, S) matrix of per-prompt sums (prompts in
    sorted id order)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    out = [w @ matrix for w in draws(matrix.shape[0], n_resamples, seed)]
    return np.concatenate(out) if out else np.zeros((0, matrix.shape[1]))


def percentile(reps: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """The percentile interval of replicates (axis 0), NaN replicates left out (a replicate
    that drew no row of a group has no value); NaN where no replicate has one."""
    a = (1.0 - level) / 2.0
    reps = np.asarray(reps, dtype=np.float64)
    ok = ~np.isnan(reps)
    lo = np.full(reps.shape[1:], np.nan)
    hi = np.full(reps.shape[1:], np.nan)
    has = ok.any(axis=0)
    if has.any():
        with np.errstate(all="ignore"):
            q = np.nanquantile(reps[:, has], [a, 1.0 - a], axis=0)
        lo[has], hi[has] = q[0], q[1]
    return lo, hi


def _ratio(num, den):
    with np.errstate(all="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


class Table:
    """Per-prompt sums (prompt_sums' frame) as a (prompts, groups, statistics) array, and
    their joint replicates: `ratio`, `ratio_of_ratios`, `difference` give intervals."""

    def __init__(self, sums: pd.DataFrame, keys: list[str], cols: list[str],
                 n_resamples: int = N_RESAMPLES, seed: int = SEED):
        self.keys, self.cols = list(keys), list(cols)
        prompts = sorted(sums[PROMPT].astype(str).unique())
        pidx = pd.Index(prompts).get_indexer(sums[PROMPT].astype(str))
        if self.keys:
            gidx, groups = _factorize(sums[self.keys])
        else:
            gidx, groups = np.zeros(len(sums), dtype=np.int64), pd.DataFrame(index=[0])
        self.groups = groups.reset_index(drop=True)
        self.n_prompts = len(prompts)
        arr = np.zeros((len(prompts), len(self.groups), len(self.cols)))
        np.add.at(arr, (pidx, gidx), sums[self.cols].to_numpy(dtype=np.float64))
        self.point = arr.sum(axis=0)  # (G, S)
        reps = resampled(arr.reshape(len(prompts), len(self.groups) * len(self.cols)),
                         n_resamples, seed)
        self.reps = reps.reshape(-1, len(self.groups), len(self.cols))  # (B, G, S)
        self.prompts_per_group = (np.abs(arr).sum(axis=2) > 0).sum(axis=0)

    def _c(self, name: str) -> int:
        return self.cols.index(name)

    def reps_of(self, g: int, col: str) -> np.ndarray:
        """The replicates of one group's sum of `col` (NaN for a missing group, -1)."""
        if g < 0:
            return np.full(self.reps.shape[0], np.nan)
        return self.reps[:, g, self._c(col)]

    def ratio(self, num: str, den: str, level: float = LEVEL) -> pd.DataFrame:
        """keys.., lo, hi of sum(num) / sum(den) per group."""
        r = _ratio(self.reps[:, :, self._c(num)], self.reps[:, :, self._c(den)])
        lo, hi = percentile(r, level)
        return self.groups.assign(lo=lo, hi=hi)

    def index_of(self, **key) -> int:
        m = np.ones(len(self.groups), dtype=bool)
        for k, v in key.items():
            col = self.groups[k]
            m &= (col.isna() if v is None else col == v).to_numpy()
        hits = np.flatnonzero(m)
        return int(hits[0]) if len(hits) else -1

    def group_ratio_reps(self, g: int, num: str, den: str) -> np.ndarray:
        if g < 0:
            return np.full(self.reps.shape[0], np.nan)
        return _ratio(self.reps[:, g, self._c(num)], self.reps[:, g, self._c(den)])

    def group_ratio(self, g: int, num: str, den: str) -> float:
        if g < 0:
            return float("nan")
        return float(_ratio(self.point[g, self._c(num)], self.point[g, self._c(den)]))

    def ratio_of_ratios(self, a: int, b: int, num: str, den: str,
                        level: float = LEVEL) -> tuple[float, float, float]:
        """(point, lo, hi) of ratio(a) / ratio(b) for groups a and b (indexes of .groups)."""
        point = _ratio(np.float64(self.group_ratio(a, num, den)),
                       np.float64(self.group_ratio(b, num, den)))
        r = _ratio(self.group_ratio_reps(a, num, den), self.group_ratio_reps(b, num, den))
        lo, hi = percentile(r[:, None], level)
        return float(point), float(lo[0]), float(hi[0])

    def difference(self, a: int, b: int, num: str, den: str,
                   level: float = LEVEL) -> tuple[float, float, float]:
        """(point, lo, hi) of ratio(a) - ratio(b)."""
        point = self.group_ratio(a, num, den) - self.group_ratio(b, num, den)
        r = self.group_ratio_reps(a, num, den) - self.group_ratio_reps(b, num, den)
        lo, hi = percentile(r[:, None], level)
        return float(point), float(lo[0]), float(hi[0])


def _factorize(frame: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """Group index per row of `frame` (NaN/None a value of its own) and the distinct rows."""
    codes = _tuples(frame)
    seen: dict = {}
    idx = np.array([seen.setdefault(c, len(seen)) for c in codes], dtype=np.int64)
    return idx, pd.DataFrame(list(seen), columns=frame.columns)


def _tuples(frame: pd.DataFrame) -> list[tuple]:
    """Rows as tuples, NaN and None both None (so NULL keys match)."""
    cols = [[None if pd.isna(v) else v for v in frame[c].tolist()] for c in frame.columns]
    return list(zip(*cols, strict=True)) if cols else [()] * len(frame)


def attach(df: pd.DataFrame, sums: pd.DataFrame, keys: list[str], cols: list[str],
           pairs: dict[str, tuple], inner: list[str] | None = None,
           level: float = LEVEL) -> pd.DataFrame:
    """`df` with `<name>_lo`, `<name>_hi` for each name -> (num, den) of `pairs` and
    n_prompts (the prompts the intervals resample), matched on `keys` + `inner` (NULL keys
    match NULL keys). Each `keys` group (a run, a sampler) is resampled on its own prompts,
    so its interval does not depend on what else was opened; the `inner` groups of one
    (position bins, subsets) share its draws."""
    inner = list(inner or [])
    parts = []
    for _, sub in (sums.groupby(keys, dropna=False, sort=False) if keys else [((), sums)]):
        t = Table(sub, keys + inner, cols)
        ci = t.groups.assign(n_prompts=t.n_prompts)
        for name, (num, den) in pairs.items():
            r = t.ratio(num, den, level)
            ci[f"{name}_lo"], ci[f"{name}_hi"] = r["lo"].to_numpy(), r["hi"].to_numpy()
        parts.append(ci)
    names = ["n_prompts"] + [f"{n}_{e}" for n in pairs for e in ("lo", "hi")]
    extra = (pd.concat(parts, ignore_index=True) if parts
             else pd.DataFrame(columns=keys + inner + names))
    out = _merge(df.copy(), extra, keys + inner)
    for c in names:
        if c not in out.columns:
            out[c] = np.nan
    return out


def _merge(df: pd.DataFrame, extra: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    if not keys:
        for c in extra.columns:
            df[c] = extra[c].iloc[0] if len(extra) else np.nan
        return df
    at = {t: i for i, t in enumerate(_tuples(extra[keys]))}
    pos = [at.get(t, -1) for t in _tuples(df[keys])]
    for c in extra.columns:
        if c in keys:
            continue
        vals = extra[c].to_numpy()
        df[c] = [vals[i] if i >= 0 else np.nan for i in pos]
    return df
