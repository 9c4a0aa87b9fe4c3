"""The rate limit and load shedding tests: apps from ``make_app``, Redis from ``redis``.

Nothing is common to both modules yet.
"""
