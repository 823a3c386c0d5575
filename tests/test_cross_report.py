"""The README's cross-sampling Markdown table (core.experiments.cross_sampling.report) on
small synthetic summaries: every cell checked against the numbers it formats, and a
summary made by summarize() itself, so a renamed or dropped column breaks this test rather
than the README's regeneration (scripts/cross_figure.py)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from core.experiments.cross_sampling.report import markdown_table, p_text
from core.experiments.cross_sampling.summary import COLUMNS, summarize

pytestmark = pytest.mark.unit
INF = math.inf


def _row(direction, eps, kind="", **kw) -> dict:
    r = {c: math.nan for c in COLUMNS}
    r.update(direction=direction, eps=eps, control=bool(kind), control_kind=kind, test="")
    r.update(kw)
    return r


def _summary() -> pd.DataFrame:
    return pd.DataFrame([
        _row("base", INF, accuracy=0.455, ci_lo=0.40, ci_hi=0.51, budget=0.0,
             budget_changed=0.0),
        _row("tuned", INF, accuracy=0.71, ci_lo=0.66, ci_hi=0.758, budget=0.0,
             budget_changed=0.0),
        _row("forward", 0.05, budget=0.026, budget_changed=0.0092, accuracy=0.54,
             ci_lo=0.482, ci_hi=0.59, gap_moved=0.333, gap_moved_lo=0.1, gap_moved_hi=0.52,
             p_holm=0.0004),
        _row("forward", 0.0253, budget=0.054, budget_changed=0.0146, accuracy=0.62,
             ci_lo=0.562, ci_hi=0.67, gap_moved=0.645, gap_moved_lo=0.45, gap_moved_hi=0.83,
             p_holm=0.0123),
        _row("forward", 0.05, "random", diff=-0.005, diff_lo=-0.018, diff_hi=0.005,
             p_holm=1.0, same_as_ref=0.84, budget_changed=0.0092, n=400, n_short=0),
        _row("forward", 0.0253, "untreated", diff=0.15, diff_lo=0.105, diff_hi=0.195,
             p_holm=0.2345, same_as_ref=0.0, budget_changed=0.0012, n=400, n_short=31),
        _row("reverse", 0.0253, budget=0.056, budget_changed=0.0152, accuracy=0.538,
             ci_lo=0.48, ci_hi=0.59, gap_moved=0.68, gap_moved_lo=0.5, gap_moved_hi=0.9,
             p_holm=0.05),
    ])


def _cells(line: str) -> list[str]:
    assert line.startswith("| ") and line.endswith(" |")
    return [c.strip() for c in line[2:-2].split(" | ")]


def test_markdown_table_cells():
    lines = markdown_table(_summary(), target_eps=0.0253).splitlines()
    head = _cells(lines[0])
    assert head == ["setting", "decisions", "changed", "accuracy (95% CI)",
                    "gap moved (95% CI); vs the primary alone",
                    "minus random control, matched on changed",
                    "minus untreated control, matched on changed"]
    assert lines[1] == "|" + "---|" * len(head)
    rows = {c[0]: c for c in map(_cells, lines[2:])}
    assert list(rows) == ["base alone", "tuned alone", "forward, eps 0.05",
                          "forward, eps 0.0253 (target)", "reverse, eps 0.0253 (target)"]
    assert all(len(c) == len(head) for c in rows.values())
    assert rows["base alone"][1:5] == ["0%", "0%", "45.5% (40.0-51.0)", ""]
    assert rows["tuned alone"][3] == "71.0% (66.0-75.8)"
    f05 = rows["forward, eps 0.05"]
    assert f05[1:5] == ["2.6%", "0.92%", "54.0% (48.2-59.0)",
                        "recovers 33% [10, 52]; p_holm < 0.001"]
    assert f05[5] == "-0.5 [-1.8, +0.5]; p_holm 1.00; same 84%; changes 0.92%"
    assert f05[6] == ""  # no untreated control at this eps
    ft = rows["forward, eps 0.0253 (target)"]
    assert ft[4] == "recovers 64% [45, 83]; p_holm 0.012"
    assert ft[5] == "" and ft[6] == ("+15.0 [+10.5, +19.5]; p_holm 0.23; same 0%; "
                                         "changes 0.12%; short 31/400")
    rt = rows["reverse, eps 0.0253 (target)"]
    assert rt[1:5] == ["5.6%", "1.5%", "53.8% (48.0-59.0)", "removes 68% [50, 90]; "
                                                           "p_holm 0.05"]


def test_extra_sweep_adds_decisions_columns():
    other = pd.DataFrame([_row("forward", 0.05, "random", diff=0.075, diff_lo=0.038,
                               diff_hi=0.108, p_holm=0.002, budget_changed=0.0007)])
    lines = markdown_table(_summary(), 0.0253, extra=[(other, "decisions")]).splitlines()
    assert _cells(lines[0])[-1] == "minus random control, matched on decisions"
    f05 = next(_cells(x) for x in lines if x.startswith("| forward, eps 0.05 |"))
    assert f05[-1] == "+7.5 [+3.8, +10.8]; p_holm 0.002; changes 0.07%"


def test_p_text():
    assert [p_text(p) for p in (math.nan, 0.0002, 0.0123, 0.05, 0.5, 1.0)] == [
        "-", "< 0.001", "0.012", "0.05", "0.50", "1.00"]


def test_table_of_a_real_summary():
    """summarize() on hand-made rows: 4 prompts, 1 sample; forward at one eps with an
    untreated control that decodes the same sequence on one of the two changed prompts."""
    rows = []
    for p, (b, t, f, c) in enumerate([(0, 1, 1, 0), (0, 1, 1, 1), (1, 1, 1, 1), (0, 0, 0, 0)]):
        base = dict(prompt_id=f"p{p}", sample_index=0, n_tokens=10, n_requested=math.nan)
        rows.append({**base, "direction": "base", "eps": INF, "control_kind": "",
                     "correct": b, "n_switched": 0, "n_changed": 0, "budget": 0.0,
                     "tokens": [1, 2], "changed": []})
        rows.append({**base, "direction": "tuned", "eps": INF, "control_kind": "",
                     "correct": t, "n_switched": 0, "n_changed": 0, "budget": 0.0,
                     "tokens": [1, 3], "changed": []})
        ref_changed = [1] if p < 2 else []
        rows.append({**base, "direction": "forward", "eps": 0.05, "control_kind": "",
                     "correct": f, "n_switched": 2, "n_changed": len(ref_changed),
                     "budget": 0.2, "tokens": [1, 3], "changed": ref_changed})
        rows.append({**base, "direction": "forward", "eps": 0.05, "control_kind": "untreated",
                     "correct": c, "n_switched": 2, "n_changed": len(ref_changed),
                     "n_requested": len(ref_changed), "budget": 0.2,
                     "tokens": [1, 3] if p == 1 else [1, 4], "changed": [0] if p < 2 else []})
    s = summarize(rows, n_boot=200, seed=0)
    r = s[(s.direction == "forward") & (s.control_kind == "untreated")].iloc[0]
    assert r["same_as_ref"] == 0.5 and r["diff"] == pytest.approx(0.25)
    lines = markdown_table(s, target_eps=0.05).splitlines()
    assert len(lines) == 2 + 3  # header, rule, base, tuned, forward
    fwd = _cells(lines[-1])
    assert fwd[0] == "forward, eps 0.05 (target)"
    f = s[(s.direction == "forward") & (s.control_kind == "")].iloc[0]
    assert fwd[1:4] == ["20.0%", "5.0%",
                        f"75.0% ({100 * f['ci_lo']:.1f}-{100 * f['ci_hi']:.1f})"]
    assert fwd[5].startswith("+25.0 [") and fwd[5].endswith("; same 50%; changes 5.0%")
    assert "p_holm " + p_text(r["p_holm"]) in fwd[5]

