"""The nuclei (top-p) and the truncated JS columns inside the fused CPU kernel
(core/metrics/fused_numba.py), exactly, for every row: no row is left to the torch Context.

The rule is core/metrics/nucleus.py's: order a row's tokens by probability, most likely first,
equal probabilities by token id (lower id first); keep a token while the mass before it is
below top_p (the first token always). Probability order is logit order, so tokens are ordered
by an integer key of their float32 logit (`key`: monotone in the value, -0.0 = +0.0).

Each model's nuclei are found by the first of three searches that applies, all exact:
- `nuclei_topk`: from the row's top-K list (pass 1 of the kernel) when every nucleus ends
  inside it before a strictly smaller logit (a peaked row: no pass over the vocabulary);
- `nuclei_linear`: a histogram (float64 mass of exp(x - max)) on a linear scale of the
  logit below the row's maximum (1/256-nat bins, `lbin`, each token's bin written first by
  a vectorised pass, `lbins`); the bin where the mass from the top reaches top_p holds the
  last kept token; one pass gathers the ids of those bins
  (counting them), and each bin's tokens (at most CAP) are sorted by (key descending, id
  ascending) and walked from the mass above the bin;
- `nuclei`, when a linear bin holds more than CAP tokens (large groups of equal logits,
  or top_p reaching the clipped last bin) or the masses never reach top_p: a radix
  selection on the key, over masses: a histogram of the key's top 11 bits, a gather of
  those bins' tokens, finer histograms (11, then the last 10 bits: a bin of the last
  level is one logit value) while a bin
  holds more than CAP tokens, a sort of the final bin, and a final bin of more than CAP
  equal logits resolved by counting (its tokens are kept lowest ids first).
All nuclei of a model (the run's top_p, 0.9, 0.95) share these passes. The result per
nucleus: the last kept key `tau` and id `lim` (tokens with that key are kept up to that id:
lowest ids first) and the kept mass; core/metrics/fused_trunc.py sums the truncated JS over
them.

Masses are float64 sums of float32 exps, in another order than the reference's sorted
cumulative sum: a token whose mass before it equals top_p to within ~1e-10 may be decided
apart (nucleus.py says the same of its two ways). Not here: the kernel's other metrics.
"""
from __future__ import annotations

import numba as nb
import numpy as np

NB1 = 2048  # level-1 bins: the key's top 11 bits
CAP = 2048  # at most this many tokens are collected and sorted per nucleus
_SHIFTS = (21, 10, 0)  # the key's bits below each level's prefix
_FM = {"nsz", "arcp", "contract", "afn", "reassoc"}


@nb.njit(cache=True, inline="always")
def key(bits):
    """Order key in [0, 2^32) of a float32 given by its int32 bits: a < b as floats iff
    key(a) < key(b); -0.0 and +0.0 share one key."""
    s = np.int64(bits)
    if s == -2147483648:
        s = 0
    if s < 0:
        s = s ^ 0x7FFFFFFF
    return s + 2147483648


@nb.njit(cache=True)
def _pick(hc, hm, cum, target):
    """Scan bins from the highest: (bin, mass above it) of the bin where the mass reaches
    `target` (the lowest non-empty bin if it never does)."""
    b = len(hc) - 1
    last = -1
    while b >= 0:
        if hc[b] > 0:
            last = b
            if cum + hm[b] >= target:
                return b, cum
            cum += hm[b]
        b -= 1
    return last, cum - hm[last]


@nb.njit(cache=True)
def _fresh(bins, j):
    """bins[j] is none of bins[:j] (several nuclei may end in one bin: it is gathered
    once)."""
    for i in range(j):
        if bins[i] == bins[j]:
            return False
    return True


@nb.njit(cache=True)
def _distinct_tokens(bins, hc):
    """The tokens the distinct bins among `bins` hold (hc: counts per bin)."""
    total = 0
    for j in range(len(bins)):
        if _fresh(bins, j):
            total += hc[bins[j]]
    return total


@nb.njit(cache=True)
def _walk(ck, cw, ci, before, target):
    """Walk a final bin's tokens (keys ck, masses cw, ids ci, in id order) from the mass
    `before` above the bin, most likely first (ties: lower id first), keeping each while the
    mass before it is below `target` (the first token always): (last kept key, last kept
    id, kept mass)."""
    order = np.argsort(-ck, kind="mergesort")  # stable: ties by id
    t = -1
    last = -1
    for o in order:
        if before < target or (t < 0 and before == 0.0):
            t = ck[o]
            last = ci[o]
            before += cw[o]
        else:
            break
    return t, last, before


