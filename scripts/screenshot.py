"""Refresh the README screenshots from the running app on the demo runs.

    .venv/bin/python scripts/screenshot.py      (needs /usr/bin/chromium and cache/demo-*)
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.paths import default_cache  # noqa: E402
from tests.browser import CHROMIUM, FLAGS, streamlit_server  # noqa: E402


def main() -> int:
    from playwright.sync_api import sync_playwright

    out = ROOT / "assets" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    with streamlit_server(default_cache()) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1050})
        page.goto(f"{url}/?run=demo-rl")
        page.locator(".sl-tok").first.wait_for(timeout=60_000)
        page.locator(".sl-tok").nth(_most_divergent(page)).click()
        page.get_by_text("tuned model", exact=False).first.wait_for(timeout=30_000)
        page.screenshot(path=str(out / "trace-browser.png"), full_page=True)
        page.goto(f"{url}/overview?run=demo-rl")
        page.locator(".js-plotly-plot").nth(1).wait_for(timeout=60_000)
        page.screenshot(path=str(out / "overview.png"))
        browser.close()
    print(f"wrote {out}")
    return 0


def _most_divergent(page) -> int:
    alphas = page.locator(".sl-tok").evaluate_all(
        "els => els.map(e => parseFloat((getComputedStyle(e).backgroundColor.match(/[\\d.]+\\)$/)"
        " || ['0'])[0]))")
    return max(range(len(alphas)), key=lambda i: alphas[i])


if __name__ == "__main__":
    sys.exit(main())
