"""Reports: markdown tables and PNG plots of a run's metrics."""
