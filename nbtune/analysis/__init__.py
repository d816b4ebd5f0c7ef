"""After a search: what it teaches (parameter importance, parallel coordinates, history, durations)."""
