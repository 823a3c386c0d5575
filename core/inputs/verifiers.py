"""Answer verifiers, chosen by the prompt set (`verifier` field; default "math").

- "exact": the text after the last `####` equals the reference integer (the answer format of
  the demo task, core/demo/task.py, which imports this checker from here).
- "math": math-verify (`\\boxed{}`, LaTeX, fractions: 1/2 and 0.5 compare equal).
Each verifier returns (extracted answer or None, correct).
"""

from __future__ import annotations

from typing import Callable

ANSWER_MARK = "####"

Verifier = Callable[[str, str], tuple[str | None, bool]]


def extract_answer(response: str) -> str | None:
    """The text after the last '####', stripped; None when there is no answer line."""
    if ANSWER_MARK not in response:
        return None
    tail = response.rsplit(ANSWER_MARK, 1)[1].strip()
    return tail.split()[0] if tail else None


def is_correct(response: str, reference: str | int) -> bool:
    """Exact-answer verifier: the extracted answer is the reference integer, written the
    canonical way ("-5", not "-05" or "+5")."""
    got = extract_answer(response)
    if got is None:
        return False
    try:
        return got == str(int(str(reference).strip()))
    except ValueError:
        return False


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
