"""MLflow: one run per trial, resuming a search from its runs, and links to the runs."""
