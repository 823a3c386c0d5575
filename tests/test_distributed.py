"""The Ray engine writes the same run as the single-process engine (local Ray, CPU)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import DEMO, HELDOUT

ray = pytest.importorskip("ray", reason="ray[data] not installed (pip install -r "
                                        "requirements-ray.txt)")
pytest.importorskip("ray.data", reason="ray[data] not installed")

pytestmark = pytest.mark.model

KEYS = {"tokens.parquet": ["trace_id", "pos"], "topk.parquet": ["trace_id", "pos"],
        "traces.parquet": ["trace_id"]}


@pytest.fixture
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_engine_matches_local_engine(tmp_path, local_ray):
    import pandas as pd

    from core.config import PrecomputeConfig
    from core.precompute import precompute

    common = dict(base=str(DEMO / "base"), tuned=str(DEMO / "rl"), prompts=str(HELDOUT),
                  cache=str(tmp_path), max_prompts=6, n=2, sample_from="both", shard_size=2,
                  max_new_tokens=48)
    quiet = dict(log=lambda s: None, show_progress=False)
    local = precompute(PrecomputeConfig(name="local", **common), **quiet)
    seen = []
    dist = precompute(PrecomputeConfig(name="ray", engine="ray", workers=2, **common),
                      log=lambda s: None, progress=seen.append)
    assert seen[-1]["stage"] == "done" and seen[-1]["shards_done"] == 3
    assert not (tmp_path / ".staging" / "ray").exists()
    for f, keys in KEYS.items():
        a = pd.read_parquet(local / f).sort_values(keys).reset_index(drop=True)
        b = pd.read_parquet(dist / f).sort_values(keys).reset_index(drop=True)
        assert len(a) > 0
        pd.testing.assert_frame_equal(a, b)
    ma = json.loads((local / "manifest.json").read_text())
    mb = json.loads((dist / "manifest.json").read_text())
    assert ma["config_hash"] == mb["config_hash"]
    assert mb["config"]["engine"] == "ray" and ma["config"]["engine"] == "local"
    assert ma["models"] == mb["models"] and ma["tokenizer"] == mb["tokenizer"]
    assert ma["stats"]["n_tokens"] == mb["stats"]["n_tokens"]
