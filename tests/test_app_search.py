"""The Token search page (app/views/search.py) through AppTest: a link's filters and page
restore the search, pages go past the first, a submitted search writes its filters into
the URL, an invalid regular expression or n-gram is one line of text, and the downloads
carry every hit."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from core import api

pytestmark = pytest.mark.model

PAGE = "views/search.py"


def _open(app, **params):
    at = app()
    for k, v in params.items():
        at.query_params[k] = str(v)
    at.switch_page(PAGE)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _con(app_cache):
    runs = [r for r in api.list_runs(app_cache) if not r.damaged]
    return api.open_runs([r.path for r in runs], names=[r.name for r in runs])


def _keys(df):
    return df[["run", "trace_id", "pos"]].values.tolist()


def test_a_link_restores_filters_and_page(app, app_cache):
    at = _open(app, run="demo-rl", js="0", re="^ [0-9]+$", rel="0.1,0.9", page=2)
    assert at.number_input(key="s_js").value == pytest.approx(0.0)
    assert at.text_input(key="s_re").value == "^ [0-9]+$"
    assert at.slider(key="s_rel").value == pytest.approx((0.1, 0.9))
    assert at.number_input(key="s_page").value == 2
    kw = dict(js_min=0.0, regex="^ [0-9]+$", rel_pos_range=(0.1, 0.9), runs=["demo-rl"])
    con = _con(app_cache)
    n = api.token_search_count(con, **kw)
    assert n > 100, "the test needs a second page"
    want = api.token_search(con, limit=100, offset=100, **kw)
    got = at.dataframe[0].value
    assert _keys(got) == _keys(want) and all(t.strip("'").startswith(" ")
                                             and t.strip("' ").isdigit() for t in got["token"])
    assert any(f"Tokens 101–{min(n, 200)} of {n:,}" in c.value for c in at.caption)
    assert at.query_params["page"] == "2" and at.query_params["re"] == "^ [0-9]+$"


def test_paging_past_the_first_pages(app, app_cache):
    at = _open(app, run="demo-rl", js="0")
    con = _con(app_cache)
    n = api.token_search_count(con, runs=["demo-rl"])
    last = -(-n // 100)
    assert last >= 3, "the test needs three pages"
    at.number_input(key="s_page").set_value(last).run()
    assert not at.exception
    assert at.query_params["page"] == str(last)
    want = api.token_search(con, limit=100, offset=(last - 1) * 100, runs=["demo-rl"])
    assert _keys(at.dataframe[0].value) == _keys(want) and len(want) == n - (last - 1) * 100


def test_a_submitted_search_goes_into_the_url_and_back_to_page_one(app):
    at = _open(app, run="demo-rl", js="0", page=3)
    at.text_input(key="s_ngram").input(" .| Then")
    at.number_input(key="s_js").set_value(0.0)
    at.button[0].click().run()  # the form's Search button
    assert not at.exception, [e.value for e in at.exception]
    assert at.query_params["ngram"] == " .| Then" and "page" not in at.query_params
    assert at.query_params["js"] == "0.0"  # not the default (0.05): kept in the link
    got = at.dataframe[0].value
    assert len(got) > 0 and (got["token"] == repr(" .")).all()
    assert all(a.startswith(" Then") for a in got["after"])


@pytest.mark.parametrize("params,why", [({"re": "(?<=a)b"}, "invalid regular expression"),
                                        ({"ngram": "a\\qb"}, "unknown escape")])
def test_a_bad_pattern_is_one_line_and_no_table(app, params, why):
    at = _open(app, run="demo-rl", **params)
    assert len(at.error) == 1 and why in at.error[0].value
    assert "\n" not in at.error[0].value and not at.dataframe


def test_the_downloads_hold_every_hit(app, app_cache):
    at = _open(app, run="demo-rl", js="0.02")
    con = _con(app_cache)
    kw = dict(js_min=0.02, runs=["demo-rl"])
    n = api.token_search_count(con, **kw)
    labels = [b.label for b in at.get("download_button")]
    assert f"All {n:,} hits as CSV" in labels and f"All {n:,} hits as Parquet" in labels
    data = api.token_search_bytes(con, "csv", **kw)  # what the button's deferred data calls
    df = pd.read_csv(io.BytesIO(data), keep_default_na=False)
    assert len(df) == n and _keys(df) == _keys(api.token_search(con, limit=n, **kw))
