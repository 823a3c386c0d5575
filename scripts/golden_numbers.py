"""Print the golden numbers of tests/test_golden.py, from the shipped demo family.

    .venv/bin/python scripts/golden_numbers.py

Builds `demo-rl` exactly as tests/test_golden.py's fixture does (the shipped config, into a
throwaway cache), computes the golden quantities with that test's own independent DuckDB
queries, and prints the literal block to paste over the one at the top of the test. Run it
only when the shipped demo family or prompt set changes on purpose (e.g. a retrained
family); a refactor that changes these numbers is a regression, not a reason to run this.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.demo.runs import demo_configs  # noqa: E402
from core.precompute.driver import precompute  # noqa: E402
from tests.test_golden import independent  # noqa: E402


def main() -> int:
    with tempfile.TemporaryDirectory() as cache:
        cfg = dataclasses.replace(demo_configs(cache)[0], cache=cache)
        run = precompute(cfg, log=lambda s: None, show_progress=False)
        n = independent(run)
        manifest = json.loads((run / "manifest.json").read_text())
    r4 = lambda x: round(x, 4)  # noqa: E731
    correct = {s: round(a * n["n_traces_by"][s]) for s, a in n["accuracy"].items()}
    print(f"N_TOKENS = {n['n_tokens']}")
    print(f"N_TRACES = {n['n_traces']}")
    print("# per sampler (sampled_from): token rows and traces")
    print(f"N_TOKENS_BY = {{'tuned': {n['n_tokens_by']['tuned']}, "
          f"'base': {n['n_tokens_by']['base']}}}".replace("'", '"'))
    print(f"N_TRACES_BY = {{'tuned': {n['n_traces_by']['tuned']}, "
          f"'base': {n['n_traces_by']['base']}}}".replace("'", '"'))
    print("# (share of tokens with js < 0.01, share with js > 0.1): pooled (\"all\") and per "
          "sampler")
    print("SHARES = {" + ", ".join(
        f'"{k}": ({r4(n["shares"][k][0])}, {r4(n["shares"][k][1])})'
        for k in ("all", "tuned", "base")) + "}")
    print(f"# mean of traces.correct per sampler ({correct['tuned']} and {correct['base']} "
          f"correct of {n['n_traces_by']['tuned']}); the manifest rounds it")
    print(f"ACCURACY = {{\"tuned\": {correct['tuned']} / {n['n_traces_by']['tuned']}, "
          f"\"base\": {correct['base']} / {n['n_traces_by']['base']}}}")
    acc = manifest["stats"]["accuracy"]
    print(f"MANIFEST_ACCURACY = {{\"tuned\": {acc['tuned']}, \"base\": {acc['base']}}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
