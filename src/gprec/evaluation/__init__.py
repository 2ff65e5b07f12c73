"""Metrics and statistical comparison of runs."""
