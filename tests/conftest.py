"""Shared fixtures: throwaway tiny pairs built by the production code, demo asset paths."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "assets" / "demo"
HELDOUT = ROOT / "assets" / "prompts" / "arith-heldout.jsonl"


def save_tiny_model(folder: Path, tokenizer, seed: int) -> Path:
    from core.demo.model import build_model

    model = build_model(tokenizer, hidden=32, layers=1, heads=2, seed=seed)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory) -> dict:
    """Two random tiny Llama models sharing the demo tokenizer, and a 6-prompt set."""
    from core.demo.task import prompt_records, sample_problems, write_jsonl
    from core.demo.tokenizer import build_tokenizer

    root = tmp_path_factory.mktemp("tiny_pair")
    tok = build_tokenizer()
    base = save_tiny_model(root / "base", tok, seed=1)
    tuned = save_tiny_model(root / "tuned", tok, seed=2)
    prompts = root / "prompts.jsonl"
    recs = [dict(r, verifier="exact") for r in
            prompt_records(sample_problems(6, "heldout", seed=0), "p")]
    write_jsonl(recs, prompts)
    return {"root": root, "base": base, "tuned": tuned, "prompts": prompts}


@pytest.fixture
def copy_model(tmp_path):
    def _copy(src: Path, name: str) -> Path:
        dst = tmp_path / name
        shutil.copytree(src, dst)
        return dst
    return _copy
