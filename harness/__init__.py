"""Reliability harnesses: the example app under load, under faults and over time.

``make loadtest``, ``make chaos`` and ``make soak`` run them; each prints a table
and writes it, with its plots, under ``docs/``.
"""
