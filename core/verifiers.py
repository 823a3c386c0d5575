"""Answer verifiers, chosen by the prompt set (`verifier` field; default "math").

- "exact": the demo task's checker: the text after the last `####` equals the reference.
- "math": math-verify (`\\boxed{}`, LaTeX, fractions: 1/2 and 0.5 compare equal).
Each verifier returns (extracted answer or None, correct).
"""

from __future__ import annotations

from typing import Callable

from core.demo.task import extract_answer, is_correct

Verifier = Callable[[str, str], tuple[str | None, bool]]


def exact(response: str, reference: str) -> tuple[str | None, bool]:
    return extract_answer(response), is_correct(response, reference)


def math(response: str, reference: str) -> tuple[str | None, bool]:
    from math_verify import parse, verify

    try:
        gold = parse(reference if "$" in reference or "\\" in reference else f"${reference}$")
        pred = parse(response)
    except Exception:  # math-verify raises on pathological input; that is a wrong answer
        return None, False
    if not pred:
        return None, False
    try:
        ok = bool(verify(gold, pred))
    except Exception:
        ok = False
    return str(pred[-1]), ok


VERIFIERS: dict[str, Verifier] = {"exact": exact, "math": math}


def get(name: str) -> Verifier:
    if name not in VERIFIERS:
        raise ValueError(f"unknown verifier {name!r}; known: {', '.join(VERIFIERS)}")
    return VERIFIERS[name]
