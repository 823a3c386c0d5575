"""Time the trace browser on a long trace: from navigation until every token is on screen.

    python benchmarks/render_trace.py [--tokens 4000]

Builds a synthetic run (one trace of N tokens with random metrics, written with the engine's
own storage functions), serves the app on it, and measures in headless Chromium (a) the
whole page load until all N token spans exist and (b) the trace component's own render
(DOM build) time, as reported by the browser's performance clock. Target: a 4,000-token
trace renders in under a second. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.store.schema import SCHEMA_VERSION  # noqa: E402
from core.store.storage import tokens_table, topk_table, traces_table, write_json, write_parquet  # noqa: E402
from tests.browser import CHROMIUM, FLAGS, streamlit_server  # noqa: E402


def synthetic_run(cache: Path, n: int, k: int = 10) -> None:
    rng = np.random.default_rng(0)
    js = np.where(rng.random(n) < 0.05, rng.uniform(0.1, 0.69, n), rng.uniform(0, 0.01, n))
    scores = {"offsets": np.array([0, n]), "token_id": rng.integers(3, 25, n).astype(np.int32),
              "js": js, "js_top_p": js, "js_top_p90": js, "js_top_p95": js,
              "kl_tb": js * 2, "kl_bt": js * 2,
              "entropy_base": rng.uniform(0, 2, n), "entropy_tuned": rng.uniform(0, 2, n),
              "logp_base": -rng.uniform(0, 3, n), "logp_tuned": -rng.uniform(0, 3, n),
              "dlogp": rng.normal(0, 1, n), "rank_base": rng.integers(1, 6, n),
              "rank_tuned": rng.integers(1, 3, n), "top1_agree": rng.random(n) < 0.9,
              "base_topk_ids": rng.integers(0, 25, (n, k)),
              "tuned_topk_ids": rng.integers(0, 25, (n, k)),
              "base_topk_probs": rng.dirichlet(np.ones(k), n),
              "tuned_topk_probs": rng.dirichlet(np.ones(k), n),
              "tuned_top1_rank_base": rng.integers(1, 4, n), "tuned_top1_prob_base": rng.random(n)}
    words = ["the", " answer", " is", "\n", " 42", ";", " step", "\t", " so", " x"]
    strings = [words[i % len(words)] for i in range(n)]
    run = cache / "long"
    run.mkdir(parents=True)
    tid = np.zeros(1, dtype=np.int64)
    write_parquet(tokens_table(scores, tid, strings), run / "tokens.parquet")
    write_parquet(topk_table(scores, tid, lambda ids: [str(i) for i in ids]), run / "topk.parquet")
    write_parquet(traces_table([{"trace_id": 0, "prompt_id": "p0", "prompt": "a long one",
                                 "response": "".join(strings), "reference": "42",
                                 "verifier": "exact", "extracted_answer": "42", "correct": True,
                                 "length": n, "sampled_from": "tuned", "sample_index": 0,
                                 "seed": 0, "finished": True, "difficulty": None}]),
                  run / "traces.parquet")
    write_json({"name": "long", "schema_version": SCHEMA_VERSION, "created": "synthetic",
                "kind": "synthetic", "config": {}, "models": {}, "prompt_set": {},
                "stats": {"n_traces": 1, "n_tokens": n}}, run / "manifest.json")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=4000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    from playwright.sync_api import sync_playwright

    cache = Path(tempfile.mkdtemp()) / "cache"
    synthetic_run(cache, a.tokens)
    loads, renders = [], []
    with streamlit_server(cache) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        for _ in range(a.repeat):
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            t = time.perf_counter()
            page.goto(f"{url}/?run=long&trace=0")
            # locators pierce the component's shadow root (document.querySelectorAll does not)
            page.locator(".sl-tok").nth(a.tokens - 1).wait_for(state="attached",
                                                               timeout=120_000)
            loads.append(time.perf_counter() - t)
            # the component's own DOM build, measured inside the browser (trace_view.js)
            renders.append(float(page.locator(".sl-root").get_attribute("data-render-ms"))
                           / 1000)
            page.close()
        browser.close()
    print(json.dumps({"tokens": a.tokens, "runs": a.repeat}))
    print(f"first load (server start excluded, page + data + render): "
          f"best {min(loads):.2f} s, median {sorted(loads)[len(loads) // 2]:.2f} s")
    print(f"trace component render of {a.tokens} tokens (DOM build, in the browser): "
          f"best {min(renders):.3f} s, worst {max(renders):.3f} s   (target < 1 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
