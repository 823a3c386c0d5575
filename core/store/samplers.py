"""Which model sampled a run's traces, and which accuracy belongs to its tuned checkpoint.

`traces.sampled_from` names the model that wrote each trace, in this run's terms:

    tuned        this run's tuned model
    base         this run's base model (same weights, by fingerprint)
    reused       another run's tuned model: a series run (--traces-from N, the default
                 --series-sampling reuse) re-scores the traces N's tuned model (the series'
                 final checkpoint) sampled
    reused-base  another run's base model, when its weights differ from this run's base
    other text   a label given in a rollout file (--traces), kept as given

The manifest's `samplers` maps every label of the run to the run and model that sampled it
({"run", "role", "model", "fingerprint"}). Runs written before `samplers` existed and made
with --traces-from hold the source run's labels ("tuned" for the final model's traces);
`legacy_relabel` reads them as "reused" (connection.py and run_index.py apply it on open).

`checkpoint_accuracy` gives a run's tuned checkpoint's own accuracy: from its own samples
when the run has them, else from the checkpoint's model_card.json (recorded in the manifest
as `tuned_card` at precompute, else read from the model folder), else not measured. Never
the accuracy of traces another model sampled.
"""

from __future__ import annotations

from pathlib import Path

REUSED = "reused"
REUSED_BASE = "reused-base"
def _digest(record: dict | None) -> str | None:
    return ((record or {}).get("fingerprint") or {}).get("digest")


def _own(manifest: dict, role: str) -> dict:
    model = (manifest.get("models") or {}).get(role) or {}
    return {"run": manifest.get("name"), "role": role, "model": model.get("spec"),
            "fingerprint": _digest(model)}


def samplers_of(manifest: dict) -> dict:
    """{label: {run, role, model, fingerprint}} for a run's manifest; old manifests (no
    `samplers`) get theirs derived, their labels read through legacy_relabel."""
    if "samplers" in manifest:
        return manifest["samplers"] or {}
    relabel = legacy_relabel(manifest) or {}
    out = {}
    for label in (manifest.get("stats") or {}).get("accuracy") or {}:
        new = relabel.get(label, label)
        if new == REUSED:
            out[new] = {"run": manifest.get("traces_from"), "role": "tuned", "model": None,
                        "fingerprint": None}
        elif new in ("tuned", "base"):
            out[new] = _own(manifest, new)
    return out


def same_model(rec: dict, spec: str | None, digest: str | None) -> bool:
    """Whether a sampler record names the model (spec, fingerprint digest): by digest when
    both have one (a hub model checked without weights has none yet), else by spec."""
    if digest and rec.get("fingerprint"):
        return rec["fingerprint"] == digest
    return bool(spec) and rec.get("model") == spec


def reuse_plan(source: dict, base_spec: str | None, base_digest: str | None
               ) -> tuple[dict, dict]:
    """For a run re-scoring the traces of the run whose manifest is `source`, with the base
    model (spec, fingerprint digest): ({source label: label here}, {label here: record})."""
    relabel, records = {}, {}
    src_records = samplers_of(source)
    old = legacy_relabel(source) or {}
    for label in (source.get("stats") or {}).get("accuracy") or {}:
        src_label = old.get(label, label)
        rec = src_records.get(src_label) or {"run": source.get("name"), "role": None,
                                             "model": None, "fingerprint": None}
        if src_label == "tuned":
            new = REUSED
        elif src_label == "base":
            new = "base" if same_model(rec, base_spec, base_digest) else REUSED_BASE
        else:  # reused / reused-base from a chain, or a rollout file's own label
            new = src_label
        relabel[label] = new
        records[new] = rec
    return relabel, records


def rename_samplers(manifest: dict, old: str, new: str) -> bool:
    """Point a manifest's sampler records at run `old` to `new` (a rename); whether any did."""
    hit = False
    for rec in (manifest.get("samplers") or {}).values():
        if isinstance(rec, dict) and rec.get("run") == old:
            rec["run"], hit = new, True
    return hit


def legacy_relabel(manifest: dict) -> dict | None:
    """{stored label: label} for a run written before `samplers` with --traces-from (its
    "tuned" traces were sampled by the source run's tuned model); None for any other run."""
    if "samplers" in manifest or not manifest.get("traces_from"):
        return None
    return {"tuned": REUSED}


