"""Circuit breakers, bulkheads, retries and graceful degradation."""
