"""Training the whole demo family in one seeded command.

    base (SFT from scratch, stopped while imperfect)
      -> rl   (GRPO on the verifier reward; rl-steps/step-N saved along the way)
      -> rl-weighted (same, divergence-weighted advantage; for the card's comparison)
      -> sft  (SFT on reference solutions, as many sequences as RL sampled, at 10x RL's lr)
      -> sft-matched (SFT at RL's lr, chosen at rl's mean KL from base; core/demo/matching.py)

`--only sft-matched` trains just the last one from the shipped base and rl.

Every checkpoint is saved with its tokenizer, then re-loaded from disk and evaluated on the
held-out prompts, so the card describes exactly the shipped file. Weights are stored in
float16 (half the bytes) with `dtype: float32` in config.json, so they load and run in fp32.
"""

from __future__ import annotations

import copy
import platform
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from core.config import opt
from core.demo.cards import write_card
from core.demo.evaluate import evaluate
from core.demo.grpo import GRPOSettings, train_grpo
from core.demo.matching import train_sft_matched
from core.demo.model import architecture, build_model
from core.demo.model import load_checkpoint as _reload
from core.demo.model import save_checkpoint as _save
from core.demo.sft import train_sft
from core.demo.task import MAX_OPERAND, prompt_records, sample_problems, write_jsonl
from core.demo.tokenizer import build_tokenizer


@dataclass
class DemoConfig:
    out: str = opt("assets/demo", "output folder for the checkpoints")
    prompts_out: str = opt("assets/prompts", "output folder for the exported prompt sets")
    seed: int = opt(0, "seed for model init, data and sampling")
    hidden: int = opt(128, "model width")
    layers: int = opt(4, "transformer layers")
    operands: str = opt("3,4", "numbers of operands to train and evaluate on (3 and/or 4)")
    base_steps: int = opt(600, "SFT steps for the base model")
    base_noise: float = opt(0.5, "share of base training traces that work left to right (the "
                                 "tempting, wrong route where the problem has a trap): the "
                                 "base imitates both routes, RL learns which is rewarded")
    base_lr: float = opt(2e-3, "peak learning rate of base training")
    batch_size: int = opt(64, "SFT batch size for the base model")
    rl_steps: int = opt(60, "GRPO steps")
    rl_prompts: int = opt(16, "prompts per GRPO step")
    rl_group: int = opt(8, "samples per prompt (group size)")
    rl_lr: float = opt(1e-4, "GRPO learning rate")
    series: int = opt(4, "intermediate RL checkpoints saved under rl-steps/")
    weighted_s: float = opt(1.0, "s of the divergence-weighted advantage")
    weighted_alpha: float = opt(100.0, "alpha of the divergence-weighted advantage")
    compare_weighted: bool = opt(True, "also train the weighted variant and record both")
    sft_lr: float = opt(1e-3, "learning rate of the `sft` contrast model (10x rl_lr)")
    matched_max_steps: int = opt(100, "sft-matched: SFT steps at rl_lr to draw candidates from")
    matched_every: int = opt(5, "sft-matched: a candidate every this many steps")
    matched_tolerance: float = opt(0.05, "sft-matched: relative distance to rl's mean KL "
                                         "from base within which the closest candidate is "
                                         "kept; else the checkpoint at rl_steps")
    only: str = opt("", "train only this member from the shipped base and rl",
                    choices=["", "sft-matched"])
    heldout: int = opt(500, "held-out prompts for evaluation (>= 500 for the cards)")
    tiny: bool = opt(False, "a throwaway family in under 2 minutes (tests of this code)")

    def ints(self, field: str) -> tuple[int, ...]:
        return tuple(int(x) for x in getattr(self, field).split(","))


TINY = dict(hidden=48, layers=2, base_steps=250, batch_size=32, rl_steps=4, rl_prompts=4,
            rl_group=4, series=2, heldout=64, base_lr=3e-3, operands="3,4",
            matched_max_steps=8, matched_every=2)


