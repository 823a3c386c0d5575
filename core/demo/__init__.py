"""The demo model family: a tiny base model and its RLVR / SFT fine-tunes.

Trained from scratch on a synthetic, verifiable arithmetic task so that ShiftLens has a
real base/RL pair on a machine with no network and no GPU. See `python -m core.demo --help`.
"""
