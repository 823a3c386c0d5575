"""Exact order statistics over a materialised connection, without a pass over the rows.

Quantiles are what make the analyses slow on tens of millions of rows: DuckDB's exact
`quantile_cont` copies and partially sorts every value of every group on each call (about
110-140 ms per pass over 10 M floats on two cores). Every filter the analyses take (runs,
sampled_from, correct) selects whole *cells*: the (run, sampled_from, correct) groups that
`open_runs` numbers when it materialises (table `cells`). So one sort per metric, done once,
answers them all:

    SegIndex   the non-NULL values of one column, sorted within segments (a cell, or a cell
               and a position bin); a uint64 key per value, (segment << 32) | order key of the
               value, so that one `np.searchsorted` over the whole array counts values below
               any threshold in any set of segments.

Results are the numbers the SQL path returns, not approximations: quantiles follow DuckDB's
`quantile_cont` (position q * (n - 1), linear interpolation in double, cast to the column's
type), and threshold counts compare the stored float32/int32 values with a double threshold
as DuckDB does. Means use a per-segment float64 sum (summation order differs from DuckDB's:
last-bit differences). `tests/test_synthetic.py` checks the indexed queries against the SQL
path on Parquet views.

Indexes are built lazily and cached per connection (a weak reference: they go with it) and
shared with its cursors (`link`: every session of the app queries through its own cursor of
one connection); `open_runs` prebuilds the ones the app's default views use.

This module is numpy only: it runs no SQL and imports no other core.queries module (the
queries that fill and read these indexes are in core/queries/indexed.py).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict

import numpy as np

_STORES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_STORES_LOCK = threading.Lock()
_SIGN32 = np.uint32(0x80000000)
_BUILD_CHUNK = 1 << 22


# ----------------------------------------------------------------------------- order keys

def _okey(values: np.ndarray) -> np.ndarray:
    """uint32 keys with the order of the values (float32: IEEE total order, NaN above +inf,
    as DuckDB sorts; int32: offset binary)."""
    if values.dtype == np.float32:
        bits = values.view(np.uint32)
        return np.where(bits & _SIGN32, ~bits, bits | _SIGN32).astype(np.uint32)
    if values.dtype == np.int32:
        return values.view(np.uint32) ^ _SIGN32
    raise TypeError(f"unsupported dtype {values.dtype}")


def _from_okey(keys: np.ndarray, dtype) -> np.ndarray:
    keys = np.asarray(keys, dtype=np.uint32)
    if dtype == np.float32:
        bits = np.where(keys & _SIGN32, keys ^ _SIGN32, ~keys).astype(np.uint32)
        return bits.view(np.float32)
    return (keys ^ _SIGN32).view(np.int32)


def _first_geq(t: float, dtype) -> int:
    """Order key of the smallest stored value x with double(x) >= t (x < t <=> key < this)."""
    t = float(t) + 0.0  # -0.0 -> 0.0, as the stored values
    if dtype == np.float32:
        f = np.float32(t)
        if float(f) < t:
            f = np.nextafter(f, np.float32(np.inf))
        return int(_okey(np.array([f], dtype=np.float32))[0])
    c = int(np.ceil(t)) if np.isfinite(t) else (2**31 if t > 0 else -2**31)
    return int(np.clip(c, -2**31, 2**31)) + 2**31  # may be 2**32: above every key


def _last_leq(t: float, dtype) -> int:
    """Order key of the largest stored value x with double(x) <= t (x > t <=> key > this)."""
    t = float(t) + 0.0  # -0.0 -> 0.0, as the stored values
    if dtype == np.float32:
        f = np.float32(t)
        if float(f) > t:
            f = np.nextafter(f, np.float32(-np.inf))
        return int(_okey(np.array([f], dtype=np.float32))[0])
    c = int(np.floor(t)) if np.isfinite(t) else (2**31 if t > 0 else -2**31 - 1)
    return int(np.clip(c, -2**31 - 1, 2**31 - 1)) + 2**31  # may be -1: below every key


# ----------------------------------------------------------------------------- the index

class SegIndex:
    """Non-NULL values of one column sorted within segments 0..n_seg-1 (see module doc).

    starts[s]:starts[s + 1] is segment s's slice; sums[s] its float64 sum; nulls[s] the
    number of rows of segment s whose value is NULL (counted by count(*), not by
    count(column))."""

    def __init__(self, seg: np.ndarray, values: np.ndarray, n_seg: int,
                 null_seg: np.ndarray | None = None):
        values = np.asarray(values)
        if values.dtype not in (np.float32, np.int32):
            values = values.astype(np.float32 if values.dtype.kind == "f" else np.int32)
        if values.dtype == np.float32:  # DuckDB's equalities: -0.0 = 0.0, NaN = NaN
            values = np.where(np.isnan(values), np.float32(np.nan), values + np.float32(0.0))
        self.dtype = values.dtype
        self.n_seg = int(n_seg)
        seg = np.asarray(seg)
        # Memory: 8 bytes per value for the keys, built and sorted in place, and sums
        # accumulated by chunks (no int64 / float64 copy of the whole column): on 100M rows
        # the build peak is about the keys plus the input columns.
        n = len(values)
        self.keys = np.empty(n, dtype=np.uint64)
        self.sums = np.zeros(self.n_seg)
        counts = np.zeros(self.n_seg, dtype=np.int64)
        for a in range(0, n, _BUILD_CHUNK):
            sg = seg[a:a + _BUILD_CHUNK].astype(np.int64)
            v = values[a:a + _BUILD_CHUNK]
            k = self.keys[a:a + _BUILD_CHUNK]
            np.left_shift(sg.astype(np.uint64), np.uint64(32), out=k)
            k |= _okey(v).astype(np.uint64)
            counts += np.bincount(sg, minlength=self.n_seg)
            self.sums += np.bincount(sg, weights=v.astype(np.float64), minlength=self.n_seg)
        self.keys.sort()
        self.starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.nulls = (np.bincount(np.asarray(null_seg, dtype=np.int64), minlength=self.n_seg)
                      if null_seg is not None and len(null_seg) else np.zeros(self.n_seg, int))

    # -- per segment
    def count(self, segs) -> np.ndarray:
        segs = np.asarray(segs, dtype=np.int64)
        return self.starts[segs + 1] - self.starts[segs]

    def _search(self, segs: np.ndarray, key: int, side: str) -> np.ndarray:
        segs = np.asarray(segs, dtype=np.int64)
        if key < 0:
            return self.starts[segs]
        if key >= 2**32:
            return self.starts[segs + 1]
        q = (segs.astype(np.uint64) << np.uint64(32)) | np.uint64(key)
        return np.searchsorted(self.keys, q, side=side)

    def count_lt(self, segs, t: float) -> np.ndarray:
        """Per segment: values x with double(x) < t."""
        segs = np.asarray(segs, dtype=np.int64)
        return self._search(segs, _first_geq(t, self.dtype), "left") - self.starts[segs]

    def count_gt(self, segs, t: float) -> np.ndarray:
        """Per segment: values x with double(x) > t."""
        segs = np.asarray(segs, dtype=np.int64)
        return self.starts[segs + 1] - self._search(segs, _last_leq(t, self.dtype), "right")

    def count_below_keys(self, segs, keys) -> np.ndarray:
        """[len(keys)] counts over the segments of values whose order key is < keys[j] (keys
        in 0..2**32, 2**32 = above every value)."""
        segs = np.asarray(segs, dtype=np.int64)
        keys = np.asarray(keys, dtype=np.int64)
        if not len(segs):
            return np.zeros(len(keys), dtype=np.int64)
        inner = np.clip(keys, 0, 2**32 - 1).astype(np.uint64)
        q = (segs.astype(np.uint64)[:, None] << np.uint64(32)) | inner[None, :]
        c = np.searchsorted(self.keys, q, side="left") - self.starts[segs][:, None]
        c = np.where(keys[None, :] >= 2**32, self.count(segs)[:, None], c)
        return c.sum(axis=0)

    def min(self, segs, above: float | None = None) -> float | None:
        """Smallest value over the segments (of those with double(x) > `above` when given;
        None when there is none)."""
        segs = np.asarray(segs, dtype=np.int64)
        first = (self.starts[segs] if above is None
                 else self._search(segs, _last_leq(above, self.dtype), "right"))
        ok = first < self.starts[segs + 1]
        if not ok.any():
            return None
        k = int((self.keys[first[ok]] & np.uint64(0xFFFFFFFF)).min())
        return _from_okey(np.array([k]), self.dtype)[0].item()

    def max(self, segs) -> float | None:
        """Largest value over the segments (None when they hold none)."""
        segs = np.asarray(segs, dtype=np.int64)
        ends = self.starts[segs + 1]
        ok = ends > self.starts[segs]
        if not ok.any():
            return None
        k = int((self.keys[ends[ok] - 1] & np.uint64(0xFFFFFFFF)).max())
        return _from_okey(np.array([k]), self.dtype)[0].item()

    # -- order statistics over unions of segments
    def kth(self, groups: list, ranks: list) -> np.ndarray:
        """Order keys of the ranks[i]-th (0-based) smallest value of the union of segments
        groups[i], for every i at once: a bisection on the 32-bit key whose every step is one
        vectorised searchsorted. Ranks must be < the union's count."""
        n = len(groups)
        out = np.zeros(n, dtype=np.int64)
        multi = []
        for i, (segs, r) in enumerate(zip(groups, ranks, strict=True)):
            segs = np.asarray(segs, dtype=np.int64)
            segs = segs[self.count(segs) > 0]
            if len(segs) == 1:  # one segment: a direct read
                out[i] = int(self.keys[self.starts[segs[0]] + r] & np.uint64(0xFFFFFFFF))
            else:
                multi.append((i, segs, r))
        if multi:
            owner = np.concatenate([np.full(len(s), j) for j, (_, s, _) in enumerate(multi)])
            psegs = np.concatenate([s for _, s, _ in multi])
            need = np.array([r + 1 for _, _, r in multi], dtype=np.int64)
            base = self.starts[psegs]
            hi_seg = psegs.astype(np.uint64) << np.uint64(32)
            lo = np.zeros(len(multi), dtype=np.int64)
            hi = np.full(len(multi), 2**32 - 1, dtype=np.int64)
            while (lo < hi).any():
                mid = (lo + hi) // 2
                c = np.searchsorted(self.keys, hi_seg | mid[owner].astype(np.uint64),
                                    side="right") - base
                enough = np.bincount(owner, weights=c, minlength=len(multi)) >= need
                hi = np.where(enough, mid, hi)
                lo = np.where(enough, lo, mid + 1)
            for j, (i, _, _) in enumerate(multi):
                out[i] = lo[j]
        return out

    def value_at(self, segs, rank: int):
        """The rank-th (0-based) smallest value of the union of the segments."""
        k = self.kth([np.asarray(segs, dtype=np.int64)], [int(rank)])
        return _from_okey(k, self.dtype)[0].item()

    def quantiles(self, groups: list, qs: list) -> np.ndarray:
        """[len(groups), len(qs)] float64 array of DuckDB's quantile_cont of each group's
        values (the column's type's rounding applied; NaN for an empty group)."""
        qs = [float(q) for q in qs]
        res = np.full((len(groups), len(qs)), np.nan)
        want_g, want_r, slots = [], [], []
        for gi, segs in enumerate(groups):
            n = int(self.count(segs).sum())
            if n == 0:
                continue
            for qi, q in enumerate(qs):
                h = q * (n - 1)
                lo = int(np.floor(h))
                hi = int(np.ceil(h))
                slots.append((gi, qi, lo, hi, h - lo))
                want_g += [segs, segs]
                want_r += [lo, hi]
        if not slots:
            return res
        vals = _from_okey(self.kth(want_g, want_r), self.dtype).astype(np.float64)
        for j, (gi, qi, _, _, d) in enumerate(slots):
            a, b = vals[2 * j], vals[2 * j + 1]
            v = a + d * (b - a) if d else a
            res[gi, qi] = float(np.float32(v)) if self.dtype == np.float32 else v
        return res


