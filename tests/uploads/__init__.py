"""Upload validation and storage."""
