"""The shipped demo family: loadable with transformers alone, cards that hold up, trainer."""

from __future__ import annotations

import random

import pytest

from core.demo.cards import read_card
from core.demo.task import Problem, is_correct, sample_problems, split_of
from tests.conftest import DEMO

CHECKPOINTS = ["base", "rl", "sft", "sft-matched", "rl-weighted"] + sorted(
    str(p.relative_to(DEMO)) for p in (DEMO / "rl-steps").glob("step-*"))


@pytest.mark.unit
def test_splits_never_share_a_problem():
    train = {p.question for p in sample_problems(3000, "train", seed=0)}
    held = {p.question for p in sample_problems(1000, "heldout", seed=0)}
    assert not train & held
    assert all(split_of(q) == "heldout" for q in held)


@pytest.mark.unit
def test_task_and_verifier():
    p = Problem((3, 4, 5), ("+", "*"))
    assert p.prompt == "What is 3 + 4 * 5 ?"
    assert Problem((3, 4, 5), ("+", "*"), ask=2, words=True).prompt == "Evaluate 3 plus 4 times 5 ."
    assert p.solution == " First 4 * 5 = 20 . Then 3 + 20 = 23 . So the answer is #### 23"
    assert p.has_trap and p.difficulty == "3ops-trap"
    wrong = p.flawed_solution(random.Random(0))
    assert " 3 + 4 = 7 ." in wrong and wrong.endswith("#### 35") and not is_correct(wrong, 23)
    assert is_correct(p.solution, "23") and not is_correct(" no answer line", "23")
    q = Problem((2, 3, 4, 5), ("*", "+", "*"))  # the trap is the second step
    assert q.solution.startswith(" First 2 * 3 = 6 . Then 4 * 5 = 20 . Then 6 + 20 = 26 .")
    assert q.left_to_right()[1] == (6, "+", 4, 10) and q.answer == 26
    plain = Problem((2, 3, 4), ("*", "+"))  # no trap: both routes are the same steps
    assert not plain.has_trap and plain.steps() == plain.left_to_right()


@pytest.mark.unit
def test_tokenizer_is_word_level_and_round_trips():
    from core.demo.tokenizer import build_tokenizer

    tok = build_tokenizer()
    assert 300 <= len(tok) <= 700
    rng = random.Random(1)
    for p in sample_problems(50, "heldout", seed=2):
        for text in (p.prompt + p.right_solution(rng), p.prompt + p.flawed_solution(rng)):
            ids = tok(text)["input_ids"]
            assert tok.unk_token_id not in ids and tok.decode(ids, skip_special_tokens=True) == text
    assert tok.convert_ids_to_tokens(tok(" So the answer is #### 123", add_special_tokens=False)
                                     ["input_ids"]) == [" So", " the", " answer", " is",
                                                        " ####", " 123"]


@pytest.mark.unit
def test_base_mix_puts_the_trap_in_half_the_traces():
    """The base's data: at a trap, about half the traces take the left-to-right route."""
    from core.demo.sft import encode_examples
    from core.demo.tokenizer import build_tokenizer

    tok = build_tokenizer()
    probs = [p for p in sample_problems(400, "train", seed=5, unique=False) if p.has_trap]
    _, resp = encode_examples(tok, probs, noise=0.5, rng=random.Random(3))
    wrong = sum(not is_correct(tok.decode(r, skip_special_tokens=True), p.answer)
                for p, r in zip(probs, resp))
    assert 0.4 <= wrong / len(probs) <= 0.6


@pytest.mark.model
def test_series_has_three_to_five_steps():
    assert 3 <= len([c for c in CHECKPOINTS if c.startswith("rl-steps/")]) <= 5


@pytest.mark.model
@pytest.mark.parametrize("name", CHECKPOINTS)
def test_every_checkpoint_loads_with_transformers_alone(name):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = DEMO / name
    model = AutoModelForCausalLM.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    assert model.dtype.is_floating_point and 5e5 <= model.num_parameters() <= 3e6
    assert tok.decode(tok(" 1 + 2 = 3")["input_ids"], skip_special_tokens=True) == " 1 + 2 = 3"
    assert (folder / "model.safetensors").is_file() and (folder / "model_card.json").is_file()


@pytest.mark.model
def test_cards_report_the_rl_gain():
    base, rl = read_card(DEMO / "base"), read_card(DEMO / "rl")
    assert base["eval"]["heldout_prompts"] >= 500
    for decoding in ("sampled_t1", "sampled_top_p_0.7"):  # the full T=1 and the paper's
        b, r = base["eval"][decoding]["accuracy"], rl["eval"][decoding]["accuracy"]
        assert 0.30 <= b <= 0.80 and r >= b + 0.15, decoding
        # the base's errors sit on the trap problems (the left-to-right route)
        by = base["eval"][decoding]["by_difficulty"]
        assert by["3ops-trap"] < by["3ops-plain"] - 0.2, by
    assert "comparison" in rl


