"""The kernel side of the JupyterLab extension."""
