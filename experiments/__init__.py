"""Measurements of dsi, run from the repository root: ``python -m experiments.quality``."""
