"""Rate limits and load shedding."""
