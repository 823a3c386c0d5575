"""The demo task: multi-step integer arithmetic with a written chain of thought.

A problem is `Q: 37+48-12=? A:` and its reference solution is
` 37+48=85; 85-12=73. #### 73`. Knobs: number of operands and digits per operand.
The train / held-out split is a pure function of the question text (a hash), so the two
splits can never share a problem however many are drawn.

This module knows nothing about models; it only makes, formats and checks problems (the
checker, `extract_answer` / `is_correct`, is core.inputs.verifiers' "exact" verifier).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

from core.inputs.verifiers import ANSWER_MARK, extract_answer, is_correct  # noqa: F401

# The answer checker is the "exact" verifier of the base layer; re-exported for the demo.
from core.store.storage import write_bytes

HELDOUT_SHARE = 5  # one question in HELDOUT_SHARE is held out


@dataclass(frozen=True)
class Problem:
    operands: tuple[int, ...]
    ops: tuple[str, ...]  # len(operands) - 1 items, each "+" or "-"

    @property
    def question(self) -> str:
        parts = [str(self.operands[0])]
        for op, x in zip(self.ops, self.operands[1:]):
            parts.append(f"{op}{x}")
        return "".join(parts)

    @property
    def prompt(self) -> str:
        return f"Q: {self.question}=? A:"

    @property
    def answer(self) -> int:
        return self.steps()[-1][2]

    @property
    def difficulty(self) -> str:
        digits = max(len(str(x)) for x in self.operands)
        return f"{len(self.operands)}ops-{digits}d"

    def steps(self) -> list[tuple[str, int, int]]:
        """Each step as (left-hand expression, intermediate value, result)."""
        acc = self.operands[0]
        out = []
        for op, x in zip(self.ops, self.operands[1:]):
            new = acc + x if op == "+" else acc - x
            out.append((f"{acc}{op}{x}", acc, new))
            acc = new
        return out

    @property
    def solution(self) -> str:
        """Reference response (what follows the prompt), with a leading space."""
        return self.worked(self.steps())

    def worked(self, steps: list[tuple[str, int, int]]) -> str:
        chain = "; ".join(f"{lhs}={res}" for lhs, _, res in steps)
        return f" {chain}. {ANSWER_MARK} {steps[-1][2]}"

    def flawed_solution(self, rng: random.Random) -> str:
        """A solution with one arithmetic slip (off by 1, 2 or 10) carried through to the
        answer, like the flawed reasoning a base model has seen alongside correct work."""
        steps = self.steps()
        k = rng.randrange(len(steps))
        acc = steps[k][2] + rng.choice((-10, -2, -1, 1, 2, 10))
        out = steps[:k] + [(steps[k][0], steps[k][1], acc)]
        for op, x in zip(self.ops[k + 1:], self.operands[k + 2:]):
            new = acc + x if op == "+" else acc - x
            out.append((f"{acc}{op}{x}", acc, new))
            acc = new
        return self.worked(out)


def split_of(question: str) -> str:
    """'heldout' or 'train', decided by a hash of the question text alone."""
    h = int(hashlib.sha256(question.encode()).hexdigest()[:8], 16)
    return "heldout" if h % HELDOUT_SHARE == 0 else "train"


def random_problem(rng: random.Random, n_operands: int, digits: int) -> Problem:
    lo = 0 if digits == 1 else 10 ** (digits - 1)
    hi = 10**digits - 1
    # A mix of 1..digits-digit operands keeps small numbers in the data.
    operands = tuple(rng.randint(0 if rng.random() < 0.3 else lo, hi) for _ in range(n_operands))
    ops = tuple(rng.choice("+-") for _ in range(n_operands - 1))
    return Problem(operands, ops)


def sample_problems(
    n: int,
    split: str,
    seed: int,
    operands: tuple[int, ...] = (2, 3, 4),
    digits: tuple[int, ...] = (2,),
    unique: bool = True,
) -> list[Problem]:
    """Draw `n` problems from `split` ('train' or 'heldout'), deterministic in `seed`."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', not {split!r}")
    rng = random.Random(f"{split}-{seed}")
    seen: set[str] = set()
    out: list[Problem] = []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 200 * n + 10_000:
            raise RuntimeError(f"could not draw {n} distinct {split} problems with these knobs")
        p = random_problem(rng, rng.choice(operands), rng.choice(digits))
        q = p.question
        if split_of(q) != split or (unique and q in seen):
            continue
        seen.add(q)
        out.append(p)
    return out


def prompt_records(problems: list[Problem], prefix: str) -> list[dict]:
    """Prompt-set rows in the public format: id, prompt, answer, difficulty."""
    return [
        {"id": f"{prefix}-{i:05d}", "prompt": p.prompt, "answer": str(p.answer),
         "difficulty": p.difficulty}
        for i, p in enumerate(problems)
    ]


def write_jsonl(records: list[dict], path: Path) -> None:
    write_bytes("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
                .encode("utf-8"), Path(path))
