"""Startup checks, the command group, cleanups and graceful shutdown."""
