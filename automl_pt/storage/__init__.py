"""What a run leaves on disk: the run directory and the DuckDB results store."""
