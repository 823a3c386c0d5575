"""ShiftLens core: the engine behind the app, importable without any UI.

Compares a base language model with a fine-tuned version of it, token by token,
on reasoning traces (arXiv 2603.22446, "Sparse but Critical").
"""

__version__ = "0.1.0"
