"""Precompute: one driver (driver.py) from a config to a published run, one shard function
(shard.py), and the executors that run shards (local.py, ray.py)."""
