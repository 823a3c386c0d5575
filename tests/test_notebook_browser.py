"""The notebook trace widget in Chromium: its own front end (the app's trace component plus
the anywidget render()) on a page made by shiftlens (Trace.to_html: the widget's module, CSS
and state, with an in-page model of anywidget's front-end contract; no Jupyter server).
Clicking a token outlines it and fills the top-k panel; hostile token text stays text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser import CHROMIUM

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs /usr/bin/chromium")]


def _open(page, app_cache, tmp_path, name: str, pick=None, **kw):
    """The widget page of the run's most divergent trace (the first `pick` accepts)."""
    import shiftlens

    run = shiftlens.open(name, cache=app_cache)
    traces = [run.trace(int(t)) for t in run.traces(limit=1000).trace_id]
    trace = next(t for t in traces if pick is None or pick(t))
    path = tmp_path / f"{name}.html"
    trace.to_html(path, **kw)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    page.locator("body[data-ready='1']").wait_for(timeout=20_000)
    return trace, errors


def test_clicking_a_token_fills_the_widgets_top_k_panel(page, app_cache, tmp_path):
    trace, errors = _open(page, app_cache, tmp_path, "demo-rl")
    toks = trace.tokens
    expect(page.locator(".sl-tok")).to_have_count(len(toks))
    panel = page.get_by_test_id("topk-panel")
    expect(panel).to_contain_text("Click a token")
    for i in (4, 1):
        page.locator(f".sl-tok[data-pos='{i}']").click()
        expect(panel).to_have_attribute("data-pos", str(i))
        expect(page.locator(".sl-sel")).to_have_attribute("data-pos", str(i))
        expect(panel).to_contain_text(f"Token {i}: {toks.token.iloc[i]!r}")
        base = panel.locator("[data-model='base'] tr")
        expect(base).to_have_count(len(toks.base_ids.iloc[i]) + 1)  # + the header row
        first = repr(str(toks.base_tokens.iloc[i][0]))
        expect(base.nth(1)).to_contain_text(first)
        expect(panel.locator(".sl-topk-metrics")).to_contain_text("js ")
    page.get_by_test_id("divergence-strip").locator("div").first.click()  # the strip too
    expect(panel).to_have_attribute("data-pos", "0")
    expect(page.locator(".sl-root")).to_have_attribute("data-theme", "light")
    # a dark JupyterLab theme (its page colour variable) is followed at the next paint
    page.evaluate("() => document.body.style.setProperty('--jp-layout-color0', '#111111')")
    page.locator(".sl-tok[data-pos='2']").click()
    expect(page.locator(".sl-root")).to_have_attribute("data-theme", "dark")
    assert errors == []


def test_hostile_token_text_stays_text_in_the_widget(page, app_cache, tmp_path):
    from tests.hostile import HOSTILE

    markup = [h for h in HOSTILE if "<" in h]
    trace, errors = _open(page, app_cache, tmp_path, "hostile",
                          pick=lambda t: bool(set(t.tokens.token) & set(markup)))
    texts = page.locator(".sl-tok").all_text_contents()
    assert len(texts) == len(trace.tokens)
    shown = [t for t in texts if t in markup]
    assert shown and len(shown) == sum(t in markup for t in trace.tokens.token)  # as text
    i = next(i for i, t in enumerate(trace.tokens.token) if t in markup)
    page.locator(f".sl-tok[data-pos='{i}']").click()
    panel = page.get_by_test_id("topk-panel")
    expect(panel).to_have_attribute("data-pos", str(i))
    expect(panel).to_contain_text(repr(trace.tokens.token.iloc[i]))
    assert page.locator("#shiftlens-trace img, #shiftlens-trace script").count() == 0
    assert page.dialogs == [] and errors == []  # no alert() ran


def test_the_widget_draws_both_models_lanes_under_the_tokens(page, app_cache, tmp_path):
    """Trace.show(lanes=True) / to_html(lanes=True): the Traces page's probability lanes,
    a base and a tuned cell under every token, with the stored probabilities."""
    trace, errors = _open(page, app_cache, tmp_path, "demo-rl", lanes=True)
    toks = trace.tokens
    expect(page.locator(".sl-text.sl-lanes")).to_have_count(1)
    expect(page.locator(".sl-tok")).to_have_count(len(toks))
    expect(page.locator(".sl-lane[data-model='tuned']")).to_have_count(len(toks))
    data = trace.payload(lanes=True)
    i = 3
    p = data["lanes"]["base"]["prob"][i]
    cell = page.locator(f".sl-lane[data-model='base'][data-pos='{i}']")
    expect(cell).to_have_attribute("title", re.compile(r"^base model: p \S+ · rank \d+"))
    shown = float(re.match(r"base model: p (\S+)", cell.get_attribute("title")).group(1))
    assert shown == pytest.approx(p, rel=5e-3)  # the stored probability, to 3 digits
    assert "lanes" not in trace.payload()
    assert errors == []