@pytest.mark.model
def test_sft_matched_sits_at_rls_mean_kl_from_base():
    """The card records how sft-matched was matched to rl; recomputed here independently,
    one unpadded sequence at a time, on the first 48 of its documented positions (reference
    solutions of held-out problems, teacher-forced), the KLs agree with what the card says:
    matched on mean KL, within 10% of rl's (the card: within its 5% tolerance on all 256);
    or, where no candidate came within the tolerance (the shipped family: SFT at rl's lr
    levels off below rl's KL), the checkpoint at rl's step count, with its KL off rl's as
    the card records. The 10x-lr sft moves further than rl in weight space."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoTokenizer

    card = read_card(DEMO / "sft-matched")
    m = card["matching"]
    assert m["method"] in ("mean KL from base", "same learning rate and steps")
    matched = m["method"] == "mean KL from base"
    assert m["lr"] == m["rl_lr"]
    assert m["kl"].startswith("KL(tuned || base)") and m["step"] == card["steps"]
    assert (abs(m["this_kl"] - m["rl_kl"]) <= m["tolerance"] * m["rl_kl"]) == matched
    assert m["tolerance"] <= 0.05 and (matched or m["step"] == read_card(DEMO / "rl")["steps"])
    assert set(m["weight_l2_from_base"]) == {"sft-matched", "rl", "sft"}
    pos = m["positions"]
    assert pos["split"] == "heldout" and pos["text"] == "reference solutions, teacher-forced"
    held = sample_problems(pos["draw"], "heldout", seed=pos["seed"],
                           operands=tuple(int(x) for x in pos["operands"].split(",")))
    problems = held[pos["start"]: pos["start"] + 48]
    tok = AutoTokenizer.from_pretrained(DEMO / "base")
    models = {k: AutoModelForCausalLM.from_pretrained(DEMO / k).eval()
              for k in ("base", "rl", "sft-matched", "sft")}
    total = dict.fromkeys(("rl", "sft-matched", "sft"), 0.0)
    count = 0
    with torch.no_grad():
        for p in problems:
            prompt = tok(p.prompt)["input_ids"]
            ids = torch.tensor([prompt + tok(p.solution, add_special_tokens=False)["input_ids"]
                                + [tok.eos_token_id]])
            # the distributions that predict each response token and the EOS
            lp = {k: F.log_softmax(mod(ids).logits[0, len(prompt) - 1: -1].float(), -1)
                  for k, mod in models.items()}
            count += lp["base"].shape[0]
            for k in total:
                total[k] += float((lp[k].exp() * (lp[k] - lp["base"])).sum())
    kl = {k: v / count for k, v in total.items()}
    if matched:
        assert abs(kl["sft-matched"] - kl["rl"]) <= 0.10 * kl["rl"], kl
    else:  # the recomputation finds the gap the card reports, to within 10 points
        assert abs(kl["sft-matched"] / kl["rl"] - m["this_kl"] / m["rl_kl"]) <= 0.10, kl
    # the 10x-lr sft moves further in weights (on this task not in KL on reference
    # solutions: it learns their wording mix, which rl's sampling drifts from)
    l2 = m["weight_l2_from_base"]
    assert l2["sft"] > 1.3 * l2["rl"], l2


@pytest.mark.model
@pytest.mark.parametrize("name", ["base", "rl"])
def test_committed_checkpoints_reproduce_their_card(name):
    """Re-evaluate on >= 500 held-out prompts with a different seed: within 5 points."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.demo.evaluate import accuracy

    card = read_card(DEMO / name)
    cfg = card["config"]
    ops = tuple(int(x) for x in cfg["operands"].split(","))
    held = sample_problems(card["eval"]["heldout_prompts"], "heldout", seed=cfg["seed"],
                           operands=ops)
    assert len(held) >= 500
    model = AutoModelForCausalLM.from_pretrained(DEMO / name).eval()
    tok = AutoTokenizer.from_pretrained(DEMO / name)
    got = accuracy(model, tok, held, greedy=False, seed=12345)["accuracy"]
    assert abs(got - card["eval"]["sampled_t1"]["accuracy"]) <= 0.05


@pytest.mark.model
def test_train_tiny_family(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.demo.__main__ import main
    from core.engine.sampling import sample
    from core.inputs.prompts import load_prompts
    from core.inputs.verifiers import exact

    out, prompts = tmp_path / "demo", tmp_path / "prompts"
    assert main(["train", "--tiny", "--out", str(out), "--prompts-out", str(prompts)]) == 0
    ps = load_prompts(prompts / "arith-heldout.jsonl")
    folders = ["base", "rl", "sft", "sft-matched", "rl-weighted"] + [
        str(p.relative_to(out)) for p in (out / "rl-steps").glob("step-*")]
    assert len(folders) >= 5
    for name in folders:
        model = AutoModelForCausalLM.from_pretrained(out / name)
        tok = AutoTokenizer.from_pretrained(out / name)
        card = read_card(out / name)
        assert card["eval"]["sampled_t1"]["n"] == len(ps.rows)
        got = sample(model, tok, [r.prompt for r in ps.rows[:16]], max_new_tokens=48, seed=0)
        verdicts = [exact(s.text, ps.rows[s.prompt_index].answer)[1] for s in got]
        assert len(verdicts) == 16 and all(isinstance(v, bool) for v in verdicts)
    rl_card = read_card(out / "rl")
    assert set(rl_card["comparison"]) == {"plain GRPO (rl)",
                                          "weighted (s=1.0, alpha=100.0)"}
    matching = read_card(out / "sft-matched")["matching"]
    assert matching["method"] in ("mean KL from base", "same learning rate and steps")
    assert [c["step"] for c in matching["candidates"]] == [2, 4, 6, 8]
    held, chosen = matching["held_out"], matching["positions"]
    assert held["positions"]["start"] >= chosen["start"] + chosen["count"]  # disjoint
    lo, hi = held["relative_difference_ci"]
    assert lo <= held["relative_difference"] <= hi
