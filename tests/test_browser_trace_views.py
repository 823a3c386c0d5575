"""Browser checks of the trace page's views of issue 27 at 1280 and 1000 px, in the real app
in headless Chromium: the probability and rank lanes under the tokens."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pandas as pd
import pytest

from tests.browser import CHROMIUM, READY_JS

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs /usr/bin/chromium")]


@pytest.fixture(params=[1280, 1000], ids=["1280px", "1000px"])
def page(browser, request):
    ctx = browser.new_context(viewport={"width": request.param, "height": 900})
    yield ctx.new_page()
    ctx.close()


def ready(page) -> None:
    page.wait_for_function(READY_JS, timeout=120_000)


# per token column: its token's box and both lane cells' boxes, their text and model
COLUMNS_JS = """cols => cols.map(c => {
  const box = e => { const r = e.getBoundingClientRect();
                     return [r.left, r.top, r.width, r.height]; };
  const text = c.closest('.sl-text').getBoundingClientRect();
  return {pos: +c.dataset.pos, tok: box(c.querySelector('.sl-tok')),
          lanes: Array.from(c.querySelectorAll('.sl-lane')).map(l => [l.dataset.model, box(l),
                                                                      l.textContent]),
          inside: text.left - 1 <= c.getBoundingClientRect().left
                  && c.getBoundingClientRect().right <= text.right + 1};
})"""


def test_the_lanes_sit_under_their_tokens(server, page, app_cache):
    page.goto(f"{server}/?run=demo-rl&lanes=1")
    page.locator(".sl-lane").first.wait_for(timeout=60_000)
    ready(page)
    cols = page.locator(".sl-col").evaluate_all(COLUMNS_JS)
    tid = int(parse_qs(urlparse(page.url).query)["trace"][0])
    toks = pd.read_parquet(app_cache / "demo-rl" / "tokens.parquet")
    toks = toks[toks.trace_id == tid].sort_values("pos")
    assert [c["pos"] for c in cols] == list(range(len(toks)))  # no fold: every token
    rows = set()
    for c in cols:
        x, y, w, h = c["tok"]
        assert c["inside"], c  # nothing runs off the text's right edge
        assert [m for m, _, _ in c["lanes"]] == ["base", "tuned"]
        (_, b, rank_b), (_, t, rank_t) = c["lanes"]
        for lane in (b, t):  # the same column as the token, below it
            assert abs(lane[0] - x) < 1 and abs(lane[2] - w) < 1, c
        assert b[1] >= y + h - 1 and t[1] >= b[1] + b[3] - 1, c
        want = toks.iloc[c["pos"]]
        for got, who in ((rank_b, "base"), (rank_t, "tuned")):
            r = int(want[f"rank_{who}"])
            assert got == (str(r) if r <= 99 else "99+"), (c["pos"], who)
        rows.add(round(y))
    assert len(rows) > 1  # the columns wrap onto several lines, lanes and all


def test_the_lanes_toggle_is_in_the_url(server, page):
    page.goto(f"{server}/?run=demo-rl")
    page.locator(".sl-tok").first.wait_for(timeout=60_000)
    ready(page)
    assert page.locator(".sl-lane").count() == 0
    page.get_by_text("Probability lanes").click()
    page.locator(".sl-lane").first.wait_for(timeout=60_000)
    ready(page)
    assert parse_qs(urlparse(page.url).query).get("lanes") == ["1"]