@nb.njit(cache=True)
def _gather(bits, w, bins, hc):
    """(keys, w, ids) of the tokens whose level-1 bin is one of `bins`, in id order: one
    pass, no branch (each token is written, the write position advances for the chosen)."""
    total = _distinct_tokens(bins, hc)
    gi = np.empty(total + 1, np.int32)
    c = 0
    for i in range(len(bits)):  # ids only: the fewest bytes written per token
        h = key(bits[i]) >> _SHIFTS[0]
        m = False
        for j in range(len(bins)):
            m |= h == bins[j]
        gi[c] = i
        c += m
    gk = np.empty(c, np.int64)
    gw = np.empty(c, np.float64)
    for g in range(c):
        gk[g] = key(bits[gi[g]])
        gw[g] = w[gi[g]]
    return gk[:c], gw[:c], gi[:c]


@nb.njit(cache=True)
def nuclei(bits, w, s, tps, hc, hm, tau, lim, kept):
    """One model's row: bits (V,) int32 (its float32 logits' bits), w (V,) float32 exps of
    logit - max, s their float64 sum, tps (J,) top-p values, hc (NB1,) int64 / hm (NB1,)
    float64 the level-1 histogram (count, mass) of key >> 21. Writes tau, lim, kept (J,):
    the last kept token's key and id (the tokens with that key are kept up to that id), the
    kept mass (unnormalised, as w)."""
    nj = len(tps)
    shift = np.empty(nj, np.int64)
    pref = np.empty(nj, np.int64)
    above = np.empty(nj, np.float64)
    cnt = np.empty(nj, np.int64)
    bmass = np.empty(nj, np.float64)
    for j in range(nj):
        b, cum = _pick(hc, hm, 0.0, tps[j] * s)
        pref[j], shift[j], above[j], cnt[j], bmass[j] = b, _SHIFTS[0], cum, hc[b], hm[b]
    gk, gw, gi = _gather(bits, w, pref, hc)  # the rest reads only the tokens of those bins
    v = len(gk)
    for lvl in range(1, 3):  # refine the bins that hold too many tokens
        old, new = _SHIFTS[lvl - 1], _SHIFTS[lvl]
        nbins = 1 << (old - new)
        need = np.zeros(nj, np.bool_)
        any_need = False
        for j in range(nj):
            if cnt[j] > CAP and shift[j] == old:
                need[j] = True
                any_need = True
        if not any_need:
            break
        h2c = np.zeros((nj, nbins), np.int64)
        h2m = np.zeros((nj, nbins), np.float64)
        for i in range(v):
            u = gk[i]
            hi = u >> old
            for j in range(nj):
                if need[j] and hi == pref[j]:
                    sub = (u >> new) & (nbins - 1)
                    h2c[j, sub] += 1
                    h2m[j, sub] += gw[i]
        for j in range(nj):
            if need[j]:
                b, cum = _pick(h2c[j], h2m[j], above[j], tps[j] * s)
                pref[j] = (pref[j] << (old - new)) | b
                shift[j], above[j], cnt[j], bmass[j] = new, cum, h2c[j, b], h2m[j, b]
    # collect the final bins of at most CAP tokens (in id order), one pass for all nuclei
    ck = np.empty((nj, CAP), np.int64)
    cw = np.empty((nj, CAP), np.float64)
    ci = np.empty((nj, CAP), np.int64)
    got = np.zeros(nj, np.int64)
    coll = np.zeros(nj, np.bool_)
    any_coll = False
    for j in range(nj):
        if cnt[j] <= CAP:
            coll[j] = True
            any_coll = True
    if any_coll:
        for i in range(v):
            u = gk[i]
            for j in range(nj):
                if coll[j] and (u >> shift[j]) == pref[j]:
                    ck[j, got[j]] = u
                    cw[j, got[j]] = gw[i]
                    ci[j, got[j]] = gi[i]
                    got[j] += 1
    for j in range(nj):
        target = tps[j] * s
        before = above[j]
        if coll[j]:
            n = got[j]
            tau[j], lim[j], kept[j] = _walk(ck[j, :n], cw[j, :n], ci[j, :n], before, target)
        else:  # > CAP tokens with one logit: kept lowest ids first, counted
            we = bmass[j] / cnt[j]
            m = 0
            while m < cnt[j] and (before < target or (m == 0 and before == 0.0)):
                before += we
                m += 1
            last = -1
            seen = 0
            for i in range(v):  # the id of the m-th of them
                if gk[i] == pref[j]:
                    seen += 1
                    if seen == m:
                        last = gi[i]
                        break
            tau[j], lim[j], kept[j] = pref[j], last, before


