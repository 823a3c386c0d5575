"""A real TRL GRPOTrainer run with the shift-ledger callback on, for tests/test_trl_ledger.py:
run under .venv-trl (scripts/setup_trl.sh), on CPU, from the demo pair's base model, on the
demo task's held-out prompts with the demo's exact-answer check as the reward. Waits for the
ledger's jobs after training, then prints one JSON line: the jobs and the seconds on_save
took (the callback's own cost; the scoring runs in the job processes).

Usage: python tests/trl_ledger_run.py BASE OUTPUT_DIR CACHE STEPS
"""

from __future__ import annotations

import json
import sys
import time

from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from core.demo.task import is_correct
from core.integrations.trl import ShiftLedgerCallback
from core.jobs.queue import list_jobs
from core.paths import ASSETS


def accuracy_reward(completions, answer, **kw) -> list[float]:
    return [float(is_correct(c, a)) for c, a in zip(completions, answer)]


def main(base: str, out: str, cache: str, steps: int) -> None:
    rows = [json.loads(line) for line in
            (ASSETS / "prompts" / "arith-heldout.jsonl").read_text().splitlines()[:8]]
    data = Dataset.from_list([{"prompt": r["prompt"], "answer": r["answer"]} for r in rows])
    args = GRPOConfig(output_dir=out, max_steps=steps, per_device_train_batch_size=8,
                      num_generations=4, max_completion_length=40, learning_rate=1e-4,
                      logging_steps=1, save_steps=1, log_completions=True, use_cpu=True,
                      report_to="none", seed=0, save_only_model=True,
                      disable_tqdm=True)
    ledger = ShiftLedgerCallback(series="grpo", base=base, cache=cache, wait=True)
    spent = []
    saved = ledger.ledger.saved_step

    def timed(*a):
        t = time.perf_counter()
        saved(*a)
        spent.append(time.perf_counter() - t)

    ledger.ledger.saved_step = timed
    trainer = GRPOTrainer(model=base, reward_funcs=accuracy_reward, args=args,
                          train_dataset=data, callbacks=[ledger])
    trainer.train()
    jobs = [{"run": j.run, "state": j.state, "error": j.error} for j in list_jobs(cache)]
    print(json.dumps({"jobs": jobs, "on_save_seconds": spent}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
