"""The shift ledger in a real TRL run (tier `trl`): trl.GRPOTrainer trains the demo pair's base
model for two steps on CPU with ShiftLedgerCallback on, in .venv-trl (scripts/setup_trl.sh:
trl needs a newer transformers than the project pins); the ledger's queued jobs score the
base on step 1's rollouts and checkpoint-1 on step 2's (the step alignment), and the series
they make opens on the overview page with the evolution figure. Skipped, with the setup's
last line, only when .venv-trl cannot be made (scripts/test.sh makes it first, so CI runs
it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import DEMO, ROOT, open_app

pytestmark = pytest.mark.trl


@pytest.fixture(scope="module")
def trl_python():
    setup = subprocess.run(["bash", str(ROOT / "scripts" / "setup_trl.sh"), sys.prefix],
                           cwd=ROOT, capture_output=True, text=True, timeout=900)
    if setup.returncode != 0:
        last = (setup.stderr.strip().splitlines() or ["(no output)"])[-1]
        pytest.skip(f".venv-trl could not be made by scripts/setup_trl.sh: {last}")
    return ROOT / ".venv-trl" / "bin" / "python"


def test_a_grpo_run_with_the_ledger_callback_opens_on_the_evolution_page(
        trl_python, tmp_path, monkeypatch):
    from core import queries as Q
    from core.store.cache import list_runs, series_of

    out, cache = tmp_path / "grpo-out", tmp_path / "cache"
    r = subprocess.run([str(trl_python), str(ROOT / "tests" / "trl_ledger_run.py"),
                        str(DEMO / "base"), str(out), str(cache), "2"], cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["jobs"] == [{"run": f"grpo-step-{k}", "state": "done", "error": None}
                              for k in (0, 1)], r.stdout[-3000:]
    assert ("shift ledger: checkpoint(s) [2] not recorded: no rollouts they sampled"
            in r.stdout)
    runs = list_runs(cache)
    latest = next(x for x in runs if x.name == "grpo-step-1")
    names = series_of(runs, latest)
    assert names == ["grpo-step-0", "grpo-step-1"]
    m = json.loads((cache / "grpo-step-1" / "manifest.json").read_text())
    assert m["models"]["tuned"]["path"] == str((out / "checkpoint-1").resolve())
    assert m["series_of"] == "grpo" and m["series_step"] == 1
    assert m["prompt_set"]["path"].endswith("completions_00002.parquet")
    assert ("step 2: sampled by the policy before update 2, checkpoint-1"
            in m["rollouts"]["notes"])
    con = Q.open_runs([cache / n for n in names])
    df = Q.evolution(con, names, high=0.01).set_index("run")
    assert df["step"].tolist() == [0, 1]
    assert df.loc["grpo-step-0", "p99"] < 1e-9  # the base scored against itself
    assert df.loc["grpo-step-1", "p99"] > 1e-6  # one GRPO update moved the policy
    at = open_app(monkeypatch, cache, "views/overview.py", run="grpo-step-1")
    assert any(h.value == "Evolution across checkpoints" for h in at.subheader), \
        [h.value for h in at.subheader]
    charts = " ".join(c.proto.spec for c in at.get("plotly_chart"))
    assert all(n in charts for n in names) and "Jaccard with final" in charts
