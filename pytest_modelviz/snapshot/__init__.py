"""Snapshot assertions: architectures (``graph_snapshot``) and parameter statistics, via syrupy."""
