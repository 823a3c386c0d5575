"""Token search beyond one page (core/queries/search.py): pages, counts, regular expressions
(RE2: refused in one line when invalid, linear on hostile patterns), n-grams and the CSV /
Parquet export of every hit, against pandas over the same synthetic runs, lazy and
materialised (the `env` fixture of tests/test_queries.py)."""

from __future__ import annotations

import re

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.errors import SearchError
from core.queries.search import EXPORT_COLUMNS, parse_ngram
from tests.test_queries import Q, env  # noqa: F401 - env is the shared fixture

pytestmark = pytest.mark.unit

KEY = ["run", "trace_id", "pos"]


def _ordered(df: pd.DataFrame) -> pd.DataFrame:
    """pandas' token_search order: js descending (NULLs last), then run, trace_id, pos."""
    return df.sort_values(["js", *KEY], ascending=[False, True, True, True],
                          na_position="last")


def test_pages_tile_the_whole_result(env):  # noqa: F811
    con, ref = env
    t = _ordered(ref["tok"][ref["tok"].js >= 0.05])
    want = t[KEY].values.tolist()
    kw = dict(js_min=0.05)
    assert Q.token_search_count(con, **kw) == len(want) > 300
    pages = [Q.token_search(con, limit=100, offset=o, **kw) for o in range(0, len(want), 100)]
    got = [row for p in pages for row in p[KEY].values.tolist()]
    assert got == want
    assert Q.token_search(con, limit=100, offset=len(want), **kw).empty
    with pytest.raises(SearchError, match="offset"):
        Q.token_search(con, offset=-1, **kw)
    # no condition but js (the materialised order-index bound) on a later page
    every = _ordered(ref["tok"])[KEY].values.tolist()
    assert Q.token_search(con, limit=50, offset=250)[KEY].values.tolist() == every[250:300]
    assert Q.token_search_count(con) == len(every)


def test_regex_matches_like_pythons_re_on_these_patterns(env):  # noqa: F811
    """Python's re where it agrees with RE2 (its '$' also matches before a final newline:
    the empty-token pattern is checked by equality)."""
    con, ref = env
    t = ref["tok"]
    for pat in [r"^ \d+$", r"(?i)^the$", r"^$", r"\n", r"[+=]"]:
        hit = (t.token == "") if pat == "^$" else t.token.map(
            lambda s, p=pat: re.search(p, s) is not None)
        m = _ordered(t[hit])
        got = Q.token_search(con, regex=pat, limit=10_000)
        assert len(m) > 0, pat
        assert got[KEY].values.tolist() == m[KEY].values.tolist(), pat
        assert Q.token_search_count(con, regex=pat) == len(m), pat


def test_a_hostile_pattern_runs_in_linear_time_and_matches_correctly(env):  # noqa: F811
    """(a+)+$ and nested stars backtrack exponentially in a backtracking engine; RE2
    answers; the result is checked, not the time (benchmarks/query_latency.py times it)."""
    con, ref = env
    for pat in [r"(\d+)+$", r"((( *)*)*)*x"]:
        t = ref["tok"]
        m = t[t.token.map(lambda s, p=pat: re.search(p, s) is not None)]
        assert Q.token_search_count(con, regex=pat) == len(m)


@pytest.mark.parametrize("pat,why", [("(a", "missing )"), ("a(?=b)", "invalid perl operator"),
                                     (r"(.)\1", "invalid escape"),
                                     ("(a{1000}){1000}", "repetition"),
                                     ("x" * 501, "longer than 500")])
def test_an_invalid_regex_is_one_line_before_any_query(env, pat, why):  # noqa: F811
    con, _ = env
    with pytest.raises(SearchError) as e:
        Q.token_search(con, regex=pat)
    assert why in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(SearchError):
        Q.token_search_count(con, regex=pat)


