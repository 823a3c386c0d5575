"""Whether a hostile regular expression can hang token search: the time of
core.queries.search.token_search_count with patterns that make a backtracking engine
(Python's re) take exponential time, on a synthetic run whose tokens include long runs of
one character, against the same count with a plain pattern in the same process.

    python benchmarks/regex_search.py [--tokens 200000] [--long 5000]

DuckDB's regexp_matches is RE2 (an automaton: linear in the text), so the hostile patterns
should cost about what the plain one does. For scale, the script also times Python's re on
ONE short string with the first pattern (n = 24 characters; each extra character doubles
it). A figure, not a test: tests/test_token_search.py checks the results.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from core import queries as Q
from core.demo.synthetic import write_synthetic_run
from core.store.schema import TOKENS_FILE

HOSTILE = [r"(a+)+$", r"((a*)*)*b", r"(a|aa)+$", r"(.*a){12}x"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=200_000)
    ap.add_argument("--long", type=int, default=5_000, help="characters of the long tokens")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        run = write_synthetic_run(Path(d) / "syn", n_tokens=a.tokens, mean_length=200,
                                  chunk_rows=a.tokens, name="syn")
        for f in Q.table_files(run, TOKENS_FILE):  # every 100th token: 'aaaa...a!'
            t = pq.read_table(f)
            tok = t["token"].to_pylist()
            for i in range(0, len(tok), 100):
                tok[i] = "a" * a.long + "!"
            t = t.set_column(t.schema.get_field_index("token"), "token",
                             pa.array(tok, type=t.schema.field("token").type))
            pq.write_table(t, f)
        con = Q.open_runs([run], names=["syn"], materialize=False)

        def timed(pat):
            t0 = time.perf_counter()
            n = Q.token_search_count(con, regex=pat)
            return n, time.perf_counter() - t0

        timed("^a")  # warm: file reads, plan cache
        n0, base = timed(r"^a+!$")
        print(f"{a.tokens:,} tokens, every 100th a run of {a.long:,} 'a's")
        print(f"plain   {'^a+!$':14s} {base * 1000:8.1f} ms  ({n0:,} hits)")
        for pat in HOSTILE:
            n, s = timed(pat)
            print(f"hostile {pat:14s} {s * 1000:8.1f} ms  ({n:,} hits)  {s / base:5.2f}x plain")
    t0 = time.perf_counter()
    re.search(HOSTILE[0].replace("$", "!"), "a" * 24)  # no match: backtracks ~2^24 ways
    print(f"python re, {HOSTILE[0]!r} on 24 'a's (no match): "
          f"{(time.perf_counter() - t0) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
