"""What the shift ledger's save hook costs the training loop: record_checkpoint (queue one
ledger entry and tick the queue, which starts its job process) timed against the save it
follows (save_pretrained of the demo base model), in the same process. The scoring itself
runs in the job processes, not here (they are cancelled at the end).

Usage: python benchmarks/ledger_overhead.py [entries]   (default 5)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.jobs import queue  # noqa: E402
from core.jobs.ledger import record_checkpoint  # noqa: E402
from core.paths import ASSETS  # noqa: E402


def main(n: int) -> None:
    from transformers import AutoModelForCausalLM

    base = ASSETS / "demo" / "base"
    model = AutoModelForCausalLM.from_pretrained(base)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rollouts = tmp / "completions_00001.parquet"
        rollouts.write_bytes(b"PAR1")  # never read by the hook
        saves, hooks = [], []
        for k in range(1, n + 1):
            t = time.perf_counter()
            model.save_pretrained(tmp / f"checkpoint-{k}")
            saves.append(time.perf_counter() - t)
            t = time.perf_counter()
            record_checkpoint(str(base), tmp / f"checkpoint-{k}", k, series="bench",
                              rollouts=rollouts, cache=tmp / "cache")
            hooks.append(time.perf_counter() - t)
        for job in queue.list_jobs(tmp / "cache"):
            if job.state in queue.ACTIVE:
                queue.cancel(tmp / "cache", job.id)
    save, hook = statistics.median(saves), statistics.median(hooks)
    print(f"save_pretrained (demo base, 2.1 MB): median {save * 1e3:.1f} ms over {n}")
    print(f"record_checkpoint (queue + tick):    median {hook * 1e3:.1f} ms, first "
          f"{hooks[0] * 1e3:.1f} ms (imports)")
    print(f"hook / save: {hook / save:.2f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
