"""The run's self-contained HTML report."""
