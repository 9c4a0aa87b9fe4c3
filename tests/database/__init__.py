"""The database part: pool hardening and database failures, on real servers."""