# ----------------------------------------------------------------------------- per connection

class _Store:
    def __init__(self):
        self.lock = threading.Lock()
        self.indexes: dict = {}
        self.lru: OrderedDict = OrderedDict()  # bounded: keyed by user parameters


_PARENT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def enable(con) -> None:
    """Mark `con` as materialised: the indexed query paths may be used on it."""
    with _STORES_LOCK:
        _STORES.setdefault(con, _Store())


def link(cursor, con) -> None:
    """`cursor` (a `con.cursor()`) shares `con`'s indexes and caches."""
    with _STORES_LOCK:
        _PARENT[cursor] = con


def _store(con) -> _Store | None:
    s = _STORES.get(con)
    if s is None:
        parent = _PARENT.get(con)
        s = _STORES.get(parent) if parent is not None else None
    return s


def enabled(con) -> bool:
    return _store(con) is not None


def get(con, key: tuple, build):
    """The cached index `key` of `con`, built by `build()` the first time."""
    store = _store(con)
    with store.lock:
        if key not in store.indexes:
            store.indexes[key] = build()
        return store.indexes[key]


LRU_ENTRIES = 256


def get_lru(con, key: tuple, build):
    """Like `get`, for small results keyed by user parameters (thresholds, bin edges): the
    LRU_ENTRIES most recently used are kept."""
    store = _store(con)
    with store.lock:
        if key in store.lru:
            store.lru.move_to_end(key)
            return store.lru[key]
        val = store.lru[key] = build()
        while len(store.lru) > LRU_ENTRIES:
            store.lru.popitem(last=False)
        return val
