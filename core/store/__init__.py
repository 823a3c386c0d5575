"""The run folder: table schemas, manifests, writers, and the one owner of run names,
lookup, locks, staging, publish, rename and delete (cache.py)."""
