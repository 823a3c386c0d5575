"""The shipped demo pair shows the paper's effect under the paper's decoding (issue 29).

Samples held-out prompts (the shipped prompt set, with their `answer`) at T = 1 and top-p 0.7
from the shipped base and rl checkpoints and checks that rl beats base by at least 15 points
with disjoint 95% bootstrap intervals over prompts, and that the gain sits on the problems
with a trap (the left-to-right route), not on the ones without.
"""

from __future__ import annotations

import pytest

from core.experiments.cross_sampling.summary import bootstrap_ci
from tests.conftest import DEMO, HELDOUT

pytestmark = pytest.mark.model

PROMPTS, SAMPLES = 150, 2


def _per_prompt(name: str, rows) -> list[float]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.engine.sampling import sample
    from core.inputs.verifiers import is_correct

    model = AutoModelForCausalLM.from_pretrained(DEMO / name).eval()
    tok = AutoTokenizer.from_pretrained(DEMO / name)
    got = sample(model, tok, [r["prompt"] for r in rows], n=SAMPLES, temperature=1.0,
                 top_p=0.7, max_new_tokens=64, seed=11, batch_size=150)
    hits = [0.0] * len(rows)
    for s in got:
        hits[s.prompt_index] += is_correct(s.text, rows[s.prompt_index]["answer"]) / SAMPLES
    return hits


@pytest.fixture(scope="module")
def scores():
    import json

    import torch

    torch.set_num_threads(1)
    rows = [json.loads(x) for x in HELDOUT.read_text().splitlines()[:PROMPTS]]
    return rows, {name: _per_prompt(name, rows) for name in ("base", "rl")}


def test_rl_beats_base_at_top_p_07_with_disjoint_intervals(scores):
    _, s = scores
    base, lo_b, hi_b = bootstrap_ci(s["base"], seed=1)
    rl, lo_r, hi_r = bootstrap_ci(s["rl"], seed=1)
    assert rl - base >= 0.15, (base, rl)
    assert lo_r > hi_b, ((lo_b, hi_b), (lo_r, hi_r))


def test_the_gain_sits_on_the_trap_problems(scores):
    rows, s = scores
    def gap(kind):
        idx = [i for i, r in enumerate(rows) if r["difficulty"].endswith(kind)]
        assert len(idx) >= 20
        return sum(s["rl"][i] - s["base"][i] for i in idx) / len(idx)
    assert gap("trap") >= 0.25 and gap("trap") > gap("plain") + 0.15
