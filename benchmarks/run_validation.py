"""What validating runs on open costs: `list_runs` (core.store.validate: the manifest's types
and every table file's Parquet footer) against the listing it replaced (read each manifest).

    python benchmarks/run_validation.py [--runs 20] [--tokens 200000] [--parts 10] [--repeat 5]

Writes --runs copies of one synthetic run (core.demo.synthetic; --parts part files per
table) into a temporary cache, then times, in this process: reading every manifest.json
(the baseline), a cold `list_runs` (every footer read), a warm one (footers remembered until
a member file changes: what every page draw pays) and `open_runs` of all of them. Prints
milliseconds and ratios to the baseline; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.demo.synthetic import write_synthetic_run  # noqa: E402
from core.queries import open_runs  # noqa: E402
from core.store import validate  # noqa: E402
from core.store.cache import list_runs  # noqa: E402


def _ms(fn, repeat: int, before=None) -> float:
    out = []
    for _ in range(repeat):
        if before is not None:
            before()
        t = time.perf_counter()
        fn()
        out.append(1000 * (time.perf_counter() - t))
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--tokens", type=int, default=200_000)
    ap.add_argument("--parts", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="shiftlens-validate-"))
    try:
        cache = tmp / "cache"
        first = write_synthetic_run(cache / "run-00", n_tokens=args.tokens,
                                    chunk_rows=max(1, args.tokens // args.parts))
        for i in range(1, args.runs):
            shutil.copytree(first, cache / f"run-{i:02d}")
        folders = sorted(cache.iterdir())
        files = sum(len(validate.table_files(d, t)) for d in folders[:1]
                    for t in ("tokens.parquet", "topk.parquet", "traces.parquet"))

        def manifests():
            return [json.loads((d / "manifest.json").read_text()) for d in folders]

        base = _ms(manifests, args.repeat)
        cold = _ms(lambda: list_runs(cache), args.repeat, before=validate._memo.clear)
        warm = _ms(lambda: list_runs(cache), args.repeat)
        runs = list_runs(cache)
        assert not any(r.damaged for r in runs)
        names = [r.name for r in runs]  # copies: their manifests repeat one name
        opened = _ms(lambda: open_runs(runs, materialize=False, names=names).close(),
                     args.repeat)
        print(f"{args.runs} runs, {files} table files each, {args.tokens:,} token rows each")
        print(f"read every manifest (baseline)   {base:8.1f} ms")
        print(f"list_runs, cold (every footer)   {cold:8.1f} ms   x{cold / base:.1f}")
        print(f"list_runs, warm (remembered)     {warm:8.1f} ms   x{warm / base:.1f}")
        print(f"open_runs of all (lazy views)    {opened:8.1f} ms   (for scale)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
