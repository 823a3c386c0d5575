"""Models and tensors only: pair loading, sampling, detokenising, scoring (joint and
sequential), the lockstep cross-sampling decoder. Imports no room above it."""
