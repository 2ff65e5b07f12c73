"""Reusable building blocks shared by the models."""
