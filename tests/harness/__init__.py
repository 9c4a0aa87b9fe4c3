"""Smoke runs of the reliability harnesses and the benchmarks."""
