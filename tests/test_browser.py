"""End-to-end: the real app in headless Chromium (system /usr/bin/chromium via Playwright)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.browser import CHROMIUM, press

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs /usr/bin/chromium")]
ARTIFACTS = Path(os.environ.get("SHIFTLENS_ARTIFACTS", Path(__file__).parent / "artifacts"))


@pytest.fixture(scope="module")
def server(own_server):
    """This module's clicks save forks, run a sweep and precompute an upload: its own copy
    of the app cache, so no other module's server sees them appear."""
    return own_server


def background(loc) -> str:
    return loc.evaluate("el => getComputedStyle(el).backgroundColor")


def test_trace_browser_highlights_and_topk(server, page):
    page.goto(f"{server}/?run=demo-rl")
    toks = page.locator(".sl-tok")
    toks.first.wait_for(timeout=30_000)
    n = toks.count()
    assert n > 5
    coloured = [i for i in range(n) if background(toks.nth(i)) not in ("rgba(0, 0, 0, 0)",
                                                                       "transparent")]
    assert coloured, "no highlighted token"
    page.locator("[data-testid=divergence-strip] > div").first.wait_for()
    toks.nth(coloured[0]).click()
    page.get_by_text(f"Token {coloured[0]}:").wait_for(timeout=20_000)
    page.get_by_text("top-10").nth(1).wait_for()  # both models' lists
    page.wait_for_url(f"**pos={coloured[0]}**", timeout=10_000)
    # switch the metric through the select box
    page.locator("[data-testid=stSelectbox]").filter(has_text="Highlight by").click()
    page.get_by_role("option", name="dlogp = logp_tuned - logp_base").click()
    page.get_by_text("blue: tuned less likely", exact=False).wait_for(timeout=20_000)
    # the URL is written at the end of the script run, after the legend is drawn
    page.wait_for_url("**metric=dlogp**", timeout=20_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "trace_browser.png"), full_page=True)


def test_hostile_tokens_render_as_text(server, page, app_cache):
    tokens = pd.read_parquet(app_cache / "hostile" / "tokens.parquet")
    from tests.hostile import HOSTILE

    hits = tokens[tokens.token.isin(HOSTILE)].groupby("trace_id").token.nunique()
    tid = int(hits.idxmax())
    want = tokens[tokens.trace_id == tid].sort_values("pos").token.tolist()
    assert hits.max() >= 5, "the hostile run should sample many hostile tokens per trace"
    page.goto(f"{server}/?run=hostile&trace={tid}&thr=0")
    page.locator(".sl-tok").first.wait_for(timeout=30_000)
    spans = page.locator("[data-testid=trace-text] > .sl-tok")
    assert spans.count() == len(want)  # no stray closing tag split or swallowed a span
    got = spans.evaluate_all(
        "els => els.map(e => Array.from(e.childNodes).filter(c => c.nodeType === 3)"
        ".map(c => c.textContent).join(''))")
    assert got == want
    injected = page.locator("[data-testid=trace-text] img, [data-testid=trace-text] script")
    assert injected.count() == 0
    assert page.dialogs == []  # no alert() ran
    # layout intact: the page header and the legend still render after the trace
    assert page.get_by_text("Trace browser").count() >= 1


def test_token_search_opens_the_trace_at_the_token(server, page):
    page.goto(f"{server}/search?run=demo-rl")
    grid = page.locator("[data-testid=stDataFrame]").first
    grid.wait_for(timeout=30_000)
    page.get_by_label("js at least").fill("0.01")
    page.get_by_label("token text contains").fill("")  # any token
    page.get_by_test_id("stBaseButton-primaryFormSubmit").click()
    first = page.locator("[data-testid=glide-cell-2-0]")  # trace_id of the first hit
    page.wait_for_function(
        "() => (document.querySelector('[data-testid=glide-cell-2-0]') || {}).textContent")
    trace_id = first.text_content()
    pos = page.locator("[data-testid=glide-cell-3-0]").text_content()
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 18, box["y"] + 35 + 17)  # the first row's selection marker
    page.wait_for_url(f"**trace={trace_id}**", timeout=20_000)
    assert f"pos={pos}" in page.url
    page.locator(".sl-sel").wait_for(timeout=20_000)  # the token is selected in the trace
    assert page.locator(".sl-sel").get_attribute("data-pos") == pos


