"""The search loop: hyperopt suggests, an executor runs trials, listeners hear about each one."""
