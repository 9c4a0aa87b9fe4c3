"""Health endpoints, the monitor, metrics and the dashboard."""
