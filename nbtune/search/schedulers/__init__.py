"""Pruning schedulers: from trials' intermediate results, decide on the driver which to stop early."""
