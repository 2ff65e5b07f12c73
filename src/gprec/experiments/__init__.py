"""Experiments built from many runs: comparisons, ablations, sweeps."""
