"""Golden numbers of the shipped demo run `demo-rl`, built as `python -m core demo-runs` builds it.

These goldens exist to catch silent regressions of the demo tables when code is refactored:
the literals below are printed by `scripts/golden_numbers.py` (which builds demo-rl as the
fixture here does and runs this module's `independent`), run only when the shipped demo
family or prompt set changes on purpose (last: the issue-29 retrained family), and any
refactor must reproduce them. The numbers here are computed with DuckDB directly on
the Parquet tables, independently of core.queries; `core.queries.headline` is then checked
against them. If a test here fails, find out why the tables changed; do not just update the
literals.

Building demo-rl (200 prompts x 4 samples from each of base and tuned, 96 new tokens at most)
takes well under a minute on 2 CPU cores; the fixture builds it once per session.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import duckdb
import pytest

pytestmark = pytest.mark.model

NEAR_ZERO, HIGH = 0.01, 0.1  # js < NEAR_ZERO is "near-zero", js > HIGH is "high"
TOL = 5e-5

N_TOKENS = 40975
N_TRACES = 1600
# per sampler (sampled_from): token rows and traces
N_TOKENS_BY = {"tuned": 20197, "base": 20778}
N_TRACES_BY = {"tuned": 800, "base": 800}
# (share of tokens with js < 0.01, share with js > 0.1): pooled ("all") and per sampler
SHARES = {"all": (0.8705, 0.038), "tuned": (0.8777, 0.0318), "base": (0.8636, 0.044)}
# mean of traces.correct per sampler (705 and 480 correct of 800); the manifest rounds it
ACCURACY = {"tuned": 705 / 800, "base": 480 / 800}
MANIFEST_ACCURACY = {"tuned": 0.8812, "base": 0.6}


@pytest.fixture(scope="session")
def demo_rl(tmp_path_factory) -> Path:
    """The demo-rl run folder, built by the shipped config into a throwaway cache."""
    from core.demo.runs import demo_configs
    from core.precompute.driver import precompute

    cache = tmp_path_factory.mktemp("golden_cache")
    cfg = demo_configs(str(cache))[0]
    assert cfg.name == "demo-rl"
    cfg = dataclasses.replace(cfg, cache=str(cache))
    return precompute(cfg, log=lambda s: None, show_progress=False)


def independent(run: Path) -> dict:
    """The golden quantities, straight from the run's Parquet files (no core.queries)."""
    con = duckdb.connect()
    tok, tr = str(run / "tokens.parquet"), str(run / "traces.parquet")
    shares = "avg((js < $nz)::DOUBLE), avg((js > $hi)::DOUBLE)"
    p = {"nz": NEAR_ZERO, "hi": HIGH}
    n, nz, hi = con.execute(f"SELECT count(*), {shares} FROM read_parquet('{tok}')",
                            p).fetchone()
    out = {"n_tokens": n, "shares": {"all": (nz, hi)}, "n_tokens_by": {}, "n_traces_by": {},
           "accuracy": {}}
    for s, n, nz, hi in con.execute(
            f"""SELECT tr.sampled_from, count(*), {shares}
                FROM read_parquet('{tok}') t JOIN read_parquet('{tr}') tr USING (trace_id)
                GROUP BY tr.sampled_from""", p).fetchall():
        out["n_tokens_by"][s] = n
        out["shares"][s] = (nz, hi)
    for s, n, acc in con.execute(
            f"""SELECT sampled_from, count(*), avg(correct::DOUBLE) FROM read_parquet('{tr}')
                GROUP BY sampled_from""").fetchall():
        out["n_traces_by"][s] = n
        out["accuracy"][s] = acc
    out["n_traces"] = con.execute(f"SELECT count(*) FROM read_parquet('{tr}')").fetchone()[0]
    out["n_trace_ids"] = con.execute(
        f"SELECT count(DISTINCT trace_id) FROM read_parquet('{tr}')").fetchone()[0]
    return out


@pytest.fixture(scope="session")
def numbers(demo_rl) -> dict:
    return independent(demo_rl)


@pytest.fixture(scope="session")
def manifest(demo_rl) -> dict:
    return json.loads((demo_rl / "manifest.json").read_text())


def test_token_and_trace_counts(numbers, manifest):
    assert manifest["stats"]["n_tokens"] == N_TOKENS
    assert numbers["n_tokens"] == N_TOKENS                 # tokens.parquet rows
    assert manifest["stats"]["n_traces"] == N_TRACES
    assert numbers["n_traces"] == numbers["n_trace_ids"] == N_TRACES
    assert numbers["n_traces_by"] == N_TRACES_BY
    assert numbers["n_tokens_by"] == N_TOKENS_BY
    assert sum(numbers["n_tokens_by"].values()) == N_TOKENS  # every token row has its trace


@pytest.mark.parametrize("subset", list(SHARES))
def test_js_shares(numbers, subset):
    got = numbers["shares"][subset]
    assert got == pytest.approx(SHARES[subset], abs=TOL), subset


def test_accuracy_per_sampler(numbers, manifest):
    assert numbers["accuracy"] == pytest.approx(ACCURACY, abs=TOL)
    assert manifest["stats"]["accuracy"] == pytest.approx(MANIFEST_ACCURACY, abs=1e-9)
    for s, acc in numbers["accuracy"].items():  # the manifest rounds the same means
        assert manifest["stats"]["accuracy"][s] == pytest.approx(acc, abs=5e-5 + 1e-9)


@pytest.mark.parametrize("materialize", [False, True], ids=["views", "materialized"])
def test_headline_agrees(demo_rl, numbers, materialize):
    """core.queries.headline (both the SQL-view path and the materialised, indexed one)
    gives the same numbers as the independent computation and the goldens: by default on the
    tuned-sampled traces (the paper's setting), pooled over both samplers on request."""
    from core.queries import headline, open_runs

    con = open_runs([demo_rl], materialize=materialize)
    r = headline(con, near_zero=NEAR_ZERO, high=HIGH).iloc[0]
    assert r["sampled_from"] == "tuned"
    assert int(r["n_tokens"]) == N_TOKENS_BY["tuned"] and int(r["n_traces"]) == 800
    nz, hi = numbers["shares"]["tuned"]
    assert float(r["share_near_zero"]) == pytest.approx(nz, abs=1e-9)
    assert float(r["share_high"]) == pytest.approx(hi, abs=1e-9)
    h = headline(con, near_zero=NEAR_ZERO, high=HIGH, sampled_from="pooled")
    assert h["run"].tolist() == ["demo-rl"]
    r = h.iloc[0]
    assert r["kind"] == "rl"
    assert int(r["n_tokens"]) == numbers["n_tokens"] == N_TOKENS
    assert int(r["n_traces"]) == numbers["n_traces"] == N_TRACES
    nz, hi = numbers["shares"]["all"]
    assert float(r["share_near_zero"]) == pytest.approx(nz, abs=1e-9)
    assert float(r["share_high"]) == pytest.approx(hi, abs=1e-9)
    assert (float(r["share_near_zero"]), float(r["share_high"])) == pytest.approx(
        SHARES["all"], abs=TOL)
    for s in ("tuned", "base"):
        assert float(r[f"accuracy_{s}"]) == pytest.approx(numbers["accuracy"][s], abs=1e-9)
        assert float(r[f"accuracy_{s}"]) == pytest.approx(ACCURACY[s], abs=TOL)