def label_sql(manifest: dict, column: str = "sampled_from") -> str:
    """SQL of `column` read as this run's labels (legacy_relabel applied), for a SELECT."""
    relabel = legacy_relabel(manifest)
    if not relabel:
        return column
    whens = " ".join(f"WHEN '{a}' THEN '{b}'" for a, b in sorted(relabel.items()))
    return f"CASE {column} {whens} ELSE {column} END"


def read_card(model_dir: str | Path | None) -> dict | None:
    """A checkpoint's sampled accuracy from its model_card.json (the demo family's format:
    eval.sampled_t1.accuracy / n): {accuracy, n, setting, steps}; None when absent or
    unreadable (read defensively: a checkpoint folder is user input)."""
    if not model_dir:
        return None
    from core.engine.checkpoint import read_json
    from core.errors import PairError

    p = Path(model_dir) / "model_card.json"
    try:
        card = read_json(p) if p.is_file() else None
    except PairError:
        return None
    ev = ((card or {}).get("eval") or {}).get("sampled_t1") or {}
    acc = ev.get("accuracy")
    if not isinstance(acc, (int, float)) or isinstance(acc, bool) or not 0 <= acc <= 1:
        return None
    n = ev.get("n") if isinstance(ev.get("n"), int) else None
    return {"accuracy": float(acc), "n": n, "setting": "sampled at T=1, held-out prompts",
            "steps": card.get("steps") if isinstance(card.get("steps"), int) else None}


def checkpoint_accuracy(manifest: dict) -> tuple[float | None, str]:
    """(accuracy, where it comes from) of the run's tuned checkpoint itself: its own samples
    ("own samples"), else its model card ("model card, N prompts sampled at T=1"), else
    (None, "not measured")."""
    acc = ((manifest.get("stats") or {}).get("accuracy") or {})
    if "tuned" in acc and not (legacy_relabel(manifest) or {}).get("tuned"):
        return float(acc["tuned"]), "own samples"
    card = manifest.get("tuned_card")
    if card is None and "tuned_card" not in manifest:  # runs written before it was recorded
        card = read_card(((manifest.get("models") or {}).get("tuned") or {}).get("path"))
    if card and card.get("accuracy") is not None:
        n = f"{card['n']:,} prompts " if card.get("n") else ""
        return float(card["accuracy"]), f"model card, {n}sampled at T=1"
    return None, "not measured"


def card_accuracy(manifest: dict) -> tuple[float | None, str]:
    """(accuracy, source) of the tuned checkpoint from its model card alone."""
    card = manifest.get("tuned_card")
    if card is None and "tuned_card" not in manifest:
        card = read_card(((manifest.get("models") or {}).get("tuned") or {}).get("path"))
    if card and card.get("accuracy") is not None:
        n = f"{card['n']:,} prompts " if card.get("n") else ""
        return float(card["accuracy"]), f"model card, {n}sampled at T=1"
    return None, "not measured"


def series_accuracy_of(folders: list) -> list[tuple[float | None, str]]:
    """series_accuracy of the runs in `folders` (None for a run not open: no manifest)."""
    from core.store.manifest import read_manifest

    return series_accuracy([(read_manifest(f) or {}) if f is not None else {}
                            for f in folders])


def series_accuracy(manifests: list[dict]) -> list[tuple[float | None, str]]:
    """One accuracy source for every checkpoint of a series, so one axis compares like
    with like: each checkpoint's own samples when every checkpoint has them, else the model
    cards when every checkpoint has one, else each its own (checkpoint_accuracy: mixed
    sources, which the evolution caption names per step)."""
    own = [checkpoint_accuracy(m) for m in manifests]
    if all(src == "own samples" for _, src in own):
        return own
    cards = [card_accuracy(m) for m in manifests]
    if all(a is not None for a, _ in cards):
        return cards
    return own


def reused_note(manifest: dict) -> str | None:
    """One line for a run whose traces another run's model sampled (None otherwise): who
    sampled them, and that their accuracy is that model's, not this checkpoint's."""
    acc = (manifest.get("stats") or {}).get("accuracy") or {}
    rec = samplers_of(manifest).get(REUSED)
    if rec is None:
        return None
    model = f" ({rec['model']})" if rec.get("model") else ""
    label = "tuned" if "tuned" in acc and legacy_relabel(manifest) else REUSED
    share = f" ({100 * acc[label]:.1f}% correct: that model's accuracy)" if label in acc else ""
    return (f"The {REUSED} traces{share} were sampled by {rec.get('run') or 'another run'}'s "
            f"tuned model{model} and re-scored under this checkpoint.")
