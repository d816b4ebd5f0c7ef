"""What a person sees in the notebook: the live dashboard, the options form and the text progress line."""