def train_family(cfg: DemoConfig, log=print) -> dict:
    """Train the family into `cfg.out` (or only `cfg.only`); returns the cards by name."""
    if cfg.tiny:
        cfg = replace(cfg, **TINY)
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    ops = cfg.ints("operands")
    tok = build_tokenizer()
    heldout = sample_problems(cfg.heldout, "heldout", seed=cfg.seed, operands=ops)
    data = (f"synthetic arithmetic with + and * (operator precedence) and a worded chain of "
            f"thought, {'/'.join(map(str, ops))} operands of 1..{MAX_OPERAND} "
            "(core/demo/task.py)")
    common = {"seed": cfg.seed, "data": data, "hardware": f"{platform.machine()} CPU, "
              f"{torch.get_num_threads()} threads", "config": asdict(cfg)}
    results: dict = {}
    if not cfg.only:
        write_jsonl([dict(r, verifier="exact") for r in prompt_records(heldout, "heldout")],
                    Path(cfg.prompts_out) / "arith-heldout.jsonl")
        train_sample = sample_problems(500, "train", seed=cfg.seed + 1, operands=ops)
        write_jsonl([dict(r, verifier="exact") for r in prompt_records(train_sample, "train")],
                    Path(cfg.prompts_out) / "arith-train.jsonl")
        results = _train_main(cfg, tok, heldout, common, log)
    results["sft-matched"] = train_sft_matched(cfg, tok, heldout, common, log=log)
    return results


