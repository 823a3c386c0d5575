"""Browser checks of issue 27 (a researcher's day in the browser): the defects found by
trying every page at 1280 and 1000 px, in the real app in headless Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser import CHROMIUM, READY_JS

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs /usr/bin/chromium")]


@pytest.fixture(params=[1280, 1000], ids=["1280px", "1000px"])
def page(browser, request):
    ctx = browser.new_context(viewport={"width": request.param, "height": 900},
                              accept_downloads=True)
    yield ctx.new_page()
    ctx.close()


def ready(page) -> None:
    page.wait_for_function(READY_JS, timeout=120_000)


def test_an_expanded_fold_stays_open_across_clicks(server, page):
    # js >= 0.6 is rare: the trace folds into long calm spans
    page.goto(f"{server}/?run=demo-rl&fold=1&thr=0.6")
    fold = page.locator(".sl-fold").first
    fold.wait_for(timeout=60_000)
    ready(page)
    folds = page.locator(".sl-fold").count()
    shown = set(page.locator(".sl-tok").evaluate_all("ts => ts.map(t => t.dataset.pos)"))
    fold.click()
    expect(page.locator(".sl-fold")).to_have_count(folds - 1)
    now = page.locator(".sl-tok").evaluate_all("ts => ts.map(t => t.dataset.pos)")
    pos = [p for p in now if p not in shown][3]  # a token the fold had hidden
    page.locator(f".sl-tok[data-pos='{pos}']").click()
    page.get_by_text(f"Token {pos}:").wait_for(timeout=30_000)
    ready(page)
    expect(page.locator(f".sl-tok[data-pos='{pos}']")).to_have_class("sl-tok sl-sel")
    expect(page.locator(".sl-fold")).to_have_count(folds - 1)
    # a click elsewhere (the strip's first cell) keeps the expanded fold open too
    page.get_by_test_id("divergence-strip").locator("div").first.click()
    page.get_by_text("Token 0:").wait_for(timeout=30_000)
    ready(page)
    expect(page.locator(".sl-fold")).to_have_count(folds - 1)
    expect(page.locator(f".sl-tok[data-pos='{pos}']")).to_be_visible()


def test_the_traces_path_opens_the_trace_browser(server, page):
    page.goto(f"{server}/traces?run=demo-sft")
    page.get_by_role("heading", name="Trace browser").wait_for(timeout=60_000)
    ready(page)
    expect(page.get_by_text("Page not found")).to_have_count(0)
    assert "run=demo-sft" in page.url  # the link's state came along


def test_accessible_labels_carry_no_markdown_escapes(server, page):
    page.goto(f"{server}/runs?run=demo-rl")
    box = page.get_by_label("Type the run's name to delete it")
    box.wait_for(timeout=60_000)
    ready(page)
    assert box.get_attribute("placeholder")  # the name to type, shown in the box
    labels = page.locator("[aria-label]").evaluate_all(
        "es => es.map(e => e.getAttribute('aria-label'))")
    assert labels and [x for x in labels if "\\" in x] == []


# every headline metric label (and anything inside it) wider than its box
METRIC_CUT_JS = """() => Array.from(document.querySelectorAll('[data-testid=stMetricLabel]'))
  .flatMap(l => [l, ...l.querySelectorAll('*')])
  .filter(e => e.scrollWidth > e.clientWidth + 1 && e.textContent.trim())
  .map(e => e.textContent.trim())"""


def test_the_overview_headline_labels_are_whole(server, page):
    page.goto(f"{server}/overview?run=demo-rl")
    labels = page.get_by_test_id("stMetricLabel")
    labels.first.wait_for(timeout=60_000)
    ready(page)
    texts = [t.strip() for t in labels.all_inner_texts()]
    assert "tokens with js < 0.01" in texts and "tokens with js > 0.1" in texts
    assert page.evaluate(METRIC_CUT_JS) == []


def test_the_cross_sampling_chips_all_show(server, page):
    page.goto(f"{server}/cross?run=demo-rl")
    form = page.get_by_test_id("stForm")
    form.wait_for(timeout=60_000)
    ready(page)
    for label, chips in (("Directions", ("forward", "reverse")),
                         ("Controls", ("random", "entropy"))):
        box = page.get_by_test_id("stMultiSelect").filter(has_text=label)
        for chip in chips:
            tag = box.locator(f"[data-tag][aria-label='{chip}']")
            expect(tag).to_be_visible()
            # the chip lies inside its box, not clipped off its right edge
            outer, inner = box.bounding_box(), tag.bounding_box()
            assert inner["x"] + inner["width"] <= outer["x"] + outer["width"] + 1, (label, chip)
