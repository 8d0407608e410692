"""Core pipeline: texts -> tokens -> batches -> backend -> sparse vectors (no server, no jobs)."""