def _train_main(cfg: DemoConfig, tok, heldout, common: dict, log) -> dict:
    """base, rl (and its series), rl-weighted and sft."""
    out = Path(cfg.out)
    ops = cfg.ints("operands")
    results: dict = {}

    def finish(name: str, model, description: str, steps: int, seconds: float,
               extra: dict | None = None) -> dict:
        folder = out / name
        _save(model, tok, folder)
        ev = evaluate(_reload(folder), tok, heldout, seed=cfg.seed)
        card = {"name": name, "description": description, "architecture": architecture(model),
                "steps": steps, "training_seconds": round(seconds, 1), "eval": ev,
                **common, **(extra or {})}
        write_card(folder, card)
        log(f"[{name}] held-out sampled {ev['sampled_t1']['accuracy']:.3f}  "
            f"greedy {ev['greedy']['accuracy']:.3f}")
        results[name] = card
        return card

    log(f"== base: SFT from scratch, {cfg.base_steps} steps")
    base = build_model(tok, hidden=cfg.hidden, layers=cfg.layers, seed=cfg.seed)
    st = train_sft(base, tok, steps=cfg.base_steps, lr=cfg.base_lr, batch_size=cfg.batch_size,
                   seed=cfg.seed, operands=ops, noise=cfg.base_noise, log=log)
    finish("base", base, f"Base model: supervised training on worked solutions of which "
           f"{cfg.base_noise:.0%} work the expression left to right, ignoring operator "
           "precedence (wrong where the problem has a trap, e.g. 3 + 4 * 5), like the mix of "
           "sound and flawed reasoning a pretrained model has seen. At a trap it puts real "
           "mass on both routes, which leaves RL a choice to reweight.", cfg.base_steps,
           st["seconds"], {"training": st})
    base = _reload(out / "base")  # RL and SFT start from the shipped weights

    rl_cfg = GRPOSettings(steps=cfg.rl_steps, prompts_per_step=cfg.rl_prompts,
                          group_size=cfg.rl_group, lr=cfg.rl_lr, seed=cfg.seed,
                          max_new_tokens=48,
                          s=cfg.weighted_s, alpha=cfg.weighted_alpha)
    every = max(1, cfg.rl_steps // (cfg.series + 1))
    series_steps = [every * (i + 1) for i in range(cfg.series)]
    log(f"== rl: GRPO {cfg.rl_steps} steps (series at {series_steps})")
    rl = copy.deepcopy(base)
    t_rl = time.time()

    def saver(step: int):
        folder = out / "rl-steps" / f"step-{step}"
        return lambda: _save(rl, tok, folder)

    st_rl = train_grpo(rl, tok, rl_cfg, operands=ops,
                       save_at={s: saver(s) for s in series_steps}, log=log)
    for s in series_steps:
        folder = out / "rl-steps" / f"step-{s}"
        ev = evaluate(_reload(folder), tok, heldout, seed=cfg.seed)
        write_card(folder, {"name": f"rl-steps/step-{s}", "description": f"Intermediate RL "
                   f"checkpoint after {s} of {cfg.rl_steps} GRPO steps.",
                   "architecture": architecture(rl), "steps": s,
                   "training_seconds": round(st_rl["seconds"] * s / cfg.rl_steps, 1),
                   "eval": ev, "series_step": s, **common})
        log(f"[rl-steps/step-{s}] held-out sampled {ev['sampled_t1']['accuracy']:.3f}")
    comparison = {}
    if cfg.compare_weighted:
        log(f"== rl-weighted: GRPO with divergence-weighted advantage (s={cfg.weighted_s}, "
            f"alpha={cfg.weighted_alpha})")
        rlw = copy.deepcopy(base)
        st_w = train_grpo(rlw, tok, replace(rl_cfg, weighted=True), operands=ops,
                          log=log)
        finish("rl-weighted", rlw, "GRPO with the divergence-weighted advantage of the paper "
               "(same steps and seed as `rl`).", cfg.rl_steps, st_w["seconds"],
               {"training": st_w, "grpo": asdict(replace(rl_cfg, weighted=True))})
        comparison = {
            "plain GRPO (rl)": None,
            f"weighted (s={cfg.weighted_s}, alpha={cfg.weighted_alpha})": {
                k: results["rl-weighted"]["eval"][k]["accuracy"] for k in ("sampled_t1", "greedy")},
        }
    rl_extra = {"training": st_rl, "grpo": asdict(rl_cfg), "series_steps": series_steps,
                "wall_seconds_with_saves": round(time.time() - t_rl, 1)}
    card = finish("rl", rl, "RLVR model: `base` trained with GRPO whose only reward is the "
                  "exact-answer verifier (reference solutions never enter its loss).",
                  cfg.rl_steps, st_rl["seconds"], rl_extra)
    if comparison:
        comparison["plain GRPO (rl)"] = {k: card["eval"][k]["accuracy"]
                                         for k in ("sampled_t1", "greedy")}
        card["comparison"] = comparison
        card["comparison_note"] = ("Equal steps, seed and prompts; one seed only, so a "
                                   "difference of a few points is within run-to-run noise.")
        write_card(out / "rl", card)

    seqs = cfg.rl_steps * cfg.rl_prompts * cfg.rl_group
    sft_batch = cfg.rl_prompts * cfg.rl_group
    log(f"== sft: SFT on reference solutions, {cfg.rl_steps} steps x {sft_batch} = {seqs} seqs")
    sft = copy.deepcopy(base)
    st_s = train_sft(sft, tok, steps=cfg.rl_steps, lr=cfg.sft_lr, batch_size=sft_batch,
                     seed=cfg.seed + 17, operands=ops, warmup=5, log=log)
    finish("sft", sft, "SFT contrast at 10x the learning rate: `base` fine-tuned on reference "
           "solutions with the same number of sequences as the RL stage sampled, at lr "
           f"{cfg.sft_lr:g} (rl: {cfg.rl_lr:g}) with weight decay 0.01 and a cosine schedule; "
           "it moves further from `base` than `rl` (weight L2 distances in `sft-matched`'s "
           "card), so its contrast with rl mixes SFT with scale. `sft-matched` is the "
           "contrast at rl's mean KL from base.", cfg.rl_steps, st_s["seconds"],
           {"training": st_s})
    return results
