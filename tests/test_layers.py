"""The layer view and component attribution (issue 28) against independent computations:
the logit lens at the last layer is the stored distribution; per-layer js equals a direct
computation from `output_hidden_states`; patching every component reproduces the donor and
patching none the recipient; refusals are one line and write nothing."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from core.engine import lens, patching
from core.errors import PairError, RunsError
from core.experiments import attribution as A
from core.experiments import layers as L
from core.store import extras
from tests.layerrun import RUN, files
from tests.mockpair import mock_pair

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def run(layer_run):
    return layer_run


@pytest.fixture(scope="module")
def pair(layer_pair):
    return layer_pair


def _np_js(lp: np.ndarray, lq: np.ndarray) -> np.ndarray:
    """JS in nats from log-probabilities, written out in numpy (not core.metrics)."""
    p, q = np.exp(lp), np.exp(lq)
    m = 0.5 * (p + q)
    return 0.5 * (p * (lp - np.log(m))).sum(-1) + 0.5 * (q * (lq - np.log(m))).sum(-1)


def _hidden_lens(model, ids) -> np.ndarray:
    """Lens log-probs (L+1, T, V) from transformers' own output_hidden_states: its last entry
    is already through the final norm, the others are not."""
    with torch.no_grad():
        hs = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
        n = len(hs) - 1
        out = [model.lm_head(h if i == n else model.model.norm(h))[0]
               for i, h in enumerate(hs)]
    return torch.log_softmax(torch.stack(out).double(), -1).numpy()


def _top_positions(run, trace_id, k=3):
    t = pq.read_table(run / "tokens.parquet", filters=[("trace_id", "=", trace_id)]).to_pandas()
    return t.sort_values(["js", "pos"], ascending=[False, True]).pos.head(k).astype(int).tolist()


def test_lens_last_layer_is_the_stored_distribution(run, pair):
    topk = pq.read_table(run / "topk.parquet", filters=[("trace_id", "=", 0)]).to_pandas()
    for pos in _top_positions(run, 0):
        df = L.layer_view(run, 0, pos, pair=pair)
        last = df[df.layer == df.n_layers].iloc[0]
        stored = topk[topk.pos == pos].iloc[0]
        assert last.js == pytest.approx(last.stored_js, abs=2e-6)
        assert last.js > 1e-4  # a divergent token, not a trivially equal pair
        assert last.base_top1 == stored.base_ids[0] and last.tuned_top1 == stored.tuned_ids[0]
        assert last.tuned_top1_prob == pytest.approx(stored.tuned_probs[0], abs=2e-6)
        assert last.base_kl_final == 0 and abs(last.tuned_js_final) < 1e-12
    saved = L.read_layer_view(run, 0)
    assert sorted(saved.pos.unique()) == sorted(_top_positions(run, 0))
    assert len(saved) == 3 * (int(saved.n_layers.iloc[0]) + 1)


def test_per_layer_js_matches_output_hidden_states(pair):
    ids = [1, 5, 6, 7, 8, 9, 10, 11, 3, 4, 12]
    rows = list(range(len(ids)))
    got = lens.compare(pair.base.model, pair.tuned.model, ids, rows)
    hb, ht = _hidden_lens(pair.base.model, ids), _hidden_lens(pair.tuned.model, ids)
    np.testing.assert_allclose(got["js"], _np_js(hb, ht), atol=1e-6)
    final = np.broadcast_to(ht[-1], ht.shape)
    kl = (np.exp(final) * (final - ht)).sum(-1)
    np.testing.assert_allclose(got["tuned_kl_final"], kl, rtol=1e-6, atol=1e-6)
    assert got["js"][1:].max() > 1e-3  # the layers do differ
    small = lens.compare(pair.base.model, pair.tuned.model, ids, rows, chunk=4)  # 4+4+3 rows
    for k, v in got.items():  # the head's product may round differently per block size
        np.testing.assert_allclose(small[k], v, rtol=1e-5, atol=1e-7)


def _qwen_pair():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=25, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    out = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        out.append(Qwen2ForCausalLM(cfg).eval())
    return out


@pytest.mark.parametrize("which", ["demo", "qwen2"])
def test_patching_all_gives_the_donor_and_none_the_recipient(pair, which):
    base, tuned = ((pair.base.model, pair.tuned.model) if which == "demo" else _qwen_pair())
    ids = [1, 5, 6, 7, 8, 9, 10, 11, 3, 4]
    rows = list(range(len(ids)))
    with torch.no_grad():
        full = {m: torch.log_softmax(m(torch.tensor([ids])).logits[0].double(), -1)
                for m in (base, tuned)}
    assert _np_js(full[base].numpy(), full[tuned].numpy()).max() > 1e-4
    for rec, don in ((base, tuned), (tuned, base)):
        cache = patching.component_outputs(don, ids)
        every = patching.patched_logprobs(rec, don, cache, ids, rows, patching.components(rec))
        assert _np_js(every.numpy(), full[don].numpy()).max() < 1e-12
        none = patching.patched_logprobs(rec, don, cache, ids, rows, [])
        torch.testing.assert_close(none, full[rec], rtol=0, atol=1e-12)
    # the lens at the last layer is the model's own output too
    lb = lens.lens_logprobs(base, ids, rows)
    torch.testing.assert_close(lb[-1], full[base], rtol=0, atol=1e-12)


def test_attribution_rows_and_tables(run, pair):
    df = A.attribute(run, 1, pair=pair)
    n_comp = len(patching.components(pair.base.model))
    n_pos = df.pos.nunique()
    assert len(df) == 2 * n_comp * n_pos
    stored = pq.read_table(run / "tokens.parquet", filters=[("trace_id", "=", 1)]).to_pandas()
    js = df.drop_duplicates("pos").set_index("pos").js
    np.testing.assert_allclose(js, stored.set_index("pos").js.loc[js.index], atol=2e-6)
    pos = int(stored.sort_values("js").pos.iloc[-1])
    tab = A.attribution_table(df, pos=pos)
    assert len(tab) == n_comp and tab.n.eq(1).all()
    one = df[(df.pos == pos) & (df.direction == "base<-tuned")].set_index("label")
    assert tab.set_index("label").share.to_dict() == pytest.approx(one.share.to_dict())
    mean = A.attribution_table(df, high=0.0, direction="tuned<-base")
    assert (mean.n == df[df.direction == "tuned<-base"].share.notna().groupby(
        df.label).sum().loc[mean.label].to_numpy()).all()
    again = A.read_attribution(run, 1)
    assert len(again) == len(df)
    A.attribute(run, 1, pair=pair)  # rewriting a trace replaces its rows
    assert len(A.read_attribution(run)) == len(df)


def test_non_decoder_pair_is_refused_in_one_line_writing_nothing(run):
    b, t = mock_pair()
    fake = SimpleNamespace(base=SimpleNamespace(model=b), tuned=SimpleNamespace(model=t),
                           tokenizer=None)
    before = files(run)
    with pytest.raises(PairError, match="Llama/Qwen2-style decoder") as e:
        L.layer_view(run, 0, 3, pair=fake)
    assert "\n" not in str(e.value) and "Bigram" in str(e.value)
    with pytest.raises(PairError):
        A.attribute(run, 0, pair=fake)
    assert files(run) == before


@pytest.mark.parametrize("call", [lambda r: L.layer_view(r, 0, 10_000),
                                  lambda r: L.layer_view(r, 999, 0),
                                  lambda r: L.layer_view(r, 0, -1),
                                  lambda r: A.attribute(r, 999),
                                  lambda r: L.layer_profile(r, high=0.01, low=0.1)])
def test_bad_trace_or_position_refused_before_loading(run, call):
    before = files(run)
    with pytest.raises(RunsError) as e:
        call(run)  # no pair given: a refusal must come before the models load
    assert "\n" not in str(e.value)
    assert files(run) == before


def test_layer_table_writes_refused_while_the_run_is_locked(run):
    from core.store.cache import RunLock

    before = files(run)
    lock = RunLock(run.parent, run.name)  # exclusive, as a rename or delete holds it
    try:
        with pytest.raises(RunsError, match="in use"):
            extras.write_table(run, "lens", L.read_layer_view(run).head(1))
    finally:
        lock.release()
    assert files(run) == before


def test_profile_groups_high_and_low(run, pair):
    prof = L.layer_profile(run, [0, 1], high=0.01, low=0.001, pair=pair)
    tok = pq.read_table(run / "tokens.parquet").to_pandas()
    tok = tok[tok.trace_id.isin([0, 1])]  # every position: the prompt gives pos 0 context
    n_layers = prof.layer.max()
    assert set(prof.group) == {"high", "low"}
    assert prof[prof.group == "high"].n.iloc[0] == (tok.js >= 0.01).sum()
    assert prof[prof.group == "low"].n.iloc[0] == (tok.js < 0.001).sum()
    high_last = prof[(prof.group == "high") & (prof.layer == n_layers)].js.iloc[0]
    assert high_last == pytest.approx(tok[tok.js >= 0.01].js.mean(), abs=2e-6)


def test_cli_layers_and_attribute_json(run, capsys):
    from core.cli.main import main

    pos = _top_positions(run, 0, 1)[0]
    assert main(["layers", RUN, "--cache", str(run.parent), "--trace", "0", "--pos", str(pos),
                 "--json"]) == 0
    lens_rows = json.loads(capsys.readouterr().out)["lens"]
    assert lens_rows[-1]["js"] == pytest.approx(lens_rows[-1]["stored_js"], abs=2e-6)
    assert main(["attribute", RUN, "--cache", str(run.parent), "--trace", "0", "--pos",
                 str(pos), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert [r["label"] for r in got["attribution"]][0] == "embed"
    assert main(["layers", RUN, "--cache", str(run.parent), "--trace", "0", "--pos",
                 "10000"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: trace 0: position 10000") and err.count("\n") == 1


def test_figures_export_and_escape_token_text(run, pair):
    from core.figures import layers as F
    from core.figures.export import figure_bytes

    df = L.layer_view(run, 0, _top_positions(run, 0, 1)[0], pair=pair, save=False)
    df["base_top1_token"] = "<b>x</b>"
    spec = F.lens_figure(df, RUN)
    assert "<b>x</b>" not in spec.figure.to_json() and "&lt;b&gt;" in spec.figure.to_json()
    att = A.attribution_table(A.read_attribution(run, 1), high=0.0)
    specs = [spec, F.attribution_figure(att, RUN, what="trace 1"),
             F.profile_figure(L.layer_profile(run, [0], high=0.01, low=0.001, pair=pair), RUN,
                              high=0.01, low=0.001)]
    for s in specs:
        assert s.run == RUN and not s.data.empty
        assert figure_bytes(s, "html").startswith(b"<!DOCTYPE html>") or \
            b"<html" in figure_bytes(s, "html")[:200]
        assert len(figure_bytes(s, "csv")) > 0


@pytest.mark.parametrize("command", ["layers", "attribute", "critical"])
def test_help_explains_every_option(command, capsys):
    from core.cli.main import build_parser, main

    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    sub = build_parser()._subparsers._group_actions[0].choices[command]
    for action in sub._actions:
        if action.option_strings and action.dest != "help":
            assert action.option_strings[-1] in out and action.help, action.dest
