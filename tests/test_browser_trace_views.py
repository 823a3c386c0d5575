"""Browser checks of the trace page's views of issue 27 at 1280 and 1000 px, in the real app
in headless Chromium: the probability and rank lanes under the tokens, and the keyboard
(j / k over the highlighted tokens, Enter for the top-k, n / p for the next / previous
trace)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pandas as pd
import pytest
from playwright.sync_api import expect

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
    toks = pd.read_parquet(app_cache / "demo-rl" / "tokens.parquet")
    longest = int(toks.groupby("trace_id").size().idxmax())  # long enough to wrap
    page.goto(f"{server}/?run=demo-rl&lanes=1&trace={longest}")
    page.locator(".sl-lane").first.wait_for(timeout=60_000)
    ready(page)
    cols = page.locator(".sl-col").evaluate_all(COLUMNS_JS)
    tid = int(parse_qs(urlparse(page.url).query)["trace"][0])
    assert tid == longest
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
    # the URL follows the rerun that drew the lanes (seen arriving after them under load)
    expect(page).to_have_url(re.compile(r"[?&]lanes=1(&|$)"), timeout=30_000)


def _url(page) -> dict:
    return {k: v[0] for k, v in parse_qs(urlparse(page.url).query).items()}


def test_the_keyboard_walks_highlighted_tokens_opens_top_k_and_turns_traces(server, page,
                                                                             app_cache):
    from core import api

    # the first trace in the table's order (not the last) with three tokens above 0.005
    order = api.trace_list(api.open_runs([app_cache / "demo-rl"]), "demo-rl",
                           sampled_from="tuned", limit=500).trace_id.tolist()
    every = pd.read_parquet(app_cache / "demo-rl" / "tokens.parquet")
    lit_of = every[every.js >= 0.005].groupby("trace_id").size()
    tid = next(t for t in order[:-1] if lit_of.get(t, 0) >= 3)
    page.goto(f"{server}/?run=demo-rl&thr=0.005&trace={tid}")
    page.locator(".sl-tok").first.wait_for(timeout=60_000)
    ready(page)
    assert int(_url(page)["trace"]) == tid
    assert "pos" not in _url(page)
    toks = every[every.trace_id == tid].sort_values("pos")
    lit = toks.pos[toks.js >= 0.005].tolist()  # the tokens above the threshold
    cursor = page.locator(".sl-cur")
    page.keyboard.press("j")
    expect(cursor).to_have_attribute("data-pos", str(lit[0]))
    page.keyboard.press("j")
    page.keyboard.press("j")
    expect(cursor).to_have_attribute("data-pos", str(lit[2]))
    page.keyboard.press("k")
    expect(cursor).to_have_attribute("data-pos", str(lit[1]))
    assert "pos" not in _url(page)  # moving the cursor reruns nothing
    page.keyboard.press("Enter")  # the cursor's top-k, as a click would open it
    page.get_by_text(f"Token {lit[1]}:").wait_for(timeout=30_000)
    page.wait_for_url(re.compile(rf"[?&]pos={lit[1]}(&|$)"), timeout=30_000)
    ready(page)
    expect(page.locator(f".sl-tok[data-pos='{lit[1]}']")).to_have_class("sl-tok sl-sel")
    # typing in a text box is not a key for the trace view
    page.get_by_label("Search prompts").press("n")
    expect(page.get_by_label("Search prompts")).to_have_value("n")
    page.get_by_label("Search prompts").fill("")
    page.evaluate("document.activeElement.blur()")
    ready(page)
    assert int(_url(page)["trace"]) == tid
    after = order[order.index(tid) + 1]
    old = page.locator(".sl-tok").first.element_handle()  # inside the view's shadow root
    page.keyboard.press("n")  # the next trace in the table's order
    page.get_by_role("heading", name=f"Trace {after}", exact=True).wait_for(timeout=30_000)
    page.wait_for_url(re.compile(rf"[?&]trace={after}(&|$)"), timeout=30_000)
    # the view draws the new trace after the script run ends: a key pressed before that
    # went to the old view (under load the heading came seconds before the tokens)
    page.wait_for_function("el => !el.isConnected", arg=old, timeout=30_000)
    page.locator(".sl-tok").first.wait_for(timeout=30_000)
    ready(page)
    assert "pos" not in _url(page)  # a new trace opens with no token selected
    page.keyboard.press("p")
    page.get_by_role("heading", name=f"Trace {tid}", exact=True).wait_for(timeout=30_000)
    page.wait_for_url(re.compile(rf"[?&]trace={tid}(&|$)"), timeout=30_000)


def test_both_samplers_of_a_prompt_side_by_side_with_where_they_part(server, page):
    page.goto(f"{server}/?run=demo-rl&pair=1")
    said = page.get_by_text(re.compile(r"^They part at token \d+:"))
    said.wait_for(timeout=60_000)
    ready(page)
    part = int(re.search(r"token (\d+):", said.inner_text()).group(1))
    tid = int(_url(page)["trace"])
    heads = page.get_by_text(re.compile(r"-sampled · trace \d+ · "))
    expect(heads).to_have_count(2)
    marks = page.locator(".sl-part")  # the parting token, outlined in both traces
    expect(marks).to_have_count(2)
    left, right = heads.nth(0), heads.nth(1)
    assert left.inner_text().startswith("base-sampled") and \
        right.inner_text().startswith(f"tuned-sampled · trace {tid} · ")
    for h in (left, right):
        assert re.search(r" · (correct|incorrect|unknown) · \d+ tokens$", h.inner_text())
    assert {m.get_attribute("data-pos") for m in marks.all()} == {str(part)}
    # both headings and both marks measured in one frame: side by side, a mark in each column
    (a, b), (ma, mb) = (loc.evaluate_all(RECTS_JS) for loc in (heads, marks))
    assert abs(a["top"] - b["top"]) < 2 and a["right"] <= b["left"]
    assert ma["left"] < b["left"] <= mb["left"]


RECTS_JS = """es => es.map(e => { const r = e.getBoundingClientRect();
                                  return {top: r.top, left: r.left, right: r.right}; })"""


def test_the_theme_switch_redraws_the_trace_view_at_once(server, page):
    """Switching to dark turns the trace view dark in the same rerun (its payload carries the
    session's theme), not only at the view's next draw; and back to light."""
    page.goto(f"{server}/?run=demo-rl")
    root = page.locator(".sl-root").first
    root.wait_for(timeout=60_000)
    ready(page)
    expect(root).to_have_attribute("data-theme", "light")
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_text(re.compile(r"Dark$")).click()
    expect(page.locator(".sl-root").first).to_have_attribute("data-theme", "dark",
                                                             timeout=60_000)
    sidebar.get_by_text(re.compile(r"Light$")).click()
    expect(page.locator(".sl-root").first).to_have_attribute("data-theme", "light",
                                                             timeout=60_000)
