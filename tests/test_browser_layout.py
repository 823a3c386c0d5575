"""Layouts that hold at 1,000 px: no button label cut, figure and axis titles inside their
plots (the Runs compare view too), exports named after the run, and faint token highlights
still visible in the dark theme. The real app in headless Chromium at a 1000x800 viewport."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.figures.colours import composite, contrast, parse_rgba
from tests.browser import CHROMIUM, READY_JS, press, streamlit_server

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs /usr/bin/chromium")]
VIEWPORT = {"width": 1000, "height": 800}

# every visible button, toggle or widget label whose text (or an element inside it) is
# wider than its box
CLIPPED_JS = """() => Array.from(document.querySelectorAll(
    'button, [data-testid=stCheckbox], [data-testid=stWidgetLabel]'))
  .filter(b => b.offsetParent !== null && b.textContent.trim())
  .flatMap(b => [b, ...b.querySelectorAll('*')])
  .filter(e => e.scrollWidth > e.clientWidth + 1 && e.textContent.trim())
  .map(e => e.textContent.trim().slice(0, 60))"""

# per plot: text of titles, axis titles, facet titles and legend entries that reach outside
# the plot's own SVG box
OUTSIDE_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).flatMap(p => {
  const box = p.querySelector('.main-svg').getBoundingClientRect();
  return Array.from(p.querySelectorAll(
      '.gtitle, [class$=title], .annotation-text, .legendtext'))
    .filter(t => t.textContent.trim())
    .map(t => [t.textContent.slice(0, 50), t.getBoundingClientRect()])
    .filter(([s, r]) => r.width > 0 && (r.left < box.left - 1 || r.right > box.right + 1
                                        || r.top < box.top - 1 || r.bottom > box.bottom + 1))
    .map(([s, r]) => s);
})"""


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    yield ctx.new_page()
    ctx.close()


def ready(page) -> None:
    page.wait_for_function(READY_JS, timeout=120_000)


def plots_drawn(page, n: int) -> None:
    """Until at least n Plotly charts have drawn their SVG."""
    page.wait_for_function(
        f"() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= {n}",
        timeout=120_000)


@pytest.mark.parametrize("path, last", [
    ("/?run=demo-rl", "button:has-text('next divergent')"),
    ("/overview?run=demo-rl", ".js-plotly-plot"),
    ("/runs", ".js-plotly-plot"),
    ("/search?run=demo-rl", "[data-testid=stDataFrame]"),
    ("/cross?run=demo-rl", "[data-testid=stBaseButton-primaryFormSubmit]"),
    ("/add", "button:has-text('Validate and queue')")])
def test_no_button_label_is_cut(server, page, path, last):
    page.goto(server + path)
    page.locator(last).first.wait_for(timeout=120_000)  # the page has drawn its content
    ready(page)
    assert page.locator("button:visible").count() > 0
    assert page.evaluate(CLIPPED_JS) == []


def test_live_scoring_buttons_are_not_cut(server, page):
    page.goto(f"{server}/live?run=demo-rl")
    press(page, page.get_by_test_id("stBaseButton-primaryFormSubmit"), page.locator(".sl-tok"))
    ready(page)
    page.get_by_role("button", name="next divergent ▶").wait_for()
    assert page.evaluate(CLIPPED_JS) == []


def test_runs_compare_view_keeps_titles_inside_the_plots(server, page):
    page.goto(f"{server}/runs")
    ready(page)
    plots_drawn(page, 12)  # both columns of the first figures at least
    n = page.locator(".js-plotly-plot").count()
    assert n >= 12 and n % 2 == 0
    widths = page.locator(".js-plotly-plot .main-svg").evaluate_all(
        "els => els.map(e => e.getBoundingClientRect().width)")
    assert max(widths) < 400  # side by side: the narrow case this test is about
    assert page.evaluate(OUTSIDE_JS) == []


def test_overview_keeps_titles_inside_the_plots(server, page):
    page.goto(f"{server}/overview?run=demo-rl")
    ready(page)
    plots_drawn(page, 8)
    assert page.evaluate(OUTSIDE_JS) == []


def test_a_figure_downloads_under_the_runs_name(server, page):
    page.goto(f"{server}/overview?run=demo-rl")
    ready(page)
    page.get_by_role("button", name="Export").first.click()
    with page.expect_download(timeout=60_000) as info:
        page.get_by_role("button", name="CSV").first.click()
    assert info.value.suggested_filename == "demo-rl_js_hist.csv"


# ----------------------------------------------------------------------------- dark theme


@pytest.fixture(scope="module")
def dark_server(app_cache):
    with streamlit_server(app_cache, env={"STREAMLIT_THEME_BASE": "dark"}) as url:
        yield url


def _rgb(css: str):
    return parse_rgba(css)


def test_faint_highlights_stay_visible_in_the_dark_theme(dark_server, page):
    page.goto(f"{dark_server}/?run=demo-rl&thr=0")
    toks = page.locator(".sl-tok")
    toks.first.wait_for(timeout=60_000)
    ready(page)
    assert page.locator(".sl-root").get_attribute("data-theme") == "dark"
    bg = _rgb(page.locator("[data-testid=stApp]").evaluate(
        "e => getComputedStyle(e).backgroundColor"))[:3]
    assert max(bg) < 60  # a dark page
    styles = toks.evaluate_all("els => els.map(e => [getComputedStyle(e).backgroundColor, "
                               "getComputedStyle(e).color])")
    shown = [(composite(b, bg), _rgb(c)[:3]) for b, c in styles
             if (_rgb(b) or (0, 0, 0, 0))[3] > 0]
    assert len(shown) >= 5
    faintest = min(contrast(seen, bg) for seen, _ in shown)
    assert faintest >= 1.3  # a red at alpha 0.08 here was 1.05:1: invisible
    assert min(contrast(seen, text) for seen, text in shown) >= 3.5


# per plot with a legend: the facet (subplot) titles whose box meets the legend's; and how
# many plots had both (so an empty answer is not a page without them)
LEGEND_HITS_JS = """() => { let checked = 0; const hits = [];
  for (const p of document.querySelectorAll('.js-plotly-plot')) {
    const leg = p.querySelector('.legend');
    const anns = (p.layout && p.layout.annotations) || [];
    const facets = anns.map((a, i) => [a, i]).filter(([a]) => a.yref === 'paper'
        && a.yanchor === 'bottom' && a.y >= 0.99);
    if (!leg || !facets.length) continue;
    checked += 1;
    const l = leg.getBoundingClientRect();
    for (const [a, i] of facets) {
      const el = p.querySelector(`.annotation[data-index="${i}"]`);
      if (!el) continue;
      const r = el.getBoundingClientRect();
      if (r.left < l.right && l.left < r.right && r.top < l.bottom && l.top < r.bottom)
        hits.push(a.text.slice(0, 40));
    }
  }
  return [checked, hits]; }"""


@pytest.mark.parametrize("width", [1000, 1280])
def test_the_contrast_legend_clears_its_subplot_titles(server, browser, width):
    """The overview's contrast (cumulative share beside the two shares) at 1,000 px: its
    facet titles wrap to two lines and ran into the legend above them."""
    ctx = browser.new_context(viewport={"width": width, "height": 900})
    try:
        pg = ctx.new_page()
        pg.goto(f"{server}/overview?run=demo-rl")
        ready(pg)
        plots_drawn(pg, 8)
        pg.get_by_text("cumulative share").first.wait_for(timeout=120_000)
        checked, hits = pg.evaluate(LEGEND_HITS_JS)
        assert checked >= 1 and hits == []
    finally:
        ctx.close()
