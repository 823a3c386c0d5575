"""What the demo's RL-vs-SFT contrast shows: the numbers the README's "What the demo shows"
quotes, straight from the demo runs' Parquet files (DuckDB SQL, not the query layer).

    .venv/bin/python benchmarks/demo_contrast.py [--cache cache]

Per run and sampler: tokens; share with js < 0.01 and js > 0.1; mean js; the share of total
js carried by the top 1% of tokens (the shape of the distribution, whatever its scale); the
share of tokens that open a step (the first operand after `First` / `Start with` / `Then` /
`Next` / `After that ,`: where a solution chooses which operation to do next, the task's
route decision) and of wording tokens (the opener, connector and closing words, whose
choice never changes the answer), each among all tokens and among tokens with js > 0.1.
Then each SFT model's matching record (mean KL from base, weight L2).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
RUNS = ["demo-rl", "demo-sft-matched", "demo-sft"]

# Tokens are words with their leading space in the demo's word-level vocabulary.
SQL = """
WITH t AS (
  SELECT k.trace_id, k.pos, k.token, k.js, r.sampled_from,
         lag(k.token) OVER (PARTITION BY k.trace_id ORDER BY k.pos) AS prev
  FROM read_parquet($tokens) k JOIN read_parquet($traces) r USING (trace_id)),
s AS (
  SELECT *, prev IN (' First', ' with', ' Then', ' Next', ' ,') AS step_open,
         token IN (' First', ' Start', ' Begin', ' Then', ' Next', ' After', ' So', ' The',
                   ' This') AS wording,
         row_number() OVER (PARTITION BY sampled_from ORDER BY js DESC) AS js_rank,
         count(*) OVER (PARTITION BY sampled_from) AS n_sampler
  FROM t)
SELECT sampled_from, count(*) AS tokens,
       avg((js < 0.01)::INT) AS near_zero, avg((js > 0.1)::INT) AS high, avg(js) AS mean_js,
       sum(js) FILTER (WHERE js_rank <= round(0.01 * n_sampler)) / sum(js) AS top1pct_js_mass,
       avg(step_open::INT) AS step_open_share,
       avg(step_open::INT) FILTER (WHERE js > 0.1) AS step_open_share_of_high,
       avg(wording::INT) AS wording_share,
       avg(wording::INT) FILTER (WHERE js > 0.1) AS wording_share_of_high
FROM s GROUP BY sampled_from ORDER BY sampled_from
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default=str(ROOT / "cache"))
    args = ap.parse_args()
    con = duckdb.connect()
    for run in RUNS:
        folder = Path(args.cache) / run
        if not (folder / "tokens.parquet").is_file():
            print(f"{run}: not in {args.cache} (python -m core demo-runs)")
            continue
        df = con.execute(SQL, {"tokens": str(folder / "tokens.parquet"),
                               "traces": str(folder / "traces.parquet")}).df()
        print(f"\n{run}")
        print(df.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    card = ROOT / "assets" / "demo" / "sft-matched" / "model_card.json"
    if card.is_file():
        m = json.loads(card.read_text())["matching"]
        print(f"\nsft-matched ({m['method']}, step {m['step']}, lr {m['lr']:g}): mean KL from "
              f"base {m['this_kl']:.5f} vs rl {m['rl_kl']:.5f} on {m['positions']['n_tokens']} "
              f"tokens of {m['positions']['text']}; on rl's samples {m['on_rl_samples']}")
        print("weight L2 from base: " + ", ".join(
            f"{k} {v:.2f}" for k, v in m["weight_l2_from_base"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
