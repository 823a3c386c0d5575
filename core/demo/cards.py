"""Model cards: a JSON record and a short markdown page beside each demo checkpoint."""

from __future__ import annotations

import json
from pathlib import Path


def write_card(folder: Path, card: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_card.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    (folder / "README.md").write_text(render_markdown(card), encoding="utf-8")


def read_card(folder: Path) -> dict:
    return json.loads((Path(folder) / "model_card.json").read_text(encoding="utf-8"))


def _acc(ev: dict | None, key: str) -> str:
    if not ev:
        return "n/a"
    return f"{100 * ev[key]['accuracy']:.1f}%"


def render_markdown(card: dict) -> str:
    arch = card["architecture"]
    ev = card.get("eval")
    lines = [
        f"# ShiftLens demo model: `{card['name']}`",
        "",
        card["description"],
        "",
        f"- Architecture: {arch['class']}, {arch['num_hidden_layers']} layers, "
        f"hidden {arch['hidden_size']}, {arch['num_attention_heads']} heads, "
        f"vocabulary {arch['vocab_size']}",
        f"- Parameters: {arch['parameters']:,}",
        f"- Data: {card['data']}",
        f"- Seed: {card['seed']}; training steps: {card['steps']}; "
        f"training time: {card['training_seconds']} s on {card['hardware']}",
        f"- Held-out accuracy ({ev['heldout_prompts'] if ev else 0} prompts): "
        f"sampled at T=1 {_acc(ev, 'sampled_t1')}"
        + (f", at top-p 0.7 {_acc(ev, 'sampled_top_p_0.7')}"
           if ev and "sampled_top_p_0.7" in ev else "") + f", greedy {_acc(ev, 'greedy')}",
    ]
    if ev:
        lines.append("- Sampled accuracy by difficulty: " + ", ".join(
            f"{k} {100 * v:.0f}%" for k, v in ev["sampled_t1"]["by_difficulty"].items()))
    if card.get("comparison"):
        lines += ["", "## Plain GRPO vs divergence-weighted advantage", "",
                  "| variant | held-out sampled (T=1) | held-out greedy |", "|---|---|---|"]
        for name, c in card["comparison"].items():
            lines.append(f"| {name} | {100 * c['sampled_t1']:.1f}% | {100 * c['greedy']:.1f}% |")
        lines += ["", card.get("comparison_note", "")]
    lines += ["", "Made by `python -m core.demo train` (ShiftLens)."]
    return "\n".join(lines) + "\n"


def family_table(folder: Path) -> str:
    """A Markdown table of every card under `folder` (for the README)."""
    cards = sorted((read_card(p.parent) for p in Path(folder).rglob("model_card.json")),
                   key=lambda c: (c["name"].startswith("rl-steps"), c.get("series_step") or 0,
                                  ["base", "rl", "rl-weighted", "sft"].index(c["name"])
                                  if c["name"] in ("base", "rl", "rl-weighted", "sft") else 9))
    rows = ["| checkpoint | steps | held-out sampled (T=1) | sampled at top-p 0.7 | "
            "held-out greedy | train time |", "|---|---|---|---|---|---|"]
    for c in cards:
        ev = c["eval"]
        p07 = _acc(ev, "sampled_top_p_0.7") if "sampled_top_p_0.7" in ev else "n/a"
        rows.append(f"| `{c['name']}` | {c['steps']} | {_acc(ev, 'sampled_t1')} | {p07} | "
                    f"{_acc(ev, 'greedy')} | {c['training_seconds']} s |")
    return "\n".join(rows)
