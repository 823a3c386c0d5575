"""One Run: core/store owns what a run folder holds and what its manifest says. No module
outside core/store opens manifest.json or builds a run's member path (read from the source
with `ast`), and the defaults every reader needs come from the Run (the fork explorer on a
run scored from a rollout file, which stores max_new_tokens = 0, generates tokens)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MEMBERS = ("manifest.json", "tokens.parquet", "topk.parquet", "traces.parquet",
           "forks.parquet", "cross_samples.parquet", "cross_summary.parquet",
           ".query-index.duckdb", "settings.json")
# Names only core/store may import: the manifest file and its readers, member file names.
STORE_ONLY = {"MANIFEST_FILE", "read_manifest", "Manifest", "FORKS_FILE", "SWEEPS_DIR",
              "SAMPLES_FILE", "SUMMARY_FILE", "SWEEP_SAMPLES", "SWEEP_SUMMARY",
              "SWEEP_SETTINGS"}
# Writers of a run being staged name its tables (precompute parts, the synthetic run), and
# run_index keeps its INDEX_FILE name for callers: the store's constants, never literals.
TABLE_NAMES = {"TOKENS_FILE", "TOPK_FILE", "TRACES_FILE", "INDEX_FILE"}
MAY_NAME_TABLES = {"core/precompute/shard.py", "core/precompute/driver.py",
                   "core/demo/synthetic.py", "core/queries/run_index.py"}


def _outside_store():
    for pkg in ("core", "app"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if not rel.startswith("core/store/"):
                yield rel, path.read_text(encoding="utf-8")


def _docstrings(tree) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def problems(files) -> list[str]:
    """Where a module outside core/store reads a manifest or names a run's member file."""
    out = []
    for rel, src in files:
        tree = ast.parse(src)
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            where = f"{rel}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and id(node) not in docs:
                hit = [m for m in MEMBERS if m in node.value]
                if hit:
                    out.append(f"{where} names {hit[0]}")
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("core"):
                for a in node.names:
                    if a.name in STORE_ONLY or (a.name in TABLE_NAMES
                                                and rel not in MAY_NAME_TABLES):
                        out.append(f"{where} imports {a.name}")
            elif isinstance(node, ast.Attribute) and node.attr == "manifest":
                out.append(f"{where} reads .manifest (use the Run's accessors)")
        if re.search(r"Path\((cache|cfg\.cache)\)\s*/\s*(name|run|cfg\.\w+)\b", src):
            out.append(f"{rel} builds a run folder from the cache path (use core.store.cache)")
    return out


@pytest.mark.unit
def test_no_module_outside_the_store_reads_a_manifest_or_builds_member_paths():
    assert problems(_outside_store()) == []


@pytest.mark.unit
def test_the_check_catches_each_way_of_doing_it():
    bad = {
        "a.py": 'p = run / "manifest.json"\n',
        "b.py": "from core.store.schema import MANIFEST_FILE\n",
        "c.py": "x = run.manifest.get('config')\n",
        "d.py": "from core.store.schema import TOKENS_FILE\n",
        "e.py": "p = Path(cache) / name\n",
        "f.py": 'caption = f"{run.name}/forks.parquet"\n',
    }
    assert len(problems(bad.items())) == len(bad)
    assert problems([("g.py", '"""Reads tokens.parquet (a docstring)."""\n')]) == []


@pytest.mark.model
def test_fork_explorer_on_a_rollout_run_generates_tokens(tmp_path_factory, monkeypatch):
    """A run scored from a rollout file stores max_new_tokens = 0; the Run gives the one
    default (128) and 'Fork here' on the Traces page rolls out real continuations."""
    from core.experiments.fork import list_forks, load_fork
    from core.store.cache import open_run
    from core.store.run import DEFAULT_MAX_NEW_TOKENS
    from tests.conftest import open_app
    from tests.test_damaged_runs import scored_rollouts

    cache = scored_rollouts(tmp_path_factory, "byo")
    run = open_run(cache, "byo")
    assert run.config["max_new_tokens"] == 0 and run.max_new_tokens == DEFAULT_MAX_NEW_TOKENS
    at = open_app(monkeypatch, cache, None, run="byo", trace=0, pos=2)
    at.slider(key="fork_k").set_value(1)
    at.button(key="fork_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    (saved,) = list_forks(run).fork_id
    rollouts = load_fork(run, saved)
    tok = run.load_tokenizer()
    assert len(rollouts) == 2
    # each text is the prefix (two tokens), the branch token, then what was generated: with
    # the stored cap of 0 nothing would be
    lengths = [len(tok(t, add_special_tokens=False).input_ids) for t in rollouts.text]
    assert max(lengths) >= 2 + 1 + 3, list(rollouts.text)


@pytest.mark.model
def test_the_manifest_records_the_budget_scoring_used(tmp_path_factory, monkeypatch):
    """With the automatic budget (0) the budget depends on free memory when it is resolved:
    the manifest records the one the shards were scored under, not a second measurement."""
    from core.engine import heads
    from core.store.cache import open_run
    from tests.test_damaged_runs import scored_rollouts

    seen = []

    def resolve(budget, device):
        seen.append(123_456_789 + len(seen))  # free memory that changes between calls
        return seen[-1]

    monkeypatch.setattr(heads, "resolve_budget", resolve)
    run = open_run(scored_rollouts(tmp_path_factory, "budget"), "budget")
    assert seen and run.memory_budget_bytes in seen[:1]