def test_overview_figure_downloads_as_png(server, page):
    page.goto(f"{server}/overview?run=demo-rl")
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    page.get_by_role("button", name="Export").first.click()
    with page.expect_download(timeout=60_000) as info:
        page.get_by_role("button", name="PNG").first.click()
    data = Path(info.value.path()).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "figure.png").write_bytes(data)


def test_live_scoring_highlights_typed_text(server, page):
    page.goto(f"{server}/live?run=demo-rl")
    toks = page.locator(".sl-tok")
    press(page, page.get_by_test_id("stBaseButton-primaryFormSubmit"), toks)
    assert toks.count() > 5
    toks.nth(3).click()
    page.get_by_text("Token 3:").wait_for(timeout=20_000)


def test_fork_explorer_compares_two_branches(server, page):
    page.goto(f"{server}/?run=demo-rl&pos=4")
    page.locator(".sl-sel").wait_for(timeout=30_000)
    page.get_by_text("Fork here (at token 4)").click()
    press(page, page.get_by_role("button", name="Fork", exact=True),
          page.get_by_text("top-1 → continued by tuned"))
    page.get_by_text("→ continued by tuned").nth(1).wait_for()  # the second branch
    page.get_by_text("forks.parquet").wait_for()


def test_cross_sampling_sweep_runs_in_the_page(server, page, app_cache):
    # Only this sweep's results can make the page show them: no stored sweep before it.
    shutil.rmtree(app_cache / "demo-rl" / "cross", ignore_errors=True)
    for f in ("cross_samples.parquet", "cross_summary.parquet"):  # an older run's single sweep
        (app_cache / "demo-rl" / f).unlink(missing_ok=True)
    page.goto(f"{server}/cross?run=demo-rl")
    page.get_by_text("No stored sweep for this run yet.").wait_for(timeout=30_000)
    page.get_by_label("eps grid (js thresholds) or budgets in %").fill("0.05")
    page.get_by_label("prompts").fill("2")
    press(page, page.get_by_test_id("stBaseButton-primaryFormSubmit"),
          page.get_by_text("Mixed traces"), timeout=120)  # shown once results are stored
    page.locator(".sl-tok").first.wait_for(timeout=30_000)
    assert page.get_by_text("Runs on CPU").count() + page.get_by_text("Runs on GPU").count() == 1


def test_upload_a_pair_queue_watch_and_open(server, page, tmp_path):
    """The whole bring-your-own path in the browser: zip the demo pair, upload both, queue
    the precompute, watch the background job finish, open the new run."""
    import shutil as sh

    from tests.conftest import DEMO

    zips = {w: sh.make_archive(str(tmp_path / f"{w}-model"), "zip", DEMO / w)
            for w in ("base", "rl")}
    page.goto(f"{server}/add")
    page.get_by_text("Add a pair").first.wait_for(timeout=30_000)
    for i in range(2):
        page.get_by_text("upload a zip / tar").nth(i).click()
    page.locator("input[type=file]").nth(1).wait_for(state="attached", timeout=20_000)
    page.locator("input[type=file]").nth(0).set_input_files(zips["base"])
    page.get_by_text("unpacked to").first.wait_for(timeout=60_000)
    page.locator("input[type=file]").nth(1).set_input_files(zips["rl"])
    page.get_by_text("unpacked to").nth(1).wait_for(timeout=60_000)
    page.get_by_label("prompts (0 = all)").fill("3")
    page.get_by_label("samples per prompt").fill("1")
    page.get_by_role("spinbutton", name="max new tokens").fill("40")
    page.get_by_label("Run name (optional)").fill("uploaded-pair")
    press(page, page.get_by_role("button", name="Validate and queue"),
          page.get_by_text("Queued 1 job(s): uploaded-pair"), timeout=120)
    # the queue also lists other jobs of this server (the sweep above): open this run's
    opened = page.locator("a[href*='run=uploaded-pair']").filter(has_text="Open")
    opened.first.wait_for(timeout=180_000)  # job done
    opened.first.click()
    page.wait_for_url("**run=uploaded-pair**", timeout=30_000)
    page.locator(".sl-tok").first.wait_for(timeout=60_000)
