"""Benchmarks of dsi, run from the repository root: ``python -m bench.decode_bench``."""