# The first level of the search on a linear scale of the logit below the row's maximum:
# bin = NL - 1 - floor((max - x) * SCALE), clipped at the last bin (32 nats below the
# maximum, where a token's mass is below 1.3e-14 of the most likely one's). Monotone in x,
# so equal logits share a bin and bins keep probability order; a bin is 1/256 nat wide,
# where the key's top 11 bits made bins of up to a quarter octave (a near-uniform row's
# nucleus then ended in bins of ~20,000 tokens, each refined in two more passes).
NL = 8192
SCALE = 256.0


@nb.njit(cache=True, fastmath=_FM, inline="always")
def lbin(x, mx):
    """The linear first-level bin of logit x in a row whose maximum is mx (-inf: bin 0).
    Always in [0, NL): a NaN (or an x above mx) goes to an end bin, never past the
    histogram."""
    q = (mx - x) * np.float32(SCALE)
    q = q if q < np.float32(NL - 1) else np.float32(NL - 1)  # NaN: the last bin
    q = q if q > np.float32(0.0) else np.float32(0.0)
    return NL - 1 - np.int64(q)


@nb.njit(cache=True, fastmath=_FM)
def lbins(x, mx, out):
    """Each logit's linear bin (lbin) into `out` (V,) uint16 (NL bins fit): a vectorised
    pass, so the histogram and the gather after it read two bytes per token and compute no
    bin. Computing the bin inside the scatter loop (which cannot be vectorised) made the
    histogram 2.6x slower, and the gather recomputed it (benchmarks/metric_math.py)."""
    for i in range(len(x)):
        out[i] = np.uint16(lbin(x[i], mx))


@nb.njit(cache=True)
def lhist(bins, w, hm):
    """Float64 mass of w per linear bin (bins from lbins). Masses only: a count per bin too
    was a second scatter per token (~40% of this pass); the chosen bins' tokens are counted
    as they are gathered."""
    for i in range(len(bins)):
        hm[bins[i]] += w[i]


@nb.njit(cache=True)
def _pick_mass(hm, target):
    """Scan the mass histogram from the highest bin: (bin, mass above it) of the bin where
    the mass reaches `target`, or (-1, total) when it never does."""
    cum = 0.0
    for b in range(len(hm) - 1, -1, -1):
        if hm[b] > 0 and cum + hm[b] >= target:
            return b, cum
        cum += hm[b]
    return -1, cum


GATHER_BLOCK = 64  # tokens per block of _gather_bins' vectorised test


@nb.njit(cache=True)
def _gather_bins(bins, p0, p1, p2, gi):
    """Ids of the tokens whose linear bin (bins, from lbins) is p0, p1 or p2, into gi (at
    most len(gi) written), in id order; returns how many there are. Each full block of 64
    tokens is first tested as a whole by an OR-reduction with no early exit (a loop LLVM can
    vectorise) and walked token by token only when it holds one: the chosen bins hold a few
    hundred of 151,936 tokens, so most blocks hold none. One thread, per row and model: this
    gather 0.04 ms against 0.11 for the token-by-token loop with a rare branch alone; the
    whole nucleus search 0.20 ms against 0.23-0.24 (near-uniform rows), 0.15 against 0.25
    (logit std 1.5). Blocks of 16 or 32 tokens or a block size passed at run time were no
    faster than that loop (an earlier stop found the same for a block test that exits
    early); a loop over range(0, n, 64) asking whether each block is full took 0.07 ms."""
    q0, q1, q2 = np.uint16(p0), np.uint16(p1), np.uint16(p2)
    c = 0
    cap = len(gi)
    n = len(bins)
    nblk = n // GATHER_BLOCK  # full blocks; the last pass (blk == nblk) walks the rest
    for blk in range(nblk + 1):
        i0 = blk * GATHER_BLOCK
        i1 = min(n, i0 + GATHER_BLOCK)
        if blk < nblk:
            hit = False
            for i in range(i0, i0 + GATHER_BLOCK):
                u = bins[i]
                hit |= (u == q0) | (u == q1) | (u == q2)
            if not hit:
                continue
        for i in range(i0, i1):
            u = bins[i]
            if (u == q0) | (u == q1) | (u == q2):
                if c < cap:
                    gi[c] = i
                c += 1
    return c


