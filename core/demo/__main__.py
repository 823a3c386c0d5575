"""`python -m core.demo train --out assets/demo [--tiny]`: train the demo model family."""

from __future__ import annotations

import argparse
import sys
import time

from core.config import add_arguments, from_args
from core.demo.train import DemoConfig, train_family


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.demo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train base, rl, rl-steps/*, rl-weighted, sft and "
                                         "sft-matched (or --only sft-matched)",
                           description="Train the demo family (seeded, CPU; 46 min on a busy "
                                       "2-core machine; OMP_NUM_THREADS=1).")
    add_arguments(train, DemoConfig)
    table = sub.add_parser("table", help="print a Markdown table of the model cards in a folder")
    table.add_argument("folder", nargs="?", default="assets/demo")
    args = parser.parse_args(argv)
    if args.command == "table":
        from core.demo.cards import family_table

        print(family_table(args.folder))
        return 0
    t0 = time.time()
    results = train_family(from_args(DemoConfig, args))
    print(f"done in {time.time() - t0:.0f}s: " + ", ".join(
        f"{k} {v['eval']['sampled_t1']['accuracy']:.3f}" for k, v in results.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
