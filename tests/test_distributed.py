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


@pytest.fixture(scope="module")
def local_ray():  # one local cluster for the module's tests (starting one takes seconds)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_engine_matches_local_engine(tmp_path, local_ray):
    import pandas as pd

    from core.config import PrecomputeConfig
    from core.precompute.driver import precompute

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


def test_ray_engine_through_an_s3_parts_uri(tmp_path, local_ray):
    """--parts-uri s3://...: workers write their part files to S3 (a local moto server),
    the driver brings them home and assembles the same tables as the local engine, deletes
    the parts, and the manifest records the URI without its credentials."""
    import boto3
    import pandas as pd
    import pyarrow.parquet as pq

    moto_server = pytest.importorskip("moto.server", reason="moto[server] not installed")
    from core.config import PrecomputeConfig
    from core.precompute.driver import precompute

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        s3 = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
                          aws_access_key_id="AKIATEST", aws_secret_access_key="s3cr3t")
        s3.create_bucket(Bucket="shiftlens")
        s3.put_bucket_versioning(Bucket="shiftlens",  # deleted parts stay visible as versions
                                 VersioningConfiguration={"Status": "Enabled"})
        uri = (f"s3://AKIATEST:s3cr3t@shiftlens/runs?endpoint_override={host}:{port}"
               "&scheme=http&region=us-east-1")
        common = dict(base=str(DEMO / "base"), tuned=str(DEMO / "rl"), prompts=str(HELDOUT),
                      cache=str(tmp_path), max_prompts=4, n=1, shard_size=2,
                      max_new_tokens=32)
        quiet = dict(log=lambda s: None, show_progress=False)
        local = precompute(PrecomputeConfig(name="local", **common), **quiet)
        dist = precompute(PrecomputeConfig(name="s3", engine="ray", workers=2, parts_uri=uri,
                                           **common), **quiet)
        versions = s3.list_object_versions(Bucket="shiftlens", Prefix="runs/")
        written = {v["Key"].rsplit("/", 1)[1] for v in versions.get("Versions", [])}
        assert {"tokens-00000.parquet", "tokens-00001.parquet", "shard-00001.done"} <= written
        live = s3.list_objects_v2(Bucket="shiftlens", Prefix="runs/").get("Contents", [])
        assert [o for o in live if not o["Key"].endswith("/")] == []  # parts cleaned up
    finally:
        server.stop()
    for f, keys in KEYS.items():
        a = pd.read_parquet(local / f).sort_values(keys).reset_index(drop=True)
        b = pd.read_parquet(dist / f).sort_values(keys).reset_index(drop=True)
        assert len(a) > 0
        pd.testing.assert_frame_equal(a, b)
    text = (dist / "manifest.json").read_text()
    meta = pq.read_schema(dist / "tokens.parquet").metadata
    assert "s3cr3t" not in text and "AKIATEST" not in text
    assert not any(b"s3cr3t" in v for v in meta.values())
    assert json.loads(text)["config"]["parts_uri"].startswith("s3://***@shiftlens/runs?")


def test_ray_worker_in_sequential_mode_holds_one_model_at_a_time(tmp_path, monkeypatch):
    """`--engine ray --scoring sequential`: a worker loads no weights when it starts, and
    while it runs a shard (sampling, then the two scoring passes) at most one model is alive;
    its part files equal the local executor's for the same shard."""
    import gc
    import weakref

    import pandas as pd

    import core.engine.pair as pair_mod
    from core.config import PrecomputeConfig
    from core.precompute.driver import precompute
    from core.precompute.ray import ShardWorker

    live, peak, loads = set(), [0], [0]
    real = pair_mod.with_weights  # every weight load goes through it

    def counting(*a, **k):
        loaded = real(*a, **k)
        if loaded.model is not None:
            gc.collect()  # count only models something still holds
            loads[0] += 1
            key = id(loaded.model)
            live.add(key)
            weakref.finalize(loaded.model, live.discard, key)
            peak[0] = max(peak[0], len(live))
        return loaded

    monkeypatch.setattr(pair_mod, "with_weights", counting)
    common = dict(base=str(DEMO / "base"), tuned=str(DEMO / "rl"), prompts=str(HELDOUT),
                  cache=str(tmp_path), max_prompts=2, n=2, shard_size=2, max_new_tokens=24,
                  scoring="sequential", name="seq")
    cfg = PrecomputeConfig(engine="ray", **common)
    parts = tmp_path / "parts"
    parts.mkdir()
    worker = ShardWorker(cfg, str(parts), None)
    assert loads[0] == 0 and worker.pair.base.model is None and worker.pair.tuned.model is None
    out = worker({"shard": [0]})
    assert out["shard"] == [0]
    assert loads[0] == 3  # sampling (tuned), then scoring: base, then tuned
    assert peak[0] == 1, f"{peak[0]} models alive at once"
    monkeypatch.setattr(pair_mod, "with_weights", real)
    local = precompute(PrecomputeConfig(**dict(common, cache=str(tmp_path / "local"))),
                       log=lambda s: None, show_progress=False)
    got = pd.read_parquet(parts / "tokens-00000.parquet")
    want = pd.read_parquet(local / "tokens.parquet")
    pd.testing.assert_frame_equal(got, want)