@nb.njit(cache=True)
def nuclei_linear(bins, bits, w, s, tps, hm, tau, lim, kept):
    """`nuclei` from the linear mass histogram hm (lhist of bins, each token's linear bin): each
    nucleus ends in one bin; one pass gathers the tokens of those bins and each bin is sorted by
    (key descending, id ascending) and walked. Returns False, writing nothing, when a bin holds
    more than CAP tokens (a big group of equal or masked logits, or top_p reaching the clipped
    last bin) or the mass never reaches a top_p: the caller then runs `nuclei` on the key
    histogram."""
    nj = len(tps)
    pref = np.empty(nj, np.int64)
    above = np.empty(nj, np.float64)
    for j in range(nj):
        b, cum = _pick_mass(hm, tps[j] * s)
        if b < 0:
            return False
        pref[j], above[j] = b, cum
    gi = np.empty(nj * CAP, np.int64)
    c = _gather_bins(bins, pref[0], pref[min(1, nj - 1)], pref[min(2, nj - 1)], gi)
    for j in range(3, nj):  # more than three nuclei: each further new bin in its own pass
        if c <= len(gi) and _fresh(pref, j):
            c += _gather_bins(bins, pref[j], pref[j], pref[j], gi[c:])
    if c > len(gi):  # more tokens than CAP per nucleus: some bin is over CAP
        return False
    got = np.zeros(nj, np.int64)
    for j in range(nj):
        for g in range(c):
            got[j] += bins[gi[g]] == pref[j]
        if got[j] > CAP:
            return False
    ck = np.empty(CAP, np.int64)
    cw = np.empty(CAP, np.float64)
    ci = np.empty(CAP, np.int64)
    for j in range(nj):
        n = 0
        for g in range(c):
            i = gi[g]
            if bins[i] == pref[j]:
                ck[n] = key(bits[i])
                cw[n] = w[i]
                ci[n] = i
                n += 1
        tau[j], lim[j], kept[j] = _walk(ck[:n], cw[:n], ci[:n], above[j], tps[j] * s)
    return True


@nb.njit(cache=True)
def nuclei_topk(ids, xs, bits, w, s, tps, tau, lim, kept):
    """`nuclei` from the row's top-K list alone (ids, logits xs: largest first, equal logits
    lower id first, as pass 1 builds it), when every nucleus ends inside it before a
    strictly smaller logit: then the tokens above the last kept one are all in the list
    (core/metrics/fused.py's truncated_js uses the same condition). A peaked row (a
    trained model's, mostly) needs no histogram and no pass over the vocabulary. Masses
    are read from w at the listed ids (the values the histogram would have summed).
    Returns False when some nucleus reaches the end of the list or a tie crosses its edge
    (what it wrote for the nuclei before that one is then overwritten by the caller's next
    search)."""
    k = len(ids)
    nj = len(tps)
    for j in range(nj):
        target = tps[j] * s
        before = 0.0
        m = 0
        while m < k and (before < target or m == 0):
            before += w[ids[m]]
            m += 1
        if m >= k or not xs[m] < xs[m - 1]:
            return False
        tau[j], lim[j], kept[j] = key(bits[ids[m - 1]]), ids[m - 1], before
    return True


@nb.njit(cache=True)
def key_hist(bits, w, hc, hm):
    """The radix search's first level (`nuclei`): count and mass of w by key >> 21."""
    for i in range(len(bits)):
        u = key(bits[i]) >> _SHIFTS[0]
        hc[u] += 1
        hm[u] += w[i]


@nb.njit(cache=True)
def row_nuclei(x, bits, mx, w, s, tps, top_ids, top_x, bins, tau, lim, kept):
    """One model's nuclei by the first search that applies: its top-K list where they all
    end inside it (nuclei_topk), else the linear histogram (nuclei_linear), else, when a bin
    there holds more than CAP tokens, the radix search on the logits' keys (nuclei). bins:
    a (V,) uint16 work buffer (each token's linear bin). Returns True when the top-K list
    gave them (fused_trunc.trunc_topk can then use it)."""
    if nuclei_topk(top_ids, top_x, bits, w, s, tps, tau, lim, kept):
        return True
    lbins(x, mx, bins)
    hm = np.zeros(NL, np.float64)
    lhist(bins, w, hm)
    if nuclei_linear(bins, bits, w, s, tps, hm, tau, lim, kept):
        return False
    kc = np.zeros(NB1, np.int64)
    km = np.zeros(NB1, np.float64)
    key_hist(bits, w, kc, km)
    nuclei(bits, w, s, tps, kc, km, tau, lim, kept)
    return False
