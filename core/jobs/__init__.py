"""Long work and bringing your own models: the one process-based job queue (queue.py),
run rename/delete guarded by it, add-pair, validation, estimates, uploads, presets."""
