"""The demo task: small-number arithmetic with operator precedence and a worded solution.

A problem is an expression of small integers with `+` and `*`, asked in one of several
phrasings (`What is 3 + 4 * 5 ?`, `Evaluate 3 plus 4 times 5 .`, ...); its reference
solution works it in steps, with varied wording, and ends with the verifiable answer line:
` First 4 * 5 = 20 . Then 3 + 20 = 23 . So the answer is #### 23`.

Some forms carry a TEMPTING BUT WRONG step: `a + b * c` worked left to right
(`First 3 + 4 = 7 . Then 7 * 5 = 35`), and `a * b + c * d` where, after `a * b`, the
left-to-right route adds `c` before multiplying by `d`. `flawed_solution` writes that route;
the base model is trained on a mix of both, so at those few decision points it puts real mass
on each, and RL on the verifier's reward can move that choice (the paper's reweighting among
likely candidates). Forms without a trap (`a * b + c`) are the same either way.

The train / held-out split is a pure function of the expression (a hash), so the two splits
never share a problem however many are drawn. This module knows nothing about models; it
only makes, formats and checks problems (the checker, `extract_answer` / `is_correct`, is
core.inputs.verifiers' "exact" verifier).
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

HELDOUT_SHARE = 5  # one expression in HELDOUT_SHARE is held out
MAX_OPERAND = 6  # operands are 1..MAX_OPERAND: the arithmetic stays easy, the order is the test
MAX_VALUE = 199  # every number either route writes is a single vocabulary entry (0..199)

ASKS = ("What is {} ?", "Compute {} .", "Evaluate {} .", "Calculate {} .",
        "Find the value of {} .", "Work out {} .")
OPENERS = ("First", "Start with", "Begin with")
CONNECTORS = ("Then", "Next", "After that ,")
CLOSERS = ("So the answer is", "The answer is", "This gives")
OP_WORDS = {"+": "plus", "*": "times"}
# form: operators of the expression; the trap is which step a left-to-right reader takes.
FORMS = {3: (("+", "*"), ("*", "+")), 4: (("*", "+", "*"),)}

Step = tuple[int, str, int, int]  # (left, op, right, result)


def _apply(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a * b


@dataclass(frozen=True)
class Problem:
    operands: tuple[int, ...]
    ops: tuple[str, ...]  # len(operands) - 1 items, each "+" or "*"
    ask: int = 0  # index into ASKS
    words: bool = False  # operators written as words in the question

    @property
    def question(self) -> str:
        """The expression, written with symbols (what the split is a hash of)."""
        parts = [str(self.operands[0])]
        for op, x in zip(self.ops, self.operands[1:]):
            parts += [op, str(x)]
        return " ".join(parts)

    @property
    def prompt(self) -> str:
        expr = self.question
        if self.words:
            expr = " ".join(OP_WORDS.get(t, t) for t in expr.split())
        return ASKS[self.ask].format(expr)

    @property
    def answer(self) -> int:
        return self.steps()[-1][3]

    @property
    def has_trap(self) -> bool:
        """Whether the left-to-right route gives a different answer."""
        return self.left_to_right()[-1][3] != self.answer

    @property
    def difficulty(self) -> str:
        return f"{len(self.operands)}ops-{'trap' if self.has_trap else 'plain'}"

    def steps(self) -> list[Step]:
        """The right route: every `*` first (left to right), then the `+` (left to right)."""
        vals, ops, out = list(self.operands), list(self.ops), []
        for kind in ("*", "+"):
            i = 0
            while i < len(ops):
                if ops[i] == kind:
                    res = _apply(vals[i], kind, vals[i + 1])
                    out.append((vals[i], kind, vals[i + 1], res))
                    vals[i: i + 2] = [res]
                    del ops[i]
                else:
                    i += 1
        return out

    def left_to_right(self) -> list[Step]:
        """The tempting route: every operator in reading order."""
        acc, out = self.operands[0], []
        for op, x in zip(self.ops, self.operands[1:]):
            res = _apply(acc, op, x)
            out.append((acc, op, x, res))
            acc = res
        return out

    def worked(self, steps: list[Step], rng: random.Random | None = None) -> str:
        """A response (leading space) working `steps`; wording drawn from `rng` (None: the
        first phrasing of each part)."""
        def pick(options):
            return options[0] if rng is None else rng.choice(options)
        parts = []
        for k, (a, op, b, r) in enumerate(steps):
            lead = pick(OPENERS) if k == 0 else pick(CONNECTORS)
            parts.append(f"{lead} {a} {op} {b} = {r} .")
        return " " + " ".join(parts) + f" {pick(CLOSERS)} {ANSWER_MARK} {steps[-1][3]}"

    @property
    def solution(self) -> str:
        """Reference response (what follows the prompt) in the first wording."""
        return self.worked(self.steps())

    def right_solution(self, rng: random.Random) -> str:
        return self.worked(self.steps(), rng)

    def flawed_solution(self, rng: random.Random) -> str:
        """The left-to-right route, in a drawn wording (wrong where the form has a trap)."""
        return self.worked(self.left_to_right(), rng)


def split_of(question: str) -> str:
    """'heldout' or 'train', decided by a hash of the expression alone."""
    h = int(hashlib.sha256(question.encode()).hexdigest()[:8], 16)
    return "heldout" if h % HELDOUT_SHARE == 0 else "train"


def random_problem(rng: random.Random, n_operands: int) -> Problem | None:
    """A problem with `n_operands` operands, or None when a route leaves 0..MAX_VALUE."""
    ops = rng.choice(FORMS[n_operands])
    operands = tuple(rng.randint(1, MAX_OPERAND) for _ in range(n_operands))
    p = Problem(operands, ops, ask=rng.randrange(len(ASKS)), words=rng.random() < 0.3)
    if max(s[3] for s in p.steps() + p.left_to_right()) > MAX_VALUE:
        return None
    return p


def sample_problems(
    n: int,
    split: str,
    seed: int,
    operands: tuple[int, ...] = (3, 4),
    unique: bool = True,
) -> list[Problem]:
    """Draw `n` problems from `split` ('train' or 'heldout'), deterministic in `seed`;
    `unique`: no prompt twice (an expression may come back in another phrasing: there are a
    few hundred held-out expressions and twelve phrasings of each)."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', not {split!r}")
    bad = [k for k in operands if k not in FORMS]
    if bad:
        raise ValueError(f"operands must be among {sorted(FORMS)}, not {bad}")
    rng = random.Random(f"{split}-{seed}")
    seen: set[str] = set()
    out: list[Problem] = []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 200 * n + 10_000:
            raise RuntimeError(f"could not draw {n} distinct {split} problems with these knobs")
        p = random_problem(rng, rng.choice(operands))
        if p is None:
            continue
        if split_of(p.question) != split or (unique and p.prompt in seen):
            continue
        seen.add(p.prompt)
        out.append(p)
    return out


def vocabulary_words() -> list[str]:
    """Every word the task writes (the demo tokenizer's vocabulary, numbers aside)."""
    words: set[str] = set()
    for text in ASKS + OPENERS + CONNECTORS + CLOSERS:
        words.update(text.replace("{}", " ").split())
    words.update(OP_WORDS.values())
    words.update(("+", "*", "=", ".", ANSWER_MARK))
    return sorted(words)


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
