"""Experiments on a pair beyond the stored tables: cross-sampling sweeps, the fork explorer,
live scoring."""
