"""Example third-party toolkit plugin: per-cluster top-k selection."""
