"""Training loop, checkpoints and run directories."""