def test_ngrams_are_consecutive_tokens_of_one_trace(env):  # noqa: F811
    con, ref = env
    t = ref["tok"].sort_values(KEY).reset_index(drop=True)
    for gram in [("the", " answer"), (" 1", "+", " 2"), ("\n",), ("", "The")]:
        n = len(gram)
        ok = pd.Series(True, index=t.index)
        for k, tok in enumerate(gram):  # row i starts it when rows i..i+n-1 of one trace match
            nxt = t.shift(-k)
            ok &= (nxt.token == tok) & (nxt.run == t.run) & (nxt.trace_id == t.trace_id) \
                & (nxt.pos == t.pos + k)
        m = _ordered(t[ok])
        got = Q.token_search(con, ngram=gram, limit=10_000)
        assert got[KEY].values.tolist() == m[KEY].values.tolist(), gram
        assert Q.token_search_count(con, ngram=gram) == len(m)
        if n > 1:
            assert len(m) > 0, gram
            assert all((r.token + r.after).startswith("".join(gram)) for r in got.itertuples())
    # combined with a js bound on the first token and a run filter
    got = Q.token_search(con, ngram=("the", " answer"), js_min=0.05, runs=["rl"])
    assert (got.js >= 0.05).all() and set(got.run) <= {"rl"}


def test_ngram_notation():
    assert parse_ngram("the| answer") == ("the", " answer")
    assert parse_ngram(r"a\|b|\n|\t|\\") == ("a|b", "\n", "\t", "\\")
    for bad, why in [("", "empty"), (r"a\q", "unknown escape"), ("|" * 8, "9 tokens")]:
        with pytest.raises(SearchError, match=why):
            parse_ngram(bad)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_writes_every_hit_in_order(env, tmp_path, fmt):  # noqa: F811
    con, ref = env
    kw = dict(js_min=0.02, regex=r"^ ")
    path = tmp_path / f"hits.{fmt}"
    n = Q.token_search_export(con, path, batch_rows=64, **kw)
    got = pq.read_table(path).to_pandas() if fmt == "parquet" else pd.read_csv(
        path, keep_default_na=False)
    t = ref["tok"]
    m = _ordered(t[(t.js >= 0.02) & t.token.str.startswith(" ")])
    assert n == len(got) == len(m) > 64 and list(got.columns) == list(EXPORT_COLUMNS)
    assert got[KEY].values.tolist() == m[KEY].values.tolist()
    assert got.token.tolist() == m.token.tolist()
    data = Q.token_search_bytes(con, fmt, **kw)
    if fmt == "csv":
        assert data == path.read_bytes()
    else:  # row groups follow the batches: compare the rows
        assert pq.read_table(pa.BufferReader(data)).equals(pq.read_table(path))


def test_export_refuses_an_unknown_format_and_writes_nothing(env, tmp_path):  # noqa: F811
    con, _ = env
    with pytest.raises(SearchError, match="export format"):
        Q.token_search_export(con, tmp_path / "hits.xlsx")
    with pytest.raises(SearchError, match="invalid regular expression"):
        Q.token_search_export(con, tmp_path / "hits.csv", regex="(")
    assert not list(tmp_path.iterdir())


def test_cli_prints_a_page_and_exports_every_hit(tmp_path, capsys):
    """`python -m core search`: the same function as the app; a bad regex is one line and
    writes nothing."""
    from core.cli.main import main as cli_main
    from core.demo.synthetic import write_synthetic_run

    cache = tmp_path / "cache"
    write_synthetic_run(cache / "syn", n_tokens=3_000, mean_length=60, chunk_rows=3_000,
                        name="syn")
    base = ["search", "--cache", str(cache), "--js-min", "0.05"]
    assert cli_main([*base, "--limit", "5", "--offset", "5"]) == 0
    out = capsys.readouterr().out
    con = Q.open_runs([cache / "syn"], names=["syn"])
    total = Q.token_search_count(con, js_min=0.05)
    assert f"rows 6-10 of {total}" in out
    out_file = tmp_path / "hits.parquet"
    assert cli_main([*base, "--out", str(out_file)]) == 0
    got = pq.read_table(out_file).to_pandas()
    want = Q.token_search(con, js_min=0.05, limit=total)
    assert len(got) == total and got[KEY].values.tolist() == want[KEY].values.tolist()
    assert cli_main([*base, "--regex", "(?<=x)", "--out", str(tmp_path / "bad.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid regular expression" in err
    assert not (tmp_path / "bad.csv").exists()
