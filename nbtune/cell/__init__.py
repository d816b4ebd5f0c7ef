"""The cell: its flags, its code and its `# tune:` annotations, read into a search spec."""
