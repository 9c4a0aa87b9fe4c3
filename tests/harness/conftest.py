"""Smoke runs of the harnesses (the suite's ``harness_smoke``) and of the benchmarks."""
