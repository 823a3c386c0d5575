"""What reading a user's Parquet rollout file costs, the old way (`pq.read_table(p).to_pylist()`,
the baseline) against core.inputs.user_parquet.read_records (sizes checked from the footer and the
dictionaries before any row becomes a record), on two files:

  realistic  ROWS rollouts with distinct ~8 KB responses (about a 2,000-token trace each)
  bomb       one 1 KiB response repeated BOMB_ROWS times through a dictionary: a file of
             well under 1 MiB that decodes to BOMB_ROWS KiB (2.9 GiB by default, over the
             default 2 GiB SHIFTLENS_MAX_FILE_TEXT_BYTES)

    python benchmarks/parquet_rollouts.py [--rows 5000] [--bomb-rows 3000000]

Each read runs in a fresh child process; printed: seconds, the child's peak RSS growth over
its imports (VmHWM), and the new/baseline ratios. A figure, not a test (tests check that the
bomb is refused and that valid files read as written: tests/test_hostile_inputs.py).
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

from child import run_child  # benchmarks/child.py: the child prelude and runner

CHILD = """
import pyarrow.dataset  # read_table's own import: outside the timing, for both
import pyarrow.parquet as pq
from core.inputs import user_parquet
from core.errors import PromptSetError
from core.inputs.text_limits import TextLimits
before = hwm()
t = time.perf_counter()
try:
    if {how!r} == "baseline":
        n = len(pq.read_table({path!r}).to_pylist())
    else:
        n = len(user_parquet.read_records(__import__("pathlib").Path({path!r}), TextLimits()))
    out = f"{{n}} rows"
except PromptSetError as e:
    out = "refused: " + str(e)
print(f"{{time.perf_counter() - t:.3f}} {{hwm() - before:.0f}} {{out}}")
"""


def run(path: Path, how: str) -> tuple[float, float, str]:
    got = run_child(CHILD.format(path=str(path), how=how)).stdout.strip().splitlines()[-1]
    secs, mib, what = got.split(" ", 2)
    return float(secs), float(mib), what


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--bomb-rows", type=int, default=3_000_000)
    args = ap.parse_args()
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = Path(tempfile.mkdtemp(prefix="parquet-rollouts-"))
    rng = random.Random(0)
    words = [f"{a}{op}{b}=" for a in range(20) for op in "+-" for b in range(20)]
    real = tmp / "realistic.parquet"
    pq.write_table(pa.table({
        "prompt": [f"Q{i % 500}: solve" for i in range(args.rows)],
        "response": [" ".join(rng.choices(words, k=1300))[:8000] for _ in range(args.rows)],
        "answer": [str(i % 97) for i in range(args.rows)]}), real, compression="zstd")
    bomb = tmp / "bomb.parquet"
    pq.write_table(pa.table({"prompt": ["Q"] * args.bomb_rows,
                             "response": ["7" * 1024] * args.bomb_rows}), bomb,
                   compression="zstd")
    for name, path in (("realistic", real), ("bomb", bomb)):
        size = path.stat().st_size / 2**20
        base = run(path, "baseline")
        new = run(path, "checked")
        print(f"{name}: {size:.2f} MiB on disk")
        print(f"  baseline  {base[0]:7.2f} s  {base[1]:7.0f} MiB  {base[2][:100]}")
        print(f"  checked   {new[0]:7.2f} s  {new[1]:7.0f} MiB  {new[2][:100]}")
        print(f"  ratio     {new[0] / max(base[0], 1e-9):7.2f} x time, "
              f"{new[1] / max(base[1], 1.0):.2f} x memory")


if __name__ == "__main__":
    main()
