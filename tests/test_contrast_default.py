"""The RL-vs-SFT contrast defaults to an SFT matched to the RL run when the cache has one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_queries import make_tables, write_run

pytestmark = pytest.mark.unit
TABLES = make_tables(3, n_traces=4)


def _run(cache: Path, name: str, kind: str, base: str = "assets/demo/base") -> None:
    """A healthy run (a damaged one is never a contrast partner) on `base`."""
    manifest = {"name": name, "kind": kind, "created": "2026-01-01T00:00:00+00:00",
                "models": {"base": {"spec": base}, "tuned": {"spec": f"x/{name}"}},
                "prompt_set": {"path": "p.jsonl", "fingerprint": "f"}, "stats": {}}
    write_run(cache / name, TABLES, manifest)


def test_matched_sft_comes_first_then_plain_sft_then_other_labels(tmp_path):
    from core.store.cache import contrast_candidates, list_runs

    for name, kind in [("demo-rl", "rl"), ("demo-sft", "sft-10x-lr"), ("a-sft", "sft"),
                       ("demo-sft-matched", "sft-matched"), ("other-rl", "rl")]:
        _run(tmp_path, name, kind)
    _run(tmp_path, "foreign-sft", "sft-matched", base="elsewhere/base")
    runs = list_runs(tmp_path)
    rl = next(r for r in runs if r.name == "demo-rl")
    assert contrast_candidates(runs, rl) == ["demo-sft-matched", "a-sft", "demo-sft",
                                             "other-rl"]


def test_exports_and_the_overview_default_pick_the_matched_sft(tmp_path):
    from core.figures.export import _auto_companions

    for name, kind in [("demo-rl", "rl"), ("demo-sft", "sft-10x-lr"),
                       ("demo-sft-matched", "sft-matched")]:
        _run(tmp_path, name, kind)
    assert _auto_companions(tmp_path / "demo-rl", tmp_path) == (None, "demo-sft-matched")
    (tmp_path / "demo-sft-matched" / "manifest.json").unlink()  # an older cache: no matched run
    assert _auto_companions(tmp_path / "demo-rl", tmp_path) == (None, "demo-sft")


def test_demo_runs_build_the_matched_contrast_and_label_the_10x_one():
    from core.demo.runs import DEMO, demo_configs

    cfgs = {c.name: c for c in demo_configs("cache")}
    assert cfgs["demo-sft"].kind == "sft-10x-lr"
    if (DEMO / "sft-matched" / "model.safetensors").is_file():
        m = cfgs["demo-sft-matched"]
        assert (m.kind, m.sample_from, m.n, m.max_prompts) == ("sft-matched", "tuned", 4, 200)
        assert m.tuned.endswith("sft-matched") and m.base == cfgs["demo-rl"].base
    assert next(iter(cfgs)) == "demo-rl"  # the golden tests build the first one
