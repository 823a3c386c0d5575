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
    assert (a.groupby("branch").size() == 3).all() and a.branch.nunique() == 2
    from core.engine.sampling import encode_prompts

    prefix = encode_prompts(pair.tokenizer, [t.prompt])[0] + ids[:pos]
    b1, t1 = top1_pair(pair, prefix)
    got = a.groupby("branch").branch_token_id.first()
    if b1 != t1:
        assert sorted(got.index) == ["base top-1", "tuned top-1"]
        assert got["base top-1"] == b1 and got["tuned top-1"] == t1
    else:  # one top-1: never two copies of one branch; the tuned runner-up instead
        assert sorted(got.index) == ["both top-1", "tuned top-2"]
        assert got["both top-1"] == b1 and got["tuned top-2"] != b1
    prefix_text = pair.tokenizer.decode(ids[:pos], skip_special_tokens=True)
    assert all(text.startswith(prefix_text) for text in a.text)
    assert save_fork(run, int(t.trace_id), pos, a) == "fork-00000"
    assert save_fork(run, int(t.trace_id), pos, b) == "fork-00001"
    stored = pd.read_parquet(run / "forks.parquet")
    assert len(stored) == 12 and set(stored.fork_id) == {"fork-00000", "fork-00001"}
    with pytest.raises(ValueError, match="outside the response"):
        fork(pair, t.prompt, ids, len(ids) + 5, t.reference)


def test_branch_options_flag_equal_top1s_and_offer_both_lists():
    from core.experiments.fork import branch_options

    o = branch_options([5, 7, 9], [0.6, 0.3, 0.1], [5, 9, 2], [0.5, 0.4, 0.1], str)
    assert o.same_top1 and o.default == (5, 9)  # tuned's best other token
    assert set(o.tokens) == {5, 7, 9, 2} and o.tokens[0] == 5
    assert o.labels[9] == "'9' · base #3 0.10 · tuned #2 0.40"
    d = branch_options([5, 7], [0.6, 0.4], [7, 5], [0.8, 0.2], str)
    assert not d.same_top1 and d.default == (5, 7)


def test_forced_branches_and_saved_forks_reopen(run):
    from core.experiments.fork import list_forks, load_fork

    pair = pair_of_run(str(run))
    traces = pd.read_parquet(run / "traces.parquet")
    tokens = pd.read_parquet(run / "tokens.parquet")
    t = traces.iloc[1]
    ids = tokens[tokens.trace_id == t.trace_id].sort_values("pos").token_id.tolist()
    pos = min(2, len(ids))
    forced = (int(ids[pos]) if pos < len(ids) else 3, 4)
    if forced[0] == forced[1]:
        forced = (forced[0], 5)
    a = fork(pair, t.prompt, ids, pos, t.reference, k=2, max_new_tokens=6, tokens=forced)
    assert a.groupby("branch", sort=False).branch_token_id.first().tolist() == list(forced)
    assert (a.groupby("branch").size() == 2).all()
    with pytest.raises(ValueError, match="different tokens"):
        fork(pair, t.prompt, ids, pos, t.reference, tokens=(4, 4))
    with pytest.raises(ValueError, match="two token ids"):
        fork(pair, t.prompt, ids, pos, t.reference, tokens=(4, 10**9))
    before = list_forks(run)
    fid = save_fork(run, int(t.trace_id), pos, a)
    listed = list_forks(run, int(t.trace_id))
    assert listed.fork_id.iloc[0] == fid and len(list_forks(run)) == len(before) + 1
    assert listed.pos.iloc[0] == pos and " vs " in listed.branches.iloc[0]
    back = load_fork(run, fid)
    pd.testing.assert_frame_equal(back[a.columns].reset_index(drop=True),
                                  a.astype(back[a.columns].dtypes), check_dtype=False)
    with pytest.raises(KeyError, match="no fork"):
        load_fork(run, "fork-99999")


def test_two_sessions_saving_forks_at_once_lose_nothing(run):
    """Fork saves read, extend and rewrite forks.parquet: two at once took one fork id and
    one of them was lost. They now take turns."""
    from concurrent.futures import ThreadPoolExecutor

    from core.experiments.fork import list_forks

    rows = pd.DataFrame([{"branch": "base top-1", "branch_token_id": 1, "continued_by": "tuned",
                          "rollout": 0, "text": "x", "answer": "1", "correct": True,
                          "temperature": 1.0, "top_p": 1.0, "seed": 0, "created": "now"}])
    before = len(list_forks(run))
    with ThreadPoolExecutor(8) as ex:
        ids = list(ex.map(lambda i: save_fork(run, 0, i, rows), range(8)))
    assert len(set(ids)) == 8
    assert len(list_forks(run)) == before + 8
    assert not list((run.parent / ".staging").glob("*.forks.lock"))
