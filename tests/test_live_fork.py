"""Live scoring equals stored scoring; the fork explorer's branches and their storage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.config import PrecomputeConfig
from core.experiments.fork import fork, save_fork, top1_pair
from core.experiments.live import pair_of_run, score_text
from core.precompute.driver import precompute
from tests.conftest import DEMO, HELDOUT

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cache = tmp_path_factory.mktemp("live_cache")
    return precompute(PrecomputeConfig(
        base=str(DEMO / "base"), tuned=str(DEMO / "rl"), prompts=str(HELDOUT), max_prompts=3,
        cache=str(cache), name="live", n=1, max_new_tokens=64), log=lambda s: None,
        show_progress=False)


def test_live_scoring_matches_the_stored_run(run):
    pair = pair_of_run(str(run))
    traces = pd.read_parquet(run / "traces.parquet")
    tokens = pd.read_parquet(run / "tokens.parquet")
    t = traces.iloc[0]
    stored = tokens[tokens.trace_id == t.trace_id].sort_values("pos")
    live = score_text(pair, t.response, t.prompt)
    n = len(live)  # the stored trace may end with <eos>, which the text does not contain
    assert n >= len(stored) - 1 and n > 0
    assert live.token.tolist() == stored.token.tolist()[:n]
    for col in ("js", "kl_tb", "entropy_base", "logp_tuned", "rank_base"):
        np.testing.assert_allclose(live[col].to_numpy(), stored[col].to_numpy()[:n], atol=1e-5)
    assert {"base_ids", "tuned_probs"} <= set(live.columns)


def test_fork_branches_and_storage(run):
    pair = pair_of_run(str(run))
    traces = pd.read_parquet(run / "traces.parquet")
    tokens = pd.read_parquet(run / "tokens.parquet")
    t = traces.iloc[0]
    ids = tokens[tokens.trace_id == t.trace_id].sort_values("pos").token_id.tolist()
    pos = min(3, len(ids))
    a = fork(pair, t.prompt, ids, pos, t.reference, k=3, max_new_tokens=12, seed=5)
    b = fork(pair, t.prompt, ids, pos, t.reference, k=3, max_new_tokens=12, seed=5)
    pd.testing.assert_frame_equal(a.drop(columns="created"), b.drop(columns="created"))
    assert sorted(a.branch.unique()) == ["base top-1", "tuned top-1"]
    assert (a.groupby("branch").size() == 3).all()
    from core.engine.sampling import encode_prompts

    prefix = encode_prompts(pair.tokenizer, [t.prompt])[0] + ids[:pos]
    b1, t1 = top1_pair(pair, prefix)
    got = a.groupby("branch").branch_token_id.first()
    assert got["base top-1"] == b1 and got["tuned top-1"] == t1
    prefix_text = pair.tokenizer.decode(ids[:pos], skip_special_tokens=True)
    assert all(text.startswith(prefix_text) for text in a.text)
    assert save_fork(run, int(t.trace_id), pos, a) == "fork-00000"
    assert save_fork(run, int(t.trace_id), pos, b) == "fork-00001"
    stored = pd.read_parquet(run / "forks.parquet")
    assert len(stored) == 12 and set(stored.fork_id) == {"fork-00000", "fork-00001"}
    with pytest.raises(ValueError, match="outside the response"):
        fork(pair, t.prompt, ids, len(ids) + 5, t.reference)
