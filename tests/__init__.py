"""Test-suite of flask_resilience."""
