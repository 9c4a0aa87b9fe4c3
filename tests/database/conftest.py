"""Fixtures of the database tests."""
