"""`python -m core.demo train --out assets/demo [--tiny]`: train the demo model family."""

from __future__ import annotations

import argparse
import sys
import time

from ..config import add_arguments, from_args
from .train import DemoConfig, train_family


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.demo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train base, rl, rl-steps/*, rl-weighted and sft",
                           description="Train the demo family (seeded, CPU, ~15 min on 2 cores).")
    add_arguments(train, DemoConfig)
    args = parser.parse_args(argv)
    t0 = time.time()
    results = train_family(from_args(DemoConfig, args))
    print(f"done in {time.time() - t0:.0f}s: " + ", ".join(
        f"{k} {v['eval']['sampled_t1']['accuracy']:.3f}" for k, v in results.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
