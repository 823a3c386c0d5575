"""What a row-count bomb costs the upload path (core.jobs.upload.save_rollouts), read the old
way (every row a Python object, then validated: the baseline, `pq.read_table().to_pylist()`
or one json.loads per line) against the checked reader (core.inputs.rollouts.load_rollouts:
rows counted from the Parquet footer or as JSONL lines stream, against SHIFTLENS_MAX_ROWS),
on three files:

  parquet   NULL_ROWS null rows (2,000,000 by default: about 4 KB on disk)
  jsonl     JSONL_ROWS valid one-line rollouts (300,000: about 13 MB), at the default limit
            and at a limit of 1,000
  empty     EMPTY_ROWS lines of `{}` (3,000,000: 6 MB), each one a problem

    python benchmarks/row_bombs.py [--null-rows 2000000] [--jsonl-rows 300000]

Each read runs in a fresh child process; printed: seconds, the child's peak RSS growth over
its imports (VmHWM), the outcome, and the new/baseline ratios. A figure, not a test (tests
check the refusals and bounds: tests/test_hostile_rows.py).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from child import run_child  # benchmarks/child.py: the child prelude and runner

CHILD = """
import json, os
import pyarrow.dataset  # read_table's own import: outside the timing, for both
import pyarrow.parquet as pq
from core.errors import PromptSetError
from core.inputs.rollouts import load_rollouts
path, how = {path!r}, {how!r}
if {rows!r}:
    os.environ["SHIFTLENS_MAX_ROWS"] = {rows!r}
before = hwm()
t = time.perf_counter()
try:
    if how == "baseline" and path.endswith(".parquet"):
        out = f"{{len(pq.read_table(path).to_pylist())}} rows read"
    elif how == "baseline":
        with open(path, "rb") as f:
            out = f"{{len([json.loads(line) for line in f if line.strip()])}} rows read"
    else:
        out = f"{{len(load_rollouts(path).rows)}} rows accepted"
except PromptSetError as e:
    out = "refused: " + str(e).splitlines()[0]
print(f"{{time.perf_counter() - t:.3f}} {{hwm() - before:.0f}} {{out}}")
"""


def run(path: Path, how: str, rows: str = "") -> tuple[float, float, str]:
    got = run_child(CHILD.format(path=str(path), how=how, rows=rows)).stdout.strip()
    secs, mib, what = got.splitlines()[-1].split(" ", 2)
    return float(secs), float(mib), what


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--null-rows", type=int, default=2_000_000)
    ap.add_argument("--jsonl-rows", type=int, default=300_000)
    ap.add_argument("--empty-rows", type=int, default=3_000_000)
    args = ap.parse_args()
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = Path(tempfile.mkdtemp(prefix="row-bombs-"))
    parquet = tmp / "nulls.parquet"
    pq.write_table(pa.table({"prompt": pa.nulls(args.null_rows, pa.string())}), parquet)
    jsonl = tmp / "rows.jsonl"
    jsonl.write_bytes(b'{"prompt": "Q: 1+1=? A:", "response": " 2"}\n' * args.jsonl_rows)
    empty = tmp / "empty.jsonl"
    empty.write_bytes(b"{}\n" * args.empty_rows)
    for name, path, rows in (("parquet", parquet, ""), ("jsonl", jsonl, ""),
                             ("jsonl, limit 1,000", jsonl, "1000"), ("empty", empty, "")):
        base = run(path, "baseline")
        new = run(path, "checked", rows)
        print(f"{name}: {path.stat().st_size / 2**20:.2f} MiB on disk")
        print(f"  baseline  {base[0]:7.2f} s  {base[1]:7.0f} MiB  {base[2][:110]}")
        print(f"  checked   {new[0]:7.2f} s  {new[1]:7.0f} MiB  {new[2][:110]}")
        print(f"  ratio     {new[0] / max(base[0], 1e-9):7.3f} x time, "
              f"{new[1] / max(base[1], 1.0):.3f} x memory")


if __name__ == "__main__":
    main()
