"""What users hand ShiftLens as files: prompt sets (prompts.py), rollout files
(rollouts.py), Parquet read with its limits checked first (user_parquet.py), the limits on
user text (text_limits.py) and answer verifiers (verifiers.py). Readers only: no models,
no run folders."""
