"""Hooks into RL training frameworks (optional extras): core.integrations.trl, the shift
ledger callback for Hugging Face TRL (`pip install shiftlens[trl]`). Nothing here is imported
by the rest of core or by the app."""
