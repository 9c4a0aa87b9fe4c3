"""Fixtures of the lifecycle tests."""
