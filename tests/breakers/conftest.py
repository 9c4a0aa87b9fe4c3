"""The breaker, bulkhead, retry and degradation tests.

Their apps come from ``helpers.resilient_app`` (the decorators read their defaults
from its configuration), their failing dependencies from ``helpers.Flaky``, and
breaker and bulkhead names from ``helpers.unique``: those registries are per process.
"""
